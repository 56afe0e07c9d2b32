"""Training speed: every fit in a fresh process, then warm, quiet and with every core kept busy, beside fastai.

    python bench/speed.py --data-dir ../shared/data --peers-python .peers-venv/bin/python   # table
    python bench/speed.py --data-dir ../shared/data --runs 10 --json                        # one JSON object
    python bench/speed.py --only chapter --runs 10                                          # the chapter row only

Each measured fit runs in a fresh child process, ``--runs`` times per row and condition. In that
process the same fit then runs once more: the first fit is the fresh-process figure (what every
``collabkit train`` gives), the second the warm one (a notebook's second fit). collabkit's
``fit_seconds`` leaves out its one-time set-up (loading the compiled kernels), shown as
``setup_seconds``. fastai (``--peers-python``, a venv from ../shared/tools/peers-venv.sh) runs the
same way, its child timing ``fit_one_cycle`` twice.

Conditions: ``quiet`` is the machine as it is (its load average is printed: other work is not
stopped); ``busy`` keeps every core busy with CPU-bound loops (``while True: pass``, one process a
core) that the bench starts before the child and stops after it. The two alternate run by run, so
drift in the machine's speed falls on both.

Like for like: both libraries do the same timed work (5 epochs, each followed by a pass over the
held-out ratings, fastai's default) on ONE torch thread, at the same batch (1024, and 64, the
chapter's) and the same effective learning rate (collabkit scales lr by sqrt(bs / 256) above
256: fastai gets 1e-2 at 1024). Ratios are of medians, fastai over collabkit, per condition.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
CHAPTER = {"epochs": 5, "lr": 5e-3, "wd": 0.1}
#: (name, label, model kind, config, batch size; None: the model's default)
ROWS = [
    ("chapter", "collabkit dot-bias, batch 1024 (the chapter recipe)", "dot-bias", {"n_factors": 50}, None),
    ("bs64", "collabkit dot-bias, batch 64", "dot-bias", {"n_factors": 50}, 64),
    ("nn", "collabkit nn (EmbeddingNN [100]), batch 256", "nn", {"layers": [100]}, None),
]
FASTAI_BATCHES = (1024, 64)
CONDITIONS = ("quiet", "busy")


@contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """``n`` CPU-bound loops in processes of their own while the block runs; stopped after it."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.2)  # the loops are running, not starting
        yield
    finally:
        for p in loops:
            p.kill()
        for p in loops:
            p.wait()


def child(spec: dict) -> dict:
    """In a fresh process: the fit twice (fresh, then warm); the first fit's RMSE."""
    import torch

    import collabkit as ck
    from collabkit.train.build import ModelSpec, build_untrained

    if spec["data"] == "synthetic":
        train, test = ck.random_split(synthetic(spec["n_ratings"], spec["n_users"], spec["n_items"]), 0.02, seed=42)
    else:
        train, test = ck.canonical_split(spec["data"], data_dir=spec["data_dir"])
        torch.set_num_threads(1)  # like for like with fastai
    out = {}
    for when in ("fresh", "warm"):
        torch.manual_seed(0)
        model = build_untrained(ModelSpec.of(spec["model"], **spec["config"]), train)
        valid = None if spec["data"] == "synthetic" else test  # fastai validates every epoch
        h = model.fit(train, valid, epochs=spec["epochs"], lr_max=spec["lr"], wd=spec["wd"], bs=spec["bs"])
        out[when] = {"fit_seconds": h.fit_seconds, "setup_seconds": h.setup_seconds}
        if when == "fresh":
            out["rmse"] = ck.evaluate_ratings(model, test)["rmse"]
            out["ratings_per_second"] = len(train) * spec["epochs"] / h.fit_seconds
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def synthetic(n_ratings: int, n_users: int, n_items: int, seed: int = 0):
    """Ratings with power-law user activity and item popularity (Zipf-like), from a rank-10 taste model."""
    from collabkit.data.interactions import Ratings

    rng = np.random.default_rng(seed)
    pu = 1.0 / np.arange(1, n_users + 1) ** 0.7
    pi = 1.0 / np.arange(1, n_items + 1) ** 0.9
    u = rng.choice(n_users, int(n_ratings * 1.15), p=pu / pu.sum())
    i = rng.choice(n_items, int(n_ratings * 1.15), p=pi / pi.sum())
    key = rng.permutation(np.unique(u.astype(np.int64) * n_items + i))[:n_ratings]
    u, i = key // n_items, key % n_items
    U, V = rng.normal(0, 0.5, (n_users, 10)), rng.normal(0, 0.5, (n_items, 10))
    r = np.clip(np.round(3.5 + (U[u] * V[i]).sum(1) + rng.normal(0, 0.8, len(u))), 1, 5)
    frame = pd.DataFrame({"user": u, "item": i, "rating": r.astype(np.float32)})
    return Ratings(frame, scale=(1.0, 5.0), name=f"synthetic-{n_ratings}")


