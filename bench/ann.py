"""A catalogue past the approximate-search threshold: the serving engine's exact search against its IVF index.

    python bench/ann.py                          # 1.2 M items, human table
    python bench/ann.py --json                   # one JSON object
    python bench/ann.py --items 200000 --runs 1  # a quick look

The model is a dot-bias model of ``--items`` items and ``--users`` known users with synthetic
factors shaped like trained ones (``synthetic``): items belong to one of CLUSTERS taste clusters
in a rank-RANK subspace of the F factors, with within-cluster spread, a little full-rank noise,
norms and biases spread by a log-normal popularity; users mix two clusters. The store holds 20
ratings per known user, of items in their main cluster. Two engines serve the same model: one
with the default threshold (ANN_ITEMS: an index), one exact (threshold above the catalogue).

Reported: the index's build time, lists and calibrated nprobe, its memory (the index's arrays)
and the process's RSS growth while the approximate engine loads; each engine's load time; the
latency of ``for_answers`` (a user who rated after training: fold-in, search, reasons) from one
client, one request at a time on one thread as in a worker, p50/p99 over --queries requests; and
recall@10 of the approximate lists against the exact ones, over the known users' precomputed
lists (--recall-users random users) and over the timed fold-in requests. Timings are medians of
--runs runs (each builds the approximate engine anew and times every query again); the machine's
/proc/loadavg is reported before and after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from collabkit.data.vocab import Vocab
from collabkit.models.dot import DotProductBias
from collabkit.recommend.ann import ANN_ITEMS, describe, recall_at
from collabkit.serve.engine import Engine

F, RANK, CLUSTERS = 50, 24, 1000
RATED = 20  # ratings per known user in the store, and per fold-in user


def synthetic(n_users: int, n_items: int, seed: int = 0) -> tuple[DotProductBias, pd.DataFrame, np.ndarray, np.ndarray]:
    """(model, store ratings, each item's cluster, each user's main cluster): see the module docstring."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(RANK, F)).astype(np.float32) / np.sqrt(RANK)
    centres = rng.normal(size=(CLUSTERS, RANK)).astype(np.float32) @ basis
    popularity = rng.lognormal(0, 0.5, n_items).astype(np.float32)
    cluster = rng.integers(0, CLUSTERS, n_items)
    items = centres[cluster] + 0.5 * rng.normal(size=(n_items, RANK)).astype(np.float32) @ basis
    items += 0.1 * rng.normal(size=(n_items, F)).astype(np.float32)
    items *= 0.3 * np.sqrt(popularity)[:, None]
    taste = rng.integers(0, CLUSTERS, (n_users, 2))
    users = 0.6 * centres[taste[:, 0]] + 0.4 * centres[taste[:, 1]] + 0.3 * rng.normal(size=(n_users, RANK)).astype(np.float32) @ basis
    model = DotProductBias.from_vocabs(Vocab(np.arange(n_users), "user"), Vocab(np.arange(n_items), "item"),
                                       (1.0, 5.0), 3.5, n_factors=F)  # fmt: skip
    with torch.no_grad():
        model.user_factors.weight[:] = torch.from_numpy(users)
        model.item_factors.weight[:] = torch.from_numpy(items)
        model.user_bias.weight[:, 0] = torch.from_numpy(rng.normal(0, 0.3, n_users).astype(np.float32))
        model.item_bias.weight[:, 0] = torch.from_numpy((rng.normal(0, 0.3, n_items) + 0.2 * np.log(popularity)).astype(np.float32))
    members = np.split(np.argsort(cluster, kind="stable"), np.cumsum(np.bincount(cluster, minlength=CLUSTERS))[:-1])
    rated = np.concatenate([rng.choice(members[c], RATED, replace=False) for c in taste[:, 0]])
    store = pd.DataFrame({"user": np.repeat(np.arange(n_users), RATED).astype(str), "item": rated.astype(str),
                          "rating": rng.integers(1, 6, len(rated)).astype(float)})  # fmt: skip
    return model.eval(), store, cluster, members


