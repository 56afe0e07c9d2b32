"""collabkit at MovieLens-32M size on one machine: a generated set, every long path timed.

    python bench/scale.py                           # 32 M ratings, 200 k users, 87 k items (ML-32M-sized)
    python bench/scale.py --ratings 2000000 --json  # a quick run; users/items scale with it
    python bench/scale.py --peers-python .peers-venv/bin/python   # + the implicit package's ALS

The set is generated, never read or committed: users and items with power-law activity and
popularity, ratings from a low-rank taste model plus user/item biases and noise, on ML-32M's
half-star scale (0.5..5). Steps, in one process: generate; dot-bias (50 factors, one-cycle) on
98% and RMSE on a 2% random holdout; top-10 for every user (seen items excluded); iALS (64
factors) on the ratings >= 4 as implicit feedback, seconds per iteration, fitted in a child
process from the saved interaction matrix. Each step reports its own peak RSS above what was
resident when it started, and the whole run its peak RSS. With ``--peers-python``, implicit's
ALS (same factors, reg, alpha, iterations, threads) fits the same matrix in the same way. With ``--torchrun 2``, dot-bias also trains through
``collabkit train --distributed`` on Parquet shards of the same split, in 1 process and in 2 ranks.
When PyTorch sees a CUDA GPU, dot-bias and top-10 also run on it (``--device cuda``), after the
CPU runs; ``gpu`` names it (null without one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

ML32M = {"ratings": 32_000_000, "users": 200_000, "items": 87_000}


def generate(n_ratings: int, n_users: int, n_items: int, rank: int = 8, seed: int = 0):
    """Ratings from a power-law world: P(user) ~ 1 / r^0.5 by activity rank r, P(item) ~ 1 / r^0.6
    (at ML-32M's size the busiest user has ~0.1% of the ratings and the top item ~0.4%, as there);
    score = 3.5 + b_u + b_i + (x_u . y_i) + noise, rounded to half stars in [0.5, 5].

    Built in chunks of 4 M rows, stored as int32 ids and float32 ratings (12 bytes per rating).
    Repeated (user, item) draws are drawn again; a catalogue too small for ``n_ratings`` distinct
    pairs gives fewer (the count is reported).
    """
    from collabkit.data.interactions import Ratings

    rng = np.random.default_rng(seed)
    cu = np.cumsum(1.0 / np.arange(1, n_users + 1) ** 0.5)
    ci = np.cumsum(1.0 / np.arange(1, n_items + 1) ** 0.6)
    perm_u, perm_i = rng.permutation(n_users), rng.permutation(n_items)  # ids not sorted by activity
    key = np.empty(0, dtype=np.int64)  # user * n_items + item, sorted, distinct
    for _ in range(20):  # heavy users saturate small catalogues: draw again until enough pairs
        draws = int((n_ratings - len(key)) * 1.2) + 1000
        u = np.empty(draws, dtype=np.int64)
        for s in range(0, draws, 1 << 22):
            e = min(draws, s + (1 << 22))
            u[s:e] = perm_u[np.searchsorted(cu, rng.random(e - s) * cu[-1])] * n_items
            u[s:e] += perm_i[np.searchsorted(ci, rng.random(e - s) * ci[-1])]
        key = np.union1d(key, u)
        del u
        if len(key) >= n_ratings:
            break
    key = key[np.sort(rng.permutation(len(key))[:n_ratings])]
    users, items = (key // n_items).astype(np.int32), (key % n_items).astype(np.int32)
    del key
    X = rng.normal(0, 0.6, (n_users, rank)).astype(np.float32)
    Y = rng.normal(0, 0.6, (n_items, rank)).astype(np.float32)
    bu = rng.normal(0, 0.35, n_users).astype(np.float32)
    bi = rng.normal(0, 0.45, n_items).astype(np.float32)
    r = np.empty(len(users), dtype=np.float32)
    for s in range(0, len(users), 1 << 22):
        uu, ii = users[s : s + (1 << 22)], items[s : s + (1 << 22)]
        score = 3.5 + bu[uu] + bi[ii] + (X[uu] * Y[ii]).sum(1) + rng.normal(0, 0.5, len(uu))
        r[s : s + len(uu)] = np.clip(np.round(score * 2) / 2, 0.5, 5.0)
    frame = pd.DataFrame({"user": users, "item": items, "rating": r})
    return Ratings(frame, scale=(0.5, 5.0), name=f"synthetic-{len(frame)}")


class Peak:
    """Peak resident memory of a block above the RSS at its start (Linux: resets VmHWM).

    Resetting hides earlier peaks from ru_maxrss, so the process's peak is kept here (``overall``).
    Memory freed by an earlier step and reused by glibc without growing RSS is not counted, so a
    step's figure is a lower bound; ``--exact-memory`` has glibc map every block of 64 KB or more
    on its own (each free returns it), which makes them exact at some cost in speed. Training keeps
    a step's freed memory for the next step whatever this says (core.loop.training_settings), so
    the dot-bias peak stays a lower bound.
    """

    overall_kb = 0

    def __enter__(self) -> Self:
        self.before, self.mb = None, float("nan")
        try:
            Peak.overall_kb = max(Peak.overall_kb, _status_kb("VmHWM"))
            Path("/proc/self/clear_refs").write_text("5")
            self.before = _status_kb("VmRSS")
        except OSError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.before is not None:
            self.mb = round((_status_kb("VmHWM") - self.before) / 1024, 1)

    @staticmethod
    def overall_mb() -> float:
        try:
            return round(max(Peak.overall_kb, _status_kb("VmHWM")) / 1024, 1)
        except OSError:
            return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def exact_memory() -> None:
    """Have glibc map every block of 64 KB or more on its own (M_MMAP_THRESHOLD, fixed). Training
    sets its own threshold while it runs (core.loop.training_settings), so this is set again after."""
    import ctypes

    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def run(args: argparse.Namespace, log) -> dict[str, Any]:
    import collabkit as ck
    from collabkit.data.implicit import interactions, to_implicit
    from collabkit.models.dot import DotProductBias
    from collabkit.models.implicit import ALS
    from collabkit.recommend.topn import seen_csr, top_n

    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"threads": args.threads}
    t0 = time.perf_counter()
    with Peak() as peak:
        data = generate(args.ratings, args.users, args.items, seed=args.seed)
    out.update(
        n_ratings=len(data), n_users=args.users, n_items=args.items,
        generate_seconds=round(time.perf_counter() - t0, 2), generate_peak_mb=peak.mb,
    )  # fmt: skip
    log(f"generated {len(data):,} ratings in {out['generate_seconds']}s")

    train, holdout = ck.random_split(data, 0.02, seed=args.seed)
    del data
    model = DotProductBias.from_data(train, n_factors=50)
    with Peak() as peak:
        history = model.fit(train, epochs=args.epochs, lr_max=args.lr, wd=0.1, bs=args.bs)
    if args.exact_memory:
        exact_memory()
    pred = model.predict(holdout.frame["user"], holdout.frame["item"])
    out.update(
        dot_bias_epochs=args.epochs,
        dot_bias_bs=args.bs or model.default_bs,
        dot_bias_fit_seconds=round(history.fit_seconds, 2),
        dot_bias_ratings_per_s=round(args.epochs * len(train) / history.fit_seconds),
        rmse=round(float(np.sqrt(np.mean((pred - holdout.frame["rating"].to_numpy()) ** 2))), 4),
        dot_bias_peak_mb=peak.mb,
    )
    log(f"dot-bias: {out['dot_bias_ratings_per_s']:,} ratings/s, holdout RMSE {out['rmse']}")

    with Peak() as peak:
        t0 = time.perf_counter()
        top_n(model, np.arange(len(model.users)), 10, seen=seen_csr(model, train))
        out["top10_all_users_seconds"] = round(time.perf_counter() - t0, 2)
    out["top10_peak_mb"] = peak.mb
    log(f"top-10 for {len(model.users):,} users in {out['top10_all_users_seconds']}s")
    del model
    out["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    if out["gpu"]:
        out.update(gpu_runs(args, train, holdout, log))
    if args.torchrun:
        out.update(distributed_runs(args, train, holdout, log))
    del holdout

    t0 = time.perf_counter()
    positives = to_implicit(train, threshold=4.0)
    del train
    out["implicit_interactions"] = len(positives)
    out["to_implicit_seconds"] = round(time.perf_counter() - t0, 2)
    als = ALS.from_data(positives, n_factors=64, iterations=args.als_iterations)
    matrix = interactions(positives, als.users, als.items)
    del positives
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.npz"
        np.savez(
            path, data=matrix.weights.astype(np.float32), indices=matrix.items.astype(np.int32),
            indptr=matrix.indptr, shape=np.array([matrix.n_users, matrix.n_items]),
        )  # fmt: skip
        del matrix
        spec = {"threads": args.threads, **als.config.to_json()}
        out.update(als_child(sys.executable, OWN, path, spec, "als", log))
        if args.peers_python:
            out.update(als_child(args.peers_python, PEER, path, spec, "implicit_als", log))
    out["peak_rss_mb"] = Peak.overall_mb()
    return out


def gpu_runs(args: argparse.Namespace, train, holdout, log) -> dict[str, Any]:
    """dot-bias and top-10 as in ``run``, with training and scoring on the GPU (``--device cuda``)."""
    from collabkit.core import device
    from collabkit.models.dot import DotProductBias
    from collabkit.recommend.topn import seen_csr, top_n

    model = DotProductBias.from_data(train, n_factors=50)
    with device.use("cuda"):
        history = model.fit(train, epochs=args.epochs, lr_max=args.lr, wd=0.1, bs=args.bs)
        pred = model.predict(holdout.frame["user"], holdout.frame["item"])
        t0 = time.perf_counter()
        top_n(model, np.arange(len(model.users)), 10, seen=seen_csr(model, train))
        top10 = time.perf_counter() - t0
    out = {
        "gpu_dot_bias_ratings_per_s": round(args.epochs * len(train) / history.fit_seconds),
        "gpu_rmse": round(float(np.sqrt(np.mean((pred - holdout.frame["rating"].to_numpy()) ** 2))), 4),
        "gpu_top10_all_users_seconds": round(top10, 2),
    }
    log(f"GPU: dot-bias {out['gpu_dot_bias_ratings_per_s']:,} ratings/s (RMSE {out['gpu_rmse']}), top-10 in {out['gpu_top10_all_users_seconds']}s")
    return out


def distributed_runs(args: argparse.Namespace, train, holdout, log) -> dict[str, Any]:
    """dot-bias by ``collabkit train --distributed`` in 1 process and in ``--torchrun`` ranks under
    torchrun (gloo, 127.0.0.1), each rank reading its own Parquet shard files of the training
    part; the saved model is scored on the holdout."""
    from collabkit.checkpoint import load_model

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "train").mkdir()
        for k, rows in enumerate(np.array_split(np.arange(len(train)), args.torchrun)):
            train.frame.iloc[rows].to_parquet(Path(tmp) / "train" / f"part-{k:03d}.parquet")
        common = [
            "-m", "collabkit.cli", "train", "--ratings", f"{tmp}/train", "--split", "none",
            "--epochs", str(args.epochs), "--lr", str(args.lr), "--bs", str(args.bs), "--json", "--distributed",
        ]  # fmt: skip
        for label, ranks in (("1 process", 1), (f"{args.torchrun} ranks", args.torchrun)):
            launch = [
                "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(ranks),
                "--master-addr", "127.0.0.1", "--master-port", "29577",
            ]  # fmt: skip
            model_dir = Path(tmp) / f"model-{ranks}"
            env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
            res = subprocess.run([sys.executable, *launch, *common, "--out", str(model_dir)], capture_output=True, text=True, env=env, check=False)
            key = f"distributed_{ranks}"
            if res.returncode != 0:
                log(f"{label}: failed: {res.stderr.strip()[-500:]}")
                out[f"{key}_error"] = res.stderr.strip()[-500:]
                continue
            got = json.loads(res.stdout.strip().splitlines()[-1])
            pred = load_model(model_dir).predict(holdout.frame["user"], holdout.frame["item"])
            rmse = float(np.sqrt(np.mean((pred - holdout.frame["rating"].to_numpy()) ** 2)))
            out[f"{key}_ratings_per_s"], out[f"{key}_rmse"] = got["ratings_per_s"], round(rmse, 4)
            log(f"distributed, {label}: {got['ratings_per_s']:,} ratings/s, holdout RMSE {rmse:.4f}")
    return out


# Both ALS fits run in a child process on the same saved CSR matrix (users x items, weights w),
# each from its library's natural input already in memory (implicit: a scipy CSR matrix;
# collabkit: a ratings frame), so their peaks above that are measured alike: the fit's own
# copies (the transpose, collabkit's CSR of both sides) and its iteration temporaries. Both
# compute the training loss after every iteration (collabkit's History always holds it).
CHILD_HEAD = """
import json, sys, time
import numpy as np
f = np.load(sys.argv[1]); cfg = json.loads(sys.argv[2])
kb = lambda key: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))
"""
PEER = CHILD_HEAD + """
import scipy.sparse as sp
from threadpoolctl import threadpool_limits
from implicit.cpu.als import AlternatingLeastSquares
m = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
model = AlternatingLeastSquares(factors=cfg["n_factors"], regularization=cfg["reg"], alpha=cfg["alpha"],
    iterations=cfg["iterations"], num_threads=cfg["threads"], calculate_training_loss=True, random_state=0)
