from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from collabkit.core import kernels
from collabkit.core.kernels import SORT_RATIO, _group, permutation
from collabkit.core.loop import train_step
from collabkit.core.optim import RowAdamW
from collabkit.models.base import registry


def test_compiled_step_is_the_torch_step(tiny):
    """Every kind that hands its tables to the compiled step must end five steps with the weights,
    moments and losses of the torch step (autograd through forward + RowAdamW): a subclass that
    changed the score but kept dot_tables would fail here."""
    checked = []
    gen = torch.Generator().manual_seed(0)
    for kind, cls in registry().items():
        small = {"n_factors": 4} if cls.Config().n_factors else {}  # 0: a kind without factors
        fast = cls.from_data(tiny, **small)
        if fast.dot_tables() is None:
            continue
        slow, start = copy.deepcopy(fast), copy.deepcopy(fast)
        opt_fast, opt_slow = RowAdamW(list(fast.parameters())), RowAdamW(list(slow.parameters()))
        for _ in range(5):  # repeated rows in every batch: their gradients are sums
            u = torch.randint(0, len(fast.users), (12,), generator=gen)
            i = torch.randint(0, len(fast.items), (12,), generator=gen)
            r = torch.randint(1, 6, (12,), generator=gen).float()
            got = train_step(fast, opt_fast, u, i, r, 0.05, 0.9, 0.1)
            want = train_step(slow, opt_slow, u, i, r, 0.05, 0.9, 0.1, compiled=False)
            assert got.item() == pytest.approx(want.item(), rel=1e-5), kind
        for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
            assert torch.allclose(p, q, atol=1e-6), (kind, name)
            assert torch.allclose(opt_fast.moments_of(p), opt_slow.moments_of(q), atol=1e-6), (kind, name)
        assert any(not torch.equal(p, q) for p, q in zip(fast.parameters(), start.parameters()))
        checked.append(kind)
    assert sorted(checked) == ["bias", "dot", "dot-bias"]


@pytest.mark.parametrize("n_rows", [40, 40 * SORT_RATIO * 10])  # counted, then sorted
def test_group_lists_each_rows_positions(n_rows):
    idx = np.random.default_rng(n_rows).integers(0, n_rows, 40) if n_rows == 40 else np.array([7, 3, n_rows - 1, 7, 0] * 8)
    rows, start, order = _group(idx, n_rows)
    np.testing.assert_array_equal(rows, np.unique(idx))
    np.testing.assert_array_equal(np.sort(order), np.arange(len(idx)))
    for j, row in enumerate(rows):
        assert (idx[order[start[j] : start[j + 1]]] == row).all()


@pytest.mark.parametrize("compiled", [True, False])
def test_a_step_at_positions_is_the_step_on_the_gathered_batch(tiny, compiled):
    """fit_one_cycle hands the step the epoch's int32 arrays and the batch's positions."""
    gen = torch.Generator().manual_seed(1)
    users = torch.randint(0, 5, (40,), generator=gen, dtype=torch.int32)
    items = torch.randint(0, 5, (40,), generator=gen, dtype=torch.int32)
    ratings = torch.randint(1, 6, (40,), generator=gen).float()
    at = torch.randperm(40, generator=gen, dtype=torch.int32)[:16]
    a = registry()["dot-bias"].from_data(tiny, n_factors=4)
    b = copy.deepcopy(a)
    opt_a, opt_b = RowAdamW(list(a.parameters())), RowAdamW(list(b.parameters()))
    for _ in range(3):
        got = train_step(a, opt_a, users, items, ratings, 0.05, 0.9, 0.1, compiled=compiled, at=at)
        batch = (users[at].long(), items[at].long(), ratings[at])
        want = train_step(b, opt_b, *batch, 0.05, 0.9, 0.1, compiled=compiled)
        assert got.item() == want.item()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_permutation_is_a_seeded_permutation_whatever_the_threads():
    n = 200_000  # six buckets
    got = permutation(n, 7).numpy()
    np.testing.assert_array_equal(np.sort(got), np.arange(n))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        np.testing.assert_array_equal(permutation(n, 7).numpy(), got)
    finally:
        torch.set_num_threads(threads)
    assert not np.array_equal(permutation(n, 8).numpy(), got)