def run_collabkit(spec: dict) -> dict:
    return _run_json([sys.executable, __file__, "--child", json.dumps(spec)])


def run_fastai(peers_python: str, files: tuple[Path, Path], bs: int) -> dict:
    """fastai's chapter recipe at ``bs`` in a fresh process of the peers venv, fitted twice."""
    from collabkit.core.loop import lr_scale

    train, test = files
    out = _run_json([
        peers_python, str(HERE / "peers.py"), "--train", str(train), "--test", str(test), "--which", "fastai",
        "--bs", str(bs), "--lr", str(5e-3 * lr_scale(bs)), "--threads", "1", "--repeat", "2",
    ])  # fmt: skip
    fits = out.pop("fit_seconds_each")
    return {**out, "fresh": {"fit_seconds": fits[0]}, "warm": {"fit_seconds": fits[1]}}


def _run_json(argv: list[str]) -> dict:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"benchmark child failed: {' '.join(argv[:4])} ...\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, label: str, run: Callable[[], dict], args: argparse.Namespace) -> list[dict]:
    """``run()`` ``args.runs`` times per condition, alternating; one summary row per condition."""
    results: dict[str, list[dict]] = {c: [] for c in args.conditions}
    for _ in range(args.runs):
        for condition in args.conditions:
            with busy_cores(os.cpu_count() or 1) if condition == "busy" else _nothing():
                results[condition].append(run())
    rows = []
    for condition, runs in results.items():
        fresh = [r["fresh"]["fit_seconds"] for r in runs]
        row = {
            "name": name, "run": label, "condition": condition, "rmse": statistics.median(r["rmse"] for r in runs),
            "fit_seconds": statistics.median(fresh), "fit_seconds_max": max(fresh),
            "warm_fit_seconds": statistics.median(r["warm"]["fit_seconds"] for r in runs),
            "setup_seconds": _median_or_none([r["fresh"].get("setup_seconds") for r in runs]),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "fresh_fit_seconds_each": fresh,
        }  # fmt: skip
        if "ratings_per_second" in runs[0]:
            row["ratings_per_second"] = statistics.median(r["ratings_per_second"] for r in runs)
        rows.append(row)
        if not args.json:
            print(f"  done: {label} [{condition}] fresh {row['fit_seconds']:.2f} s (max {row['fit_seconds_max']:.2f}), "
                  f"warm {row['warm_fit_seconds']:.2f} s", file=sys.stderr)  # fmt: skip
    return rows


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(rows: list[dict]) -> dict:
    """Ratios fastai / collabkit at equal batch, per condition, fresh and warm."""
    by = {(r["name"], r["condition"]): r for r in rows}
    out: dict[str, float] = {}
    for condition in CONDITIONS:
        ours = by.get(("chapter", condition))
        if ours:
            out[f"chapter_fit_seconds_{condition}"] = ours["fit_seconds"]
            out[f"chapter_fit_seconds_max_{condition}"] = ours["fit_seconds_max"]
        for bs, name in ((1024, "chapter"), (64, "bs64")):
            peer, mine = by.get((f"fastai{bs}", condition)), by.get((name, condition))
            if peer and mine:
                out[f"speedup_bs{bs}_{condition}"] = peer["fit_seconds"] / mine["fit_seconds"]
                out[f"speedup_bs{bs}_{condition}_warm"] = peer["warm_fit_seconds"] / mine["warm_fit_seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("COLLABKIT_DATA", "../shared/data"))
    ap.add_argument("--split", default="u1", help="ML-100k canonical split (u1..u5, ua, ub)")
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per row and condition")
    ap.add_argument("--only", help="comma-separated rows: " + ", ".join(n for n, *_ in ROWS))
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="quiet, busy or both")
    ap.add_argument("--peers-python", help="python of a venv with fastai (measured in the same run)")
    ap.add_argument("--scale", action="store_true", help="also a synthetic 5 M-rating run on every thread")
    ap.add_argument("--scale-ratings", type=int, default=5_000_000)
    ap.add_argument("--scale-bs", type=int, default=65536)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.conditions = [c for c in args.conditions.split(",") if c]
    if unknown := set(args.conditions) - set(CONDITIONS):
        ap.error(f"unknown condition(s) {', '.join(sorted(unknown))}: choose from {', '.join(CONDITIONS)}")
    only = set(args.only.split(",")) if args.only else {n for n, *_ in ROWS}
    load_before = os.getloadavg()
    rows = []
    for name, label, kind, config, bs in ROWS:
        if name in only:
            spec = {"data": args.split, "data_dir": args.data_dir, "model": kind, "config": config, "bs": bs, **CHAPTER}
            rows += measure(name, label, lambda spec=spec: run_collabkit(spec), args)
    if args.peers_python:
        import collabkit as ck

        with tempfile.TemporaryDirectory() as tmp:
            files = (Path(tmp) / "train.csv", Path(tmp) / "test.csv")
            for part, path in zip(ck.canonical_split(args.split, data_dir=args.data_dir), files):
                part.frame.to_csv(path, index=False)
            for bs in FASTAI_BATCHES:
                if bs == 1024 or "bs64" in only:
                    label = f"fastai collab_learner, batch {bs}" + (" (the chapter's)" if bs == 64 else "")
                    rows += measure(f"fastai{bs}", label, lambda bs=bs: run_fastai(args.peers_python, files, bs), args)
    if args.scale:
        # lr 3e-3 (scaled like any large batch): most of the 100k users have a handful of ratings
        spec = {"data": "synthetic", "n_ratings": args.scale_ratings, "n_users": 100_000, "n_items": 20_000,
                "model": "dot-bias", "config": {"n_factors": 50}, "bs": args.scale_bs, "epochs": 3, "lr": 3e-3, "wd": 0.1}  # fmt: skip
        label = f"collabkit dot-bias, synthetic {args.scale_ratings:,} ratings, batch {args.scale_bs}, every thread"
        rows += measure("scale", label, lambda: run_collabkit(spec), args)
    result = {
        "rows": rows, **summarise(rows), "runs": args.runs, "split": args.split,
        "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0], "cores": os.cpu_count(),
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        show(result)


def show(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Training speed on ML-100k {result['split']}: medians of {result['runs']} fresh processes")
    for col in ("run", "condition", "RMSE", "fresh fit s", "max", "warm fit s", "set-up s"):
        table.add_column(col, justify="left" if col in ("run", "condition") else "right")
    for r in result["rows"]:
        setup = r["setup_seconds"]
        table.add_row(
            r["run"], r["condition"], f"{r['rmse']:.4f}", f"{r['fit_seconds']:.2f}", f"{r['fit_seconds_max']:.2f}",
            f"{r['warm_fit_seconds']:.2f}", "" if setup is None else f"{setup:.2f}",
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    print(f"load average (1 min) before {result['load_average_before']:.2f}, after {result['load_average_after']:.2f}; "
          f"busy: {result['cores']} CPU-bound loops")  # fmt: skip
    print(" ".join(f"{k}={v:.3g}" for k, v in result.items() if k.startswith(("speedup", "chapter_"))))


if __name__ == "__main__":
    main()
