from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.core.loop import _batch_bounds, _glibc, epoch_order, unique_rows
from collabkit.core.optim import RowAdamW
from collabkit.core.schedule import one_cycle
from collabkit.data.interactions import Ratings
from collabkit.models.dot import DotProductBias
from collabkit.train.lr_find import lr_find
from tests.conftest import peak_rss


@pytest.mark.parametrize("parallel_order", [False, True])  # torch.randperm, kernels.permutation
def test_same_seed_same_model(tiny, monkeypatch, parallel_order):
    if parallel_order:  # as for 16 M ratings or more
        monkeypatch.setattr("collabkit.core.loop.PARALLEL_ORDER", 10)
    runs = []
    for _ in range(2):
        m = ck.DotProductBias.from_data(tiny, seed=3)
        ck.fit_one_cycle(m, tiny, epochs=2, bs=16, seed=5)
        runs.append(m.predict(tiny.frame["user"], tiny.frame["item"]))
    np.testing.assert_array_equal(runs[0], runs[1])
    other = ck.DotProductBias.from_data(tiny, seed=4)
    ck.fit_one_cycle(other, tiny, epochs=2, bs=16, seed=5)
    assert not np.array_equal(runs[0], other.predict(tiny.frame["user"], tiny.frame["item"]))


def test_history_has_the_chapter_columns_and_loss_falls(tiny):
    train, valid = ck.random_split(tiny, 0.2, seed=1)
    m = ck.DotProductBias.from_data(train)
    h = ck.fit_one_cycle(m, train, valid, epochs=4, lr_max=1e-2, bs=32)
    frame = h.to_frame()
    assert list(frame.columns) == ["epoch", "train_loss", "valid_loss", "time"]
    assert len(frame) == 4 and frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]
    assert h.fit_seconds > 0


def test_epoch_table_is_printed(tiny):
    from rich.console import Console

    console = Console(record=True, width=100)
    ck.fit_one_cycle(ck.DotProductBias.from_data(tiny), tiny, epochs=2, console=console, progress=False)
    text = console.export_text()
    assert "train_loss" in text and "valid_loss" in text and "\n    1 " in text


def test_one_cycle_shape():
    lrs = [one_cycle(p, 1.0)[0] for p in np.linspace(0, 1, 101)]
    moms = [one_cycle(p, 1.0)[1] for p in np.linspace(0, 1, 101)]
    assert lrs[0] == pytest.approx(1 / 25) and max(lrs) == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(1e-5) and int(np.argmax(lrs)) == 25
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85) and moms[-1] == pytest.approx(0.95)


def test_row_adamw_touches_only_the_rows_used():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    before = emb.weight.detach().clone()
    opt = RowAdamW(list(emb.parameters()))
    emb(torch.tensor([2, 5, 5])).sum().backward()
    opt.step(lr=0.1, beta1=0.9, wd=0.1)
    changed = (emb.weight.detach() != before).any(1)
    assert changed.tolist() == [k in (2, 5) for k in range(10)]


def test_row_adamw_matches_dense_adamw_when_every_row_is_used():
    torch.manual_seed(0)
    sparse, dense = torch.nn.Embedding(4, 2, sparse=True), torch.nn.Embedding(4, 2)
    dense.weight.data.copy_(sparse.weight.data)
    ours = RowAdamW(list(sparse.parameters()))
    ref = torch.optim.AdamW(dense.parameters(), lr=0.01, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.1)
    idx = torch.arange(4)
    for _ in range(5):
        ours.zero_grad(), ref.zero_grad()
        (sparse(idx) ** 2).sum().backward(), (dense(idx) ** 2).sum().backward()
        ours.step(0.01, 0.9, 0.1), ref.step()
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=1e-4, atol=1e-6)


def test_batch_bounds_cover_every_row_and_never_leave_one_alone():
    for n, bs in [(10, 3), (9, 3), (1, 4), (65, 64), (64, 64)]:
        bounds = _batch_bounds(n, bs)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert n == 1 or all(e - s > 1 for s, e in bounds)


def test_lr_find_suggests_and_leaves_model_alone(tiny, tmp_path):
    m = ck.DotProductBias.from_data(tiny)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    res = lr_find(m, tiny, bs=32)
    assert 1e-6 <= res.suggestion <= 1.0 and 1e-6 <= res.steepest <= 1.0
    assert len(res.lrs) == len(res.losses) > 10
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert res.plot(tmp_path / "lr.png").stat().st_size > 1000


def test_lr_scale_is_square_root_above_the_reference_batch():
    from collabkit.core.loop import LR_REF_BS, lr_scale

    assert lr_scale(64) == lr_scale(LR_REF_BS) == 1.0
    assert lr_scale(4 * LR_REF_BS) == pytest.approx(2.0)
    assert lr_scale(4096, ref=None) == 1.0


def _fit_preds(data, **kw):
    m = ck.DotProductBias.from_data(data, seed=1)
    if "default_bs" in kw:
        m.default_bs = kw.pop("default_bs")
    ck.fit_one_cycle(m, data, epochs=2, seed=2, progress=False, **kw)
    return m.predict(data.frame["user"], data.frame["item"])