del f
open("/proc/self/clear_refs", "w").write("5"); before = kb("VmRSS")
with threadpool_limits(1, "blas"):
    t = time.perf_counter(); model.fit(m, show_progress=False); fit = time.perf_counter() - t
    peak = (kb("VmHWM") - before) / 1024
    model.calculate_training_loss = False  # and once more without the loss pass, for the record
    t = time.perf_counter(); model.fit(m, show_progress=False); fit_noloss = time.perf_counter() - t
print(json.dumps({"seconds_per_iteration": fit / cfg["iterations"], "fit_peak_mb": peak,
    "seconds_per_iteration_without_loss": fit_noloss / cfg["iterations"]}))
"""
OWN = CHILD_HEAD + """
import statistics
import pandas as pd, torch
from collabkit.data.interactions import Ratings
from collabkit.models.implicit import ALS
torch.set_num_threads(cfg.pop("threads"))
users = np.repeat(np.arange(len(f["indptr"]) - 1, dtype=np.int32), np.diff(f["indptr"]))
frame = pd.DataFrame({"user": users, "item": f["indices"], "rating": f["data"]})
del f, users
positives = Ratings(frame, name="positives")
als = ALS.from_data(positives, **cfg)
open("/proc/self/clear_refs", "w").write("5"); before = kb("VmRSS")
h = als.fit(positives)
peak = (kb("VmHWM") - before) / 1024
from collabkit.models.implicit import _als_loss, _als_rows  # one loss pass, timed on its own
from collabkit.data.implicit import interactions
rows = _als_rows(interactions(positives, als.users, als.items), als.config.alpha)
X, Y = als.user_factors.weight.detach(), als.item_factors.weight.detach()
t = time.perf_counter(); _als_loss(rows, X, Y, als.config.reg); loss_s = time.perf_counter() - t
it = statistics.median(r["time"] for r in h.rows)
print(json.dumps({"seconds_per_iteration": it, "fit_peak_mb": peak,
    "seconds_per_iteration_without_loss": it - loss_s}))