def test_permutation_moves_every_element_anywhere_evenly():
    """Over 400 seeds, where element 0 lands and what comes first are spread evenly over the
    four quarters (expected 100 each; a bucket-bound or unshuffled order would pile up)."""
    n = 1 << 17  # four buckets
    lands, first = np.zeros(4, int), np.zeros(4, int)
    for seed in range(400):
        p = permutation(n, seed).numpy()
        lands[np.flatnonzero(p == 0)[0] * 4 // n] += 1
        first[p[0] * 4 // n] += 1
    for counts in (lands, first):
        assert ((counts > 60) & (counts < 140)).all(), counts  # 4 sigma around 100


def test_a_frozen_table_stays_as_it_was(tiny):
    """Freezing the item factors (to train users only) sends the step through autograd, which
    leaves what RowAdamW does not hold alone."""
    model = registry()["dot-bias"].from_data(tiny, n_factors=4)
    model.item_factors.weight.requires_grad_(False)
    frozen = model.item_factors.weight.clone()
    assert model.dot_tables() is None
    opt = RowAdamW(list(model.parameters()))
    u, i, r = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 2]), torch.tensor([4.0, 2.0, 5.0])
    before = model.user_factors.weight.clone()
    train_step(model, opt, u, i, r, 0.05, 0.9, 0.1)
    assert torch.equal(model.item_factors.weight, frozen)
    assert not torch.equal(model.user_factors.weight, before)


def test_one_thread_trains_as_two_threads_do(tiny):
    """The serial build (one thread, no pool) is the parallel build's maths, bit for bit."""
    one = registry()["dot-bias"].from_data(tiny, n_factors=8)
    two = copy.deepcopy(one)
    opt_one, opt_two = RowAdamW(list(one.parameters())), RowAdamW(list(two.parameters()))
    gen = torch.Generator().manual_seed(3)
    threads = torch.get_num_threads()
    try:
        for _ in range(3):
            u = torch.randint(0, len(one.users), (500,), generator=gen)
            i = torch.randint(0, len(one.items), (500,), generator=gen)
            r = torch.randint(1, 6, (500,), generator=gen).float()
            torch.set_num_threads(1)
            a = train_step(one, opt_one, u, i, r, 0.05, 0.9, 0.1)
            torch.set_num_threads(2)
            b = train_step(two, opt_two, u, i, r, 0.05, 0.9, 0.1)
            assert a.item() == b.item()
    finally:
        torch.set_num_threads(threads)
    for p, q in zip(one.parameters(), two.parameters()):
        assert torch.equal(p, q)


def test_a_kernel_compiles_one_signature_per_build():
    """A build loaded for float32 refuses float64 tables rather than compiling a second entry
    into the shared cache."""
    X = torch.zeros(3, 2, dtype=torch.float64)
    indptr, cols, extra = np.array([0, 1, 1, 1]), np.array([0], np.int32), np.ones(1, np.float32)
    with pytest.raises(TypeError, match="No matching definition"):
        kernels._als_observed.build(1, "f4")(indptr, cols, extra, X.numpy(), X.numpy(), np.array([0, 3]))
    with pytest.raises(TypeError, match="no f2 build"):
        kernels._als_observed.load(1, "f2")