def test_batch_size_defaults_to_the_models_own(tiny):
    np.testing.assert_array_equal(_fit_preds(tiny, default_bs=16), _fit_preds(tiny, bs=16))
    assert not np.array_equal(_fit_preds(tiny, default_bs=16), _fit_preds(tiny, bs=32))
    assert ck.DotProductBias.default_bs == 1024 and ck.EmbeddingNN.default_bs == 256


def test_large_batches_train_at_the_scaled_rate(tiny):
    scaled = _fit_preds(tiny, bs=1024, lr_max=3e-3)
    np.testing.assert_array_equal(scaled, _fit_preds(tiny, bs=1024, lr_max=3e-3 * 2.0, lr_ref_bs=None))
    assert not np.array_equal(scaled, _fit_preds(tiny, bs=1024, lr_max=3e-3, lr_ref_bs=None))


def test_valley_ignores_a_noisy_flat_start():
    """A planted sweep: flat and noisy up to 1e-3, falling to a minimum at 1e-1, then blowing up."""
    from collabkit.train.lr_find import _valley

    lrs = np.logspace(-6, 0, 100)
    x = np.log10(lrs)
    loss = np.where(x < -3, 1.88, 1.88 - 0.13 * (x + 3) ** 2)
    loss = np.where(x > -1, 1.36 + 3 * (x + 1), loss)
    loss = loss + np.random.default_rng(0).normal(0, 0.004, 100)
    assert 1e-3 < _valley(lrs, loss) < 1e-1  # inside the descent, not in the noise before it


def test_training_holds_16_bytes_a_rating(monkeypatch):
    """3 M ratings through fit (baseline sweep, then fit_one_cycle): int32 indices, float32
    ratings and the int32 epoch permutation (16 bytes a rating), plus the model's tables and one
    batch; int64 would be 28, and the baseline sweep over whole columns was 49 at its peak."""
    n, n_users, n_items = 3_000_000, 20_000, 5_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "user": rng.integers(0, n_users, n).astype(np.int32), "item": rng.integers(0, n_items, n).astype(np.int32),
        "rating": rng.integers(1, 6, n).astype(np.float32),
    })  # fmt: skip
    data = Ratings(frame, scale=(1.0, 5.0))
    model = DotProductBias.from_data(data, n_factors=4)
    monkeypatch.setattr("collabkit.models.base.BASELINE_CHUNK", 1 << 18)  # chunks well below n here
    _, peak = peak_rss(model.fit, data, epochs=1, bs=65536, progress=False)
    tables = 3 * sum(p.numel() * 4 for p in model.parameters())  # weights and two Adam moments
    assert peak < 16 * n + tables + (24 << 20), peak / n


def test_training_settings_keep_a_steps_memory_for_the_next_and_restore():
    """Inside, a step's ~120 MB of temporaries come back without page faults (glibc keeps them);
    after, threads are as before and the heap is trimmed. glibc is first set to map every block
    of 64 KB or more on its own, so without the settings each step would fault ~30 000 times.
    In a fresh process: after the rest of the suite (compiling the kernels, say) one to four of
    the 30 blocks faulted now and then."""
    if _glibc() is None:
        pytest.skip("the heap settings are glibc's")
    script = """
import ctypes, json, resource, torch
from collabkit.core.loop import training_settings

def step():
    blocks = [torch.ones(5 << 20) for _ in range(6)]  # 6 x 20 MB, written
    del blocks

def faults():
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt

ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: fixed at 64 KB
threads = torch.get_num_threads()
with training_settings(1):
    one = torch.get_num_threads()
    step(), step()  # the heap grows to the step's size
    before = faults()
    for _ in range(5):
        step()
    inside = faults() - before
before = faults()
step()  # after the trim the same step faults again: the memory went back to the system
print(json.dumps({"one": one, "restored": torch.get_num_threads() == threads,
                  "inside": inside, "after": faults() - before}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["one"] == 1 and got["restored"], got
    # ~150 000 without the settings (5 steps x 6 blocks of 20 MB, 5 120 pages each); now and then
    # a few blocks still fault, even in a fresh process under load (cause not found: 4 blocks in
    # one CI run), so the bound is less than one step's six blocks over the five steps
    assert got["inside"] < 6 * 5120, got
    assert got["after"] > 10_000, got


@pytest.mark.parametrize("n, size", [(50, 200), (10_000, 30)])  # the mask path and unique's sort
def test_unique_rows_is_torch_unique(n, size):
    idx = torch.randint(0, n, (size,), generator=torch.Generator().manual_seed(n))
    rows, inverse = unique_rows(idx, n)
    want_rows, want_inverse = torch.unique(idx, return_inverse=True)
    assert torch.equal(rows, want_rows) and torch.equal(inverse, want_inverse)




def test_epoch_order_past_the_parallel_size_is_a_permutation(monkeypatch):
    monkeypatch.setattr("collabkit.core.loop.PARALLEL_ORDER", 10)
    order = epoch_order(1000, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
