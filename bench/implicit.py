"""Implicit feedback on MovieLens 100k: most-popular vs EASE vs iALS vs BPR, ranking metrics at K.

    python bench/implicit.py --data-dir ../shared/data/ml-100k [--json] [--tune]

ML-100k as implicit: rating >= 4 is a positive (``to_implicit``), everything else unobserved.
Two held-out splits of those positives: ``user`` (20% of each user's positives at random,
``user_split``; the acceptance split) and ``last`` (each user's latest positive, leave-last-out,
``temporal_split``). Every model is fitted on the training part and ranks the whole catalogue
minus the user's training items; recall@K, NDCG@K (and precision, hit rate, coverage) against the
held-out items, plus the wall-clock fit time.

Hyper-parameters are the models' defaults, which were chosen with ``--tune``: a grid searched by
NDCG@K on a validation split carved from the ``user`` split's *training part only*
(``user_split(train, 0.2, seed + 1)``); the test split is never looked at while choosing. With
``--tune`` the search runs here and its winners are used (on both splits).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

import collabkit as ck
from collabkit.data.implicit import to_implicit
from collabkit.evaluate.ranking import evaluate_ranking
from collabkit.models.implicit import KINDS
from collabkit.train.build import ModelSpec, build_model

# searched by --tune (validation NDCG@K); the defaults in the code are the winners on ML-100k
GRIDS: dict[str, dict[str, list[Any]]] = {
    "most-popular": {},
    "ease": {"reg": [50, 100, 200, 300, 500, 1000]},
    "als": {"n_factors": [32, 64, 128], "reg_alpha": [(10, 1), (30, 5), (50, 10), (100, 20)]},
    "bpr": {"lr_max": [1e-2, 3e-2], "wd": [0.5, 1.0, 2.0], "sampler": ["uniform", "popularity"]},
}
METRICS = ("ndcg", "recall", "precision", "hit_rate", "coverage")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data-dir", type=Path, default=None, help="folder holding ml-100k (or the ml-100k folder)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument(
        "--tune", action="store_true", help="grid-search each model on a validation split first"
    )
    p.add_argument("--threshold", type=float, default=4.0, help="ratings >= this are positives")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    log = Console(stderr=True)
    data = to_implicit(
        ck.load_movielens("100k", data_dir=args.data_dir, progress=False), args.threshold
    )
    log.print(data.notes[-1])
    splits = {"user": ck.user_split(data, 0.2, args.seed), "last": ck.temporal_split(data, 1)}
    params: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    tuning = None
    if args.tune:
        tuning = tune(splits["user"][0], args, log)
        params = {kind: t["best"] for kind, t in tuning.items()}
    result: dict[str, Any] = {
        "dataset": "ml-100k",
        "threshold": args.threshold,
        "k": args.k,
        "n_interactions": len(data),
        "splits": {},
    }
    for name, (train, test) in splits.items():
        log.print(f"split {name}: {len(train)} train / {len(test)} test interactions")
        result["splits"][name] = {
            kind: run(kind, train, test, params[kind], args, log) for kind in KINDS
        }
    result["acceptance"] = acceptance(result["splits"]["user"], args.k)
    if tuning is not None:
        result["tuning"] = tuning
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        report(result, args.k)


def run(
    kind: str, train: ck.Ratings, test: ck.Ratings, options: dict[str, Any], args, log: Console
) -> dict[str, Any]:
    """Fit one model (wall-clock timed) and score its top-K on the held-out interactions."""
    t0 = time.perf_counter()
    model, _ = build_model(ModelSpec.of(kind, **options), train, seed=args.seed)
    seconds = time.perf_counter() - t0
    scores = evaluate_ranking(model, train, test, args.k, relevant_threshold=None)
    log.print(f"  {kind:<13} ndcg@{args.k} {scores[f'ndcg@{args.k}']:.4f}  fit {seconds:.2f}s")
    return {
        **{f"{m}@{args.k}": scores[f"{m}@{args.k}"] for m in METRICS},
        "fit_seconds": seconds,
        "options": options,
    }


def tune(train: ck.Ratings, args, log: Console) -> dict[str, Any]:
    """Per model, the grid point with the best validation NDCG@K; validation comes from ``train`` only."""
    fit, valid = ck.user_split(train, 0.2, args.seed + 1)
    log.print(f"tuning on {len(fit)} / {len(valid)} interactions carved from the training part")
    out = {}
    for kind, grid in GRIDS.items():
        rows = []
        for values in itertools.product(*grid.values()):
            options = _options(dict(zip(grid, values)))
            model, _ = build_model(ModelSpec.of(kind, **options), fit, seed=args.seed)
            ndcg = evaluate_ranking(model, fit, valid, args.k, relevant_threshold=None)[
                f"ndcg@{args.k}"
            ]
            rows.append({"options": options, f"valid_ndcg@{args.k}": ndcg})
            log.print(f"  tune {kind:<13} {options} -> {ndcg:.4f}")
        best = max(rows, key=lambda r: r[f"valid_ndcg@{args.k}"])
        out[kind] = {
            "best": best["options"],
            f"valid_ndcg@{args.k}": best[f"valid_ndcg@{args.k}"],
            "grid": rows,
        }
    return out


def _options(point: dict[str, Any]) -> dict[str, Any]:
    """Grid point -> config options (iALS's reg and alpha move together, so they are paired)."""
    if "reg_alpha" in point:
        reg, alpha = point.pop("reg_alpha")
        point.update(reg=reg, alpha=alpha)
    return point


def acceptance(models: dict[str, dict[str, Any]], k: int) -> dict[str, Any]:
    """Every model vs most-popular (NDCG ratio) and the best learned model vs EASE (within 5%?)."""
    key = f"ndcg@{k}"
    popular, ease = models["most-popular"][key], models["ease"][key]
    learned = {kind: models[kind][key] for kind in ("als", "bpr")}
    best = max(learned, key=learned.get)
    return {
        "ratio_to_most_popular": {
            kind: m[key] / popular for kind, m in models.items() if kind != "most-popular"
        },
        "best_learned": best,
        "best_learned_vs_ease": learned[best] / ease,
        "best_learned_within_5pct_of_ease": learned[best] >= 0.95 * ease,
    }


def report(result: dict[str, Any], k: int) -> None:
    console = Console()
    for name, models in result["splits"].items():
        title = (
            f"ML-100k implicit (rating >= {result['threshold']:g}), split '{name}', metrics @{k}"
        )
        table = Table(title=title)
        for col in ["model", *METRICS, "fit (s)"]:
            table.add_column(col, justify="left" if col == "model" else "right")
        for kind, m in models.items():
            table.add_row(
                kind, *[f"{m[f'{x}@{k}']:.4f}" for x in METRICS], f"{m['fit_seconds']:.2f}"
            )
        console.print(table)
    acc = result["acceptance"]
    ratios = ", ".join(f"{kind} {r:.2f}x" for kind, r in acc["ratio_to_most_popular"].items())
    console.print(f"NDCG@{k} vs most-popular (split 'user'): {ratios}")
    console.print(
        f"best learned model: {acc['best_learned']} at {acc['best_learned_vs_ease']:.1%} of EASE's NDCG@{k} "
        f"({'within 5%' if acc['best_learned_within_5pct_of_ease'] else 'NOT within 5%'})"
    )
    if "tuning" in result:
        for kind, t in result["tuning"].items():
            console.print(
                f"tuned {kind}: {t['best']} (validation ndcg@{k} {t[f'valid_ndcg@{k}']:.4f})"
            )


if __name__ == "__main__":
    main()