"""


def als_child(python: str, script: str, path: Path, spec: dict[str, Any], name: str, log) -> dict[str, Any]:
    """One library's ALS on the saved matrix in a child process: seconds per iteration, fit peak."""
    res = subprocess.run([python, "-c", script, str(path), json.dumps(spec)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        log(f"{name} failed: {res.stderr.strip()[-500:]}")
        return {f"{name}_error": res.stderr.strip()[-500:]}
    got = json.loads(res.stdout.strip().splitlines()[-1])
    log(f"{name}: {got['seconds_per_iteration']:.3f}s per iteration, fit peak {got['fit_peak_mb']:.0f} MB")
    return {
        f"{name}_seconds_per_iteration": round(got["seconds_per_iteration"], 3),
        f"{name}_peak_mb": round(got["fit_peak_mb"], 1),  # above the RSS of the input in memory
        **{f"{name}_{k}": round(v, 3) for k, v in got.items() if k.endswith("_without_loss")},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ratings", type=int, default=ML32M["ratings"], help="ratings to generate (default: ML-32M's 32 M)")
    p.add_argument("--users", type=int, default=None, help="default: 200 k x ratings / 32 M")
    p.add_argument("--items", type=int, default=None, help="default: 87 k x sqrt(ratings / 32 M)")
    p.add_argument("--epochs", type=int, default=5, help="dot-bias epochs")
    p.add_argument("--lr", type=float, default=3e-3, help="dot-bias peak learning rate (bench/speed.py's scale run)")
    p.add_argument("--bs", type=int, default=65536, help="dot-bias batch size (bench/speed.py's scale run)")
    p.add_argument("--als-iterations", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers-python", default=None, help="python of a venv with implicit (shared/tools/peers-venv.sh)")
    p.add_argument("--torchrun", type=int, default=0, help="also train dot-bias with this many torchrun ranks (and 1 process)")
    p.add_argument("--exact-memory", action="store_true", help="exact per-step peaks (slower: every block over 64 KB is mmapped)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    if args.exact_memory:
        exact_memory()
    ratio = args.ratings / ML32M["ratings"]
    args.users = args.users or max(100, round(ML32M["users"] * ratio))
    args.items = args.items or max(100, round(ML32M["items"] * ratio**0.5))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run(args, log)
    if args.json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"collabkit at {result['n_ratings']:,} generated ratings ({args.threads} threads)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in result.items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    Console().print(table)


if __name__ == "__main__":
    main()
