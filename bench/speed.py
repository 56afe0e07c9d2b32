"""Training speed of collabkit's engine: ML-100k (u1 and the chapter's random split) and a synthetic scale run.

    python bench/speed.py --data-dir ../shared/data/ml-100k            # human table
    python bench/speed.py --data-dir ../shared/data/ml-100k --json     # one JSON object
    python bench/speed.py --skip-scale --runs 1                         # quick

Every configuration runs in a fresh child process (so its peak RSS is its own) ``--runs`` times;
the table shows medians. With ``--peers-python`` (a venv with fastai, see
../shared/tools/peers-venv.sh) fastai's chapter recipe runs on the same split in the same run,
so the speed ratio is measured, not quoted.

Like for like: on ML-100k both sides do the same timed work (5 epochs, each followed by a pass
over the held-out ratings, fastai's default) on ONE torch thread, and fastai runs at batch 64 (the
chapter's) and at 1024 (collabkit's default), at the same effective learning rate as collabkit
(which scales lr by sqrt(bs / 256) above 256: 1e-2 at 1024). Two ratios are printed: equal batch
(1024 vs 1024) and each library's default (collabkit 1024 vs fastai 64).
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
from pathlib import Path

import numpy as np
import pandas as pd

from collabkit.core.loop import lr_scale

HERE = Path(__file__).resolve().parent
CHAPTER = {"epochs": 5, "lr": 5e-3, "wd": 0.1}
ML100K_RUNS = [
    # (label, model kind, config, bs)  bs None = the engine's default
    ("dot-bias (chapter recipe)", "dot-bias", {"n_factors": 50}, None),
    ("dot-bias, bs 64 (fastai's batch)", "dot-bias", {"n_factors": 50}, 64),
    ("dot", "dot", {"n_factors": 50}, None),
    ("nn (EmbeddingNN, [100])", "nn", {"layers": [100]}, None),
]


def synthetic(n_ratings: int, n_users: int, n_items: int, seed: int = 0):
    """Ratings with power-law user activity and item popularity (Zipf-like), from a rank-10 taste model."""
    from collabkit.data.interactions import Ratings

    rng = np.random.default_rng(seed)
    pu = 1.0 / np.arange(1, n_users + 1) ** 0.7
    pi = 1.0 / np.arange(1, n_items + 1) ** 0.9
    u = rng.choice(n_users, int(n_ratings * 1.15), p=pu / pu.sum())
    i = rng.choice(n_items, int(n_ratings * 1.15), p=pi / pi.sum())
    key = np.unique(u.astype(np.int64) * n_items + i)
    key = rng.permutation(key)[:n_ratings]
    u, i = key // n_items, key % n_items
    U, V = rng.normal(0, 0.5, (n_users, 10)), rng.normal(0, 0.5, (n_items, 10))
    r = np.clip(np.round(3.5 + (U[u] * V[i]).sum(1) + rng.normal(0, 0.8, len(u))), 1, 5)
    frame = pd.DataFrame({"user": u, "item": i, "rating": r.astype(np.float32)})
    return Ratings(frame, scale=(1.0, 5.0), name=f"synthetic-{n_ratings}")


def one_run(spec: dict) -> dict:
    """Train one configuration in this process and report its metrics (called in a child)."""
    import torch

    import collabkit as ck
    from collabkit.train.build import ModelSpec, build_untrained

    if spec["data"] == "synthetic":
        data = synthetic(spec["n_ratings"], spec["n_users"], spec["n_items"])
        train, test = ck.random_split(data, 0.02, seed=42)
    elif spec["data"] == "u1":
        train, test = ck.canonical_split("u1", data_dir=spec["data_dir"])
    else:
        train, test = ck.random_split(ck.load_movielens("100k", data_dir=spec["data_dir"]), 0.2, seed=42)
    torch.manual_seed(0)
    model = build_untrained(ModelSpec.of(spec["model"], **spec["config"]), train)
    bs = spec["bs"] or model.default_bs
    t0 = time.perf_counter()
    valid = None
    if spec["data"] != "synthetic":  # like for like with fastai: one thread, a valid pass per epoch
        torch.set_num_threads(1)
        valid = test
    history = model.fit(train, valid, epochs=spec["epochs"], lr_max=spec["lr"], wd=spec["wd"], bs=bs)
    fit = time.perf_counter() - t0
    metrics = ck.evaluate_ratings(model, test)
    return {
        "rmse": metrics["rmse"],
        "mae": metrics["mae"],
        "fit_seconds": fit,
        "ratings_per_second": len(train) * spec["epochs"] / history.fit_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bs": bs,
        "n_train": len(train),
    }


def run_child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"benchmark child failed for {spec}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def fastai_run(peers_python: str, data_dir: str, split: str, bs: int = 64) -> dict:
    """fastai's collab_learner with the chapter's recipe at ``bs`` in the peers venv, same split, one thread."""
    script = HERE / "peers.py"
    with tempfile.TemporaryDirectory() as tmp:
        import collabkit as ck

        if split == "u1":
            train, test = ck.canonical_split("u1", data_dir=data_dir)
        else:
            train, test = ck.random_split(ck.load_movielens("100k", data_dir=data_dir), 0.2, seed=42)
        train.frame.to_csv(f"{tmp}/train.csv", index=False)
        test.frame.to_csv(f"{tmp}/test.csv", index=False)
        out = subprocess.run(
            [peers_python, str(script), "--train", f"{tmp}/train.csv", "--test", f"{tmp}/test.csv", "--which", "fastai",
             "--bs", str(bs), "--lr", str(5e-3 * lr_scale(bs)), "--threads", "1"],
            capture_output=True, text=True, check=False,
        )
        if out.returncode:
            raise RuntimeError(f"fastai peer failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("COLLABKIT_DATA", "../shared/data/ml-100k"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-scale", action="store_true", help="skip the synthetic 5M-rating run")
    ap.add_argument("--scale-ratings", type=int, default=5_000_000)
    ap.add_argument("--scale-bs", type=int, default=65536, help="batch size of the scale run (threaded)")
    ap.add_argument("--peers-python", help="python of a venv with fastai (measures fastai in the same run)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_run(json.loads(args.child))))
        return

    rows = []
    for split in ("u1", "random"):
        for label, kind, config, bs in ML100K_RUNS:
            spec = {"data": split, "data_dir": args.data_dir, "model": kind, "config": config, "bs": bs, **CHAPTER}
            med = median_of([run_child(spec) for _ in range(args.runs)])
            rows.append({"run": label, "split": split, **med})
            log(args, rows[-1])
        if args.peers_python:
            for bs in (64, 1024):
                peer = [fastai_run(args.peers_python, args.data_dir, split, bs) for _ in range(args.runs)]
                rows.append({"run": f"fastai collab_learner (chapter recipe, bs {bs})", "split": split, **median_of(peer)})
                log(args, rows[-1])
    if not args.skip_scale:
        # lr 3e-3 (scaled like any large batch): most of the 100k users have a handful of ratings
        # and 50 factors overfit them at higher rates (test RMSE at bs 65536: 1e-2 1.04, 3e-3 0.95)
        spec = {
            "data": "synthetic", "n_ratings": args.scale_ratings, "n_users": 100_000, "n_items": 20_000,
            "model": "dot-bias", "config": {"n_factors": 50}, "bs": args.scale_bs, "epochs": 3, "lr": 3e-3, "wd": 0.1,
        }
        med = median_of([run_child(spec) for _ in range(args.runs)])
        rows.append({"run": f"dot-bias 50f, synthetic {args.scale_ratings:,} ratings, 100k users x 20k items", "split": "2% random", **med})
        log(args, rows[-1])

    summary = summarise(rows)
    if args.json:
        print(json.dumps({"runs": rows, **summary, "n_runs": args.runs}))
        return
    show(rows, summary)


def summarise(rows: list[dict]) -> dict:
    out = {}
    ours = next(r for r in rows if r["split"] == "u1" and r["run"].startswith("dot-bias (chapter"))
    out["chapter_u1_rmse"], out["chapter_u1_fit_seconds"] = ours["rmse"], ours["fit_seconds"]
    small = next(r for r in rows if r["split"] == "u1" and r["run"].startswith("dot-bias, bs 64"))
    peer = {
        bs: next((r for r in rows if r["split"] == "u1" and r["run"] == f"fastai collab_learner (chapter recipe, bs {bs})"), None)
        for bs in (64, 1024)
    }
    if peer[64] and peer[1024]:
        out["fastai_u1_fit_seconds_bs64"] = peer[64]["fit_seconds"]
        out["fastai_u1_fit_seconds_bs1024"] = peer[1024]["fit_seconds"]
        out["speedup_equal_batch_1024"] = peer[1024]["fit_seconds"] / ours["fit_seconds"]
        out["speedup_equal_batch_64"] = peer[64]["fit_seconds"] / small["fit_seconds"]
        out["speedup_defaults"] = peer[64]["fit_seconds"] / ours["fit_seconds"]
    scale = next((r for r in rows if r["run"].startswith("dot-bias 50f, synthetic")), None)
    if scale:
        out["scale_ratings_per_second"], out["scale_peak_rss_mb"] = scale["ratings_per_second"], scale["peak_rss_mb"]
    return out


def log(args: argparse.Namespace, row: dict) -> None:
    if not args.json:
        print(f"  done: {row['run']} [{row['split']}] fit {row['fit_seconds']:.2f}s", file=sys.stderr)


def show(rows: list[dict], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="collabkit training speed (medians)")
    for col in ("run", "split", "rmse", "mae", "fit s", "ratings/s", "peak RSS MB"):
        table.add_column(col, justify="left" if col in ("run", "split") else "right")
    for r in rows:
        rps = r.get("ratings_per_second")
        table.add_row(
            r["run"], r["split"], f"{r['rmse']:.4f}", f"{r['mae']:.4f}", f"{r['fit_seconds']:.2f}",
            f"{rps / 1e6:.2f} M" if rps else "", f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "",
        )
    Console().print(table)
    print(" ".join(f"{k}={v:.4g}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
