"""--device: choosing where training and top-N scoring run (GPU tests skip without a CUDA GPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import collabkit as ck
from collabkit.core import device
from collabkit.recommend.topn import seen_csr, top_n
from collabkit.train.build import build_model
from tests.conftest import make_ratings, run_cli

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA GPU")
no_gpu = pytest.mark.skipif(GPU, reason="checks the refusal on a machine without a GPU")


def test_resolve_names_and_auto(monkeypatch):
    assert device.resolve("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        device.resolve("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.resolve("auto") == torch.device("cuda")
    assert device.resolve("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        device.resolve("cuda:1")
    for bad in ("gpu", "tpu:0", ""):
        with pytest.raises(ValueError, match="unknown device"):
            device.resolve(bad)
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        device.resolve("meta")


def test_use_sets_the_device_for_its_block_only():
    assert device.current() == torch.device("cpu")
    with device.use("auto") as outer:
        assert device.current() == outer
        with device.use("cpu"):
            assert device.current() == torch.device("cpu")
        assert device.current() == outer
    assert device.current() == torch.device("cpu")


def test_placed_on_the_models_own_device_changes_nothing(tiny):
    m = ck.DotProductBias.from_data(tiny)
    weights = [p.data_ptr() for p in m.parameters()]
    with device.placed(m, torch.device("cpu")):
        assert device.of(m) == torch.device("cpu")
    assert [p.data_ptr() for p in m.parameters()] == weights


def test_cli_reports_the_device_and_refuses_one_that_is_missing(tmp_path):
    path = tmp_path / "r.csv"
    make_ratings().frame.to_csv(path, index=False)
    model = tmp_path / "model"
    out = json.loads(run_cli("train", "--ratings", path, "--epochs", "1", "--device", "auto", "--out", model, "--json"))
    assert out["device"] == ("cuda" if GPU else "cpu") and np.isfinite(out["rmse"])
    recs = json.loads(run_cli("recommend-all", model, "--out", tmp_path / "recs.csv", "--device", "auto", "--json"))
    assert recs["n_users"] == len(make_ratings().frame["user"].unique())
    assert "unknown device 'tpu'" in run_cli("evaluate", model, "--device", "tpu", code=2)
    never = tmp_path / "not-read.csv"  # the device is checked before any data is read
    assert "unknown device 'tpu'" in run_cli("train", "--ratings", never, "--device", "tpu", code=2)
    printed = run_cli("train", "--ratings", path, "--device", "cuda", "--distributed")  # commands for GPU hosts
    assert "collabkit.cli train --ratings" in printed and "--device cuda" in printed


@no_gpu
def test_cli_asking_for_a_gpu_that_is_not_there_is_an_error(tmp_path):
    path = tmp_path / "r.csv"
    make_ratings().frame.to_csv(path, index=False)
    assert "sees no CUDA GPU" in run_cli("train", "--ratings", path, "--device", "cuda", code=2)


@needs_gpu
@pytest.mark.parametrize("kind", ["dot", "dot-bias", "nn", "svdpp", "ordinal", "bpr"])
def test_training_on_the_gpu_matches_the_cpu_and_returns_a_cpu_model(kind):
    r = make_ratings(n_users=120, n_items=80, density=0.3)
    train, valid = ck.random_split(r, 0.2, seed=1)
    spec = f"{kind}(epochs=3)"
    threshold = 4.0 if kind == "bpr" else None
    _, h_cpu = build_model(spec, train, valid, threshold=threshold)
    with device.use("cuda"):
        gpu, h_gpu = build_model(spec, train, valid, threshold=threshold)
    assert all(p.device.type == "cpu" for p in gpu.parameters())
    loss = "valid_loss" if "valid_loss" in h_cpu.final else "train_loss"
    assert h_gpu.final[loss] == pytest.approx(h_cpu.final[loss], rel=0.1)  # dropout draws differ


@needs_gpu
@pytest.mark.parametrize("kind", ["dot-bias", "nn", "als"])
def test_top_n_on_the_gpu_matches_the_cpu(kind):
    r = make_ratings(n_users=120, n_items=80, density=0.3)
    model, _ = build_model(f"{kind}", r, threshold=4.0 if kind == "als" else None)
    users, seen = np.arange(len(model.users)), seen_csr(model, r)
    items, scores = top_n(model, users, 10, seen=seen, batch_users=17)
    with device.use("cuda"):
        g_items, g_scores = top_n(model, users, 10, seen=seen, batch_users=17)
    assert all(p.device.type == "cpu" for p in model.parameters())
    np.testing.assert_allclose(g_scores, scores, atol=1e-4)
    assert (g_items == items).mean() > 0.99  # near-ties may swap