FRESH_FITS = """
import json, numba, torch
from numba.np.ufunc import parallel
from tests.conftest import make_ratings
import collabkit as ck
from collabkit.core.loop import fit_one_cycle
data = make_ratings(200, 100)
out = {}
for name, bs in (("small", 1024), ("again", 1024), ("als", None), ("large", 8192)):
    model = ck.ALS.from_data(data) if name == "als" else ck.DotProductBias.from_data(data, n_factors=8)
    h = model.fit(data) if name == "als" else fit_one_cycle(model, data, epochs=1, bs=bs)
    out[name] = {"setup": h.setup_seconds, "pool": parallel._is_initialized}
out["layer"] = numba.threading_layer()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_small_work_never_starts_a_thread_pool_and_loads_its_kernels_once():
    """In a fresh process: fits at batch <= 4096 and iALS on a small set run the serial builds
    (numba's pool is never started); the kernels load once, before the first fit's clock; a
    batch above 4096 runs the parallel build on numba's pool, its workqueue layer (whose idle
    threads sleep: OpenMP's spin)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = json.loads(_python(FRESH_FITS, env).splitlines()[-1])
    assert not out["small"]["pool"] and not out["als"]["pool"], out
    assert out["small"]["setup"] > 0 and out["again"]["setup"] == 0, out
    assert out["large"]["pool"] and out["large"]["setup"] > 0 and out["layer"] == "workqueue", out


LOAD_PERMUTATION = """
import json, torch
from collabkit.core import kernels
torch.set_num_threads(1)
p = kernels.permutation(1000, 7)
stats = kernels._permutation.build(1).stats
print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values()),
                  "path": stats.cache_path, "file": kernels.__file__, "perm": p[:20].tolist()}))
"""


@pytest.mark.slow
def test_concurrent_processes_share_one_kernel_cache(tmp_path):
    """Three processes start at once on an empty cache: one compiles the kernel and writes it,
    the others wait for it and read it (no process compiles it again, none reads a half-written
    or wrong entry); a later process reads it too."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    procs = [_start(LOAD_PERMUTATION, env) for _ in range(3)]
    runs = [json.loads(_finish(p).splitlines()[-1]) for p in procs]
    assert sorted(r["misses"] for r in runs) == [0, 0, 1], runs
    later = json.loads(_python(LOAD_PERMUTATION, env).splitlines()[-1])
    assert later["hits"] == 1 and later["misses"] == 0, later
    assert {tuple(r["perm"]) for r in [*runs, later]} == {tuple(later["perm"])}
    assert later["path"].startswith(str(tmp_path))


@pytest.mark.slow
def test_a_read_only_installed_package_caches_its_kernels_in_the_users_cache(tmp_path):
    """Installed where it cannot write (site-packages of another user), the package caches its
    kernels in the user's cache folder ($XDG_CACHE_HOME/numba), and the next process reads them."""
    root = Path(tempfile.mkdtemp(prefix="collabkit-ro-"))  # not under pytest's 0700 folders
    try:
        shutil.copytree(Path(kernels.__file__).parents[1], root / "site" / "collabkit",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (root / "cache").mkdir()
        os.chmod(root, 0o755)
        os.chmod(root / "cache", 0o777)
        if os.geteuid() == 0:  # root writes anywhere: a file where numba's folder would go stops it
            (root / "site" / "collabkit" / "core" / "__pycache__").write_text("")
        for path in (root / "site").rglob("*"):
            path.chmod(0o555 if path.is_dir() else 0o444)
        (root / "site").chmod(0o555)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
        env.update(PYTHONPATH=str(root / "site"), XDG_CACHE_HOME=str(root / "cache"))
        first = json.loads(_python(LOAD_PERMUTATION, env).splitlines()[-1])
        second = json.loads(_python(LOAD_PERMUTATION, env).splitlines()[-1])
        assert first["file"].startswith(str(root / "site")), first
        assert first["path"].startswith(str(root / "cache" / "numba")), first
        assert (first["misses"], second["misses"], second["hits"]) == (1, 0, 1)
        assert first["perm"] == second["perm"]
        assert not list((root / "site").rglob("*.nbi")) and list((root / "cache").rglob("*.nbi"))
    finally:
        for path in [root, *root.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(root)


def _start(code: str, env: dict | None = None) -> subprocess.Popen:
    cwd = Path(__file__).parents[2]  # the repository: `tests.conftest` imports
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


def _python(code: str, env: dict | None = None) -> str:
    return _finish(_start(code, env))


def test_the_compiled_fold_in_step_is_the_dense_levenberg_marquardt_step():
    """lm_step against the formula solved densely by numpy, padding answers (w = 0) and inactive
    rows included; lm_accept takes a step only when it lowers the MAP objective."""
    rng = np.random.default_rng(0)
    U, m, D = 4, 7, 5
    A, r = rng.normal(size=(U, m, D)), rng.uniform(1, 5, (U, m))
    w = (rng.random((U, m)) > 0.3).astype(np.float64)
    f, df = rng.uniform(1, 5, (U, m)), rng.uniform(0.1, 1, (U, m))
    x, mu = rng.normal(size=(U, D)), rng.normal(size=D)
    lam, damp = rng.uniform(0.5, 2, D), rng.uniform(0, 1, U)
    active, out = np.array([True, True, False, True]), np.empty((U, D))
    kernels.lm_step(A, w, r, f, df, x, lam, mu, damp, active, out)
    for u in range(U):
        H = (A[u].T * (w[u] * df[u] ** 2)) @ A[u] + np.diag(lam)
        H += np.diag(damp[u] * np.diag(H))
        g = A[u].T @ (w[u] * df[u] * (r[u] - f[u])) - lam * (x[u] - mu)
        want = x[u] + np.linalg.solve(H, g) if active[u] else x[u]
        np.testing.assert_allclose(out[u], want, rtol=1e-10, atol=1e-12)

    loss = (w * (r - f) ** 2).sum(1) + (lam * (x - mu) ** 2).sum(1)
    f_new = f + np.array([[0.0], [5.0], [0.0], [0.0]])  # row 0 fits as well, row 1 much worse
    new = out.copy()
    new[3] = x[3]  # row 3 did not move: it is done
    x0, damp0 = x.copy(), damp.copy()
    left = kernels.lm_accept(w, r, x, f, df, loss.copy(), new, f_new, df.copy(), lam, mu, damp, active, 1e-7)
    assert (w[0] * (r[0] - f_new[0]) ** 2).sum() + (lam * (new[0] - mu) ** 2).sum() < loss[0]
    assert left == 2 and active.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(x[0], new[0])  # a better step is taken and damped less
    np.testing.assert_array_equal(x[1], x0[1])  # a worse one is refused and damped harder
    assert damp[0] == damp0[0] * 0.1 and damp[1] == damp0[1] * 10