def new_users(model: DotProductBias, members: list[np.ndarray], n: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """n users who rated after training: RATED items of two clusters, rated by the model's own
    prediction for a user of that taste plus noise (rounded to 1-5 stars)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.integers(0, CLUSTERS, 2)
        idx = np.unique(np.r_[rng.choice(members[a], RATED // 2 + 3, replace=False), rng.choice(members[b], RATED // 2, replace=False)])[:RATED]
        guide = model.item_factors.weight[torch.from_numpy(members[a][:50])].mean(0)  # a user who likes cluster a
        z = model.item_factors.weight[torch.from_numpy(idx)] @ guide + model.item_bias.weight[torch.from_numpy(idx), 0]
        vals = np.clip(np.round(3.5 + 4 * z.detach().numpy() + rng.normal(0, 0.5, len(idx))), 1, 5)
        out.append((idx.astype(np.int64), vals.astype(np.float64)))
    return out


def timed(engine: Engine, users: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(each request's seconds, (Q, 10) returned items): one request at a time, one thread."""
    torch.set_num_threads(1)
    seconds, lists = [], []
    for idx, vals in users:
        t = time.perf_counter()
        answer = engine.for_answers(idx, vals, 10)
        seconds.append(time.perf_counter() - t)
        lists.append(np.pad(answer.items, (0, 10 - len(answer.items)), constant_values=-1))
    return np.array(seconds), np.array(lists)


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_200_000)
    ap.add_argument("--users", type=int, default=5_000, help="known users (precomputed lists)")
    ap.add_argument("--queries", type=int, default=1_000, help="timed fold-in requests per engine and run")
    ap.add_argument("--recall-users", type=int, default=2_000, help="known users whose lists are compared")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    t = time.perf_counter()
    model, store, _, members = synthetic(a.users, a.items)
    queries = new_users(model, members, a.queries)
    generate = time.perf_counter() - t
    threshold = min(ANN_ITEMS, a.items)  # --items below 1 M: the index all the same
    exact = Engine(1, "", 100.0, model, None, store, top_k=100, ann_items=a.items + 1)
    exact_s, exact_lists = timed(exact, queries)
    runs = []
    for run in range(a.runs):
        before = rss_mb()
        ann = Engine(1, "", 100.0, model, None, store, top_k=100, ann_items=threshold)
        grown = rss_mb() - before
        if run:
            exact_s = np.r_[exact_s, timed(exact, queries)[0]]  # the exact engine is built once
        ann_s, ann_lists = timed(ann, queries)
        pick = np.random.default_rng(run).choice(a.users, min(a.recall_users, a.users), replace=False)
        runs.append({
            **describe(ann.index), "load_seconds": ann.load_seconds, "rss_growth_mb": grown,
            "p50_ms": 1e3 * np.percentile(ann_s, 50), "p99_ms": 1e3 * np.percentile(ann_s, 99),
            "exact_p50_ms": 1e3 * np.percentile(exact_s[-a.queries :], 50),
            "exact_p99_ms": 1e3 * np.percentile(exact_s[-a.queries :], 99),
            "recall_known": recall_at(ann.top_items[pick, :10], exact.top_items[pick, :10]),
            "recall_fold_in": recall_at(ann_lists, exact_lists),
        })  # fmt: skip
        del ann
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "search"}
    report = {
        "items": a.items, "known_users": a.users, "factors": F, "queries": a.queries, "recall_users": len(pick),
        "runs": a.runs, "threshold": threshold, "generate_seconds": generate,
        "model": f"dot-bias, synthetic factors: {CLUSTERS} clusters in a rank-{RANK} subspace of {F} factors, "
                 "log-normal popularity on norms and biases; users mix two clusters",
        "exact": {"load_seconds": exact.load_seconds, "p50_ms": med["exact_p50_ms"], "p99_ms": med["exact_p99_ms"]},
        "ann": {k: v for k, v in med.items() if not k.startswith("exact_")},
        "ann_runs": runs, "loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
    }  # fmt: skip
    if a.json:
        print(json.dumps(report))
        return
    x = report["ann"]
    print(f"{a.items:,} items, {a.users:,} known users, {F} factors; medians of {a.runs} run(s); "
          f"loadavg {' '.join(load_before)} -> {' '.join(report['loadavg_after'])}")  # fmt: skip
    print(f"  model: {report['model']}")
    print(f"  index: IVF, {x['lists']:.0f} lists, nprobe {x['nprobe']:.0f} (calibrated recall@10 {x['calibrated_recall']:.3f}), "
          f"built in {x['build_seconds']:.1f} s, {x['index_mb']:.0f} MB; engine RSS +{x['rss_growth_mb']:.0f} MB")  # fmt: skip
    print(f"{'':28}{'exact':>10}{'ANN':>10}")
    print(f"{'engine load (s)':28}{report['exact']['load_seconds']:>10.1f}{x['load_seconds']:>10.1f}")
    print(f"{'fold-in request p50 (ms)':28}{report['exact']['p50_ms']:>10.2f}{x['p50_ms']:>10.2f}")
    print(f"{'fold-in request p99 (ms)':28}{report['exact']['p99_ms']:>10.2f}{x['p99_ms']:>10.2f}")
    print(f"recall@10 vs exact: known users' lists {x['recall_known']:.4f} ({len(pick):,} users), "
          f"fold-in requests {x['recall_fold_in']:.4f} ({a.queries:,})")  # fmt: skip


if __name__ == "__main__":
    main()
