"""Data-parallel training: built like from_data, trained by the one engine; 2 ranks under torchrun
match one process."""

from __future__ import annotations

import json
import math
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from collabkit.checkpoint import load_model
from collabkit.cli import app
from collabkit.core.loop import fit_one_cycle
from collabkit.data.movielens import canonical_split
from collabkit.models.dot import DotProductBias
from collabkit.train.distributed import read_shard, shard, sharded_model

SRC = Path(__file__).resolve().parents[2] / "src"


def test_one_rank_builds_what_from_data_builds(tiny):
    model = sharded_model("dot-bias", tiny, n_factors=4, seed=3)
    ref = DotProductBias.from_data(tiny, n_factors=4, seed=3)
    assert list(model.users.ids) == list(ref.users.ids) and list(model.items.ids) == list(ref.items.ids)
    assert model.meta["scale"] == ref.meta["scale"] and model.config == ref.config
    assert model.meta["global_mean"] == pytest.approx(ref.meta["global_mean"])  # float64 vs float32 sum
    for (name, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), name


def test_shards_partition_the_rows(tiny):
    parts = [shard(tiny, r, 3) for r in range(3)]
    assert sum(len(p) for p in parts) == len(tiny)
    assert len(set().union(*(map(tuple, p.frame[["user", "item"]].to_numpy()) for p in parts))) == len(tiny)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TWO_GPUS = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=TWO_GPUS)])  # gloo; NCCL
def test_two_ranks_match_one_process_and_save_a_loadable_model(data_root, tmp_path, device):
    train, test = canonical_split("u1", "ml-100k", data_dir=data_root)
    single = DotProductBias.from_data(train, n_factors=50)
    fit_one_cycle(single, train, epochs=5, lr_max=5e-3, wd=0.1, progress=False)
    rmse_single = math.sqrt(np.mean((single.predict(test.frame["user"], test.frame["item"]) - test.frame["rating"]) ** 2))

    out = tmp_path / "model"
    printed = CliRunner().invoke(app, [
        "train", "--dataset", "ml-100k", "--split", "u1", "--data-dir", str(data_root),
        "--epochs", "5", "--lr", "5e-3", "--wd", "0.1", "--out", str(out), "--device", device, "--distributed",
    ])  # fmt: skip
    assert printed.exit_code == 0, printed.output
    one_host = next(line for line in printed.stdout.splitlines() if line.startswith("torchrun --nproc-per-node"))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    cmd = launcher + shlex.split(one_host)[1:] + ["--json"]  # the command `train --distributed` documents
    env = {**os.environ, "PYTHONPATH": str(SRC), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["world"] == 2 and result["device"] == device

    loaded = load_model(out)
    pred = loaded.predict(test.frame["user"], test.frame["item"])
    rmse = math.sqrt(np.mean((pred - test.frame["rating"]) ** 2))
    # each rank scored its half of u1.test with its own replica: equal only if the replicas are
    assert rmse == pytest.approx(result["rmse"], abs=1e-5)
    assert abs(rmse - rmse_single) < 0.005, (rmse, rmse_single)
    np.testing.assert_array_equal(load_model(out).predict(test.frame["user"], test.frame["item"]), pred)
    # the folder records its data like any other: evaluate scores the recorded split's test part
    scored = CliRunner().invoke(app, ["evaluate", str(out), "--data-dir", str(data_root), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["rmse"] == pytest.approx(rmse, abs=1e-4)


def test_read_shard_takes_every_world_th_file(tiny, tmp_path):
    frame = tiny.frame[["user", "item", "rating"]]
    parts = np.array_split(np.arange(len(frame)), 3)
    for k, part in enumerate(parts):
        frame.iloc[part].to_csv(tmp_path / f"part-{k}.csv", index=False)
    shards = [read_shard(tmp_path, rank, 2, scale=(1.0, 5.0)) for rank in range(2)]
    assert [len(s) for s in shards] == [len(parts[0]) + len(parts[2]), len(parts[1])]  # files 0, 2 | 1
    rows = pd.concat([s.frame for s in shards]).sort_values(["user", "item"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, frame.sort_values(["user", "item"]).reset_index(drop=True), check_dtype=False)
    with pytest.raises(ValueError, match="shard file"):
        read_shard(tmp_path, 0, 4)


def test_train_distributed_passes_every_data_option_on(tmp_path):
    args = ["train", "--ratings", str(tmp_path / "r.tsv"), "--names", "user,item,rating", "--duplicates", "last",
            "--split", "user", "--epochs", "3", "--distributed"]  # fmt: skip
    printed = CliRunner().invoke(app, args)
    assert printed.exit_code == 0, printed.output
    line = next(x for x in printed.stdout.splitlines() if x.startswith("torchrun --nproc-per-node"))
    assert "-m collabkit.cli train" in line and line.endswith("--distributed")
    for option in ("--names user,item,rating", "--duplicates last", "--split user", "--epochs 3"):
        assert option in line
    refused = CliRunner().invoke(app, ["train", "--dataset", "ml-100k", "--preset", "best", "--distributed"])
    assert refused.exit_code == 2 and "one gradient-trained rating kind" in refused.output


def test_one_rank_trains_by_the_engine_with_its_checks(tiny, monkeypatch):
    """In a process group of one, the data-parallel path is fit_one_cycle's: same losses, the same
    refusal of bad settings and of a diverged run."""
    import torch.distributed as dist

    from collabkit.core import parallel

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        model = sharded_model("dot-bias", tiny, n_factors=4, seed=3)
        with parallel.use(parallel.Ranks(0, 1)):
            history = model.fit(tiny, tiny, epochs=4, lr_max=1e-2, bs=64)
            with pytest.raises(ValueError, match="lr"):
                sharded_model("dot-bias", tiny).fit(tiny, lr_max=float("nan"))
            with pytest.raises(ValueError, match="diverged"):
                sharded_model("dot-bias", tiny).fit(tiny, lr_max=1e30)
        ref = DotProductBias.from_data(tiny, n_factors=4, seed=3)
        ref_history = fit_one_cycle(ref, tiny, tiny, epochs=4, lr_max=1e-2, bs=64, progress=False)
        # the torch step and batches of equal size (not the compiled step): close, not equal
        assert history.final["valid_loss"] == pytest.approx(ref_history.final["valid_loss"], rel=2e-2)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_asking_for_a_gpu_that_is_not_there_stops_before_reading_data(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    result = CliRunner().invoke(app, ["train", "--ratings", str(tmp_path / "never-read.csv"), "--device", "cuda", "--distributed"])
    assert result.exit_code == 2 and "sees no CUDA GPU" in result.output
