"""Implicit feedback on MovieLens 100k: most-popular vs EASE vs iALS vs BPR, ranking metrics at K.

    python bench/implicit.py --data-dir ../shared/data/ml-100k [--json] [--tune]
    python bench/implicit.py --protocol heldout-users --data-dir ../shared/data [--json]

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

``--protocol heldout-users`` is strong generalisation (Liang et al. 2018; ``evaluate.heldout``):
a fifth of the users with >= 5 positives (at most 10 000) are kept out of training, each is folded
in from 80% of their positives and the whole catalogue minus those is ranked against the other
20%: recall@20, recall@50 (hits / min(k, held-out)) and ndcg@100, each with its 95% bootstrap
interval over the held-out users. It runs on ML-100k (rating >= 4) and on Epinions
(``epinions/ratings.tsv`` beside ml-100k: a repeated (user, item) pair keeps its mean rating,
rating >= 4 is a positive, then items with >= ``--min-item`` positives (20) and, among those,
users with >= 5 positives, so that EASE's item x item matrix fits). Each of ``--seeds`` seeds (3)
draws other held-out users and seeds the models; the table shows the median over seeds and the
interval of the median run (min-max over the seeds in --json). Hyper-parameters are the defaults
(chosen on ML-100k's ``user`` split as above, so that tuning saw ML-100k interactions this
protocol ranks; nothing was tuned on Epinions).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
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
HELDOUT_METRICS = ("recall@20", "recall@50", "ndcg@100")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data-dir", type=Path, default=None, help="folder holding ml-100k (or the ml-100k folder)"
    )
    p.add_argument("--protocol", choices=("split", "heldout-users"), default="split")
    p.add_argument("--seeds", type=int, default=3, help="heldout-users: runs, seeds 42, 43, ...")
    p.add_argument("--datasets", default="ml-100k,epinions", help="heldout-users: comma-separated")
    p.add_argument("--min-item", type=int, default=20, help="heldout-users: Epinions item filter")
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
    if args.protocol == "heldout-users":
        result = heldout(args, log)
        if args.json:
            sys.stdout.write(json.dumps(result) + "\n")
        else:
            report_heldout(result)
        return
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


def positives(name: str, args) -> ck.Ratings:
    """The interactions of a data set of the held-out-user benchmark (module docstring)."""
    root = args.data_dir or Path(".")
    if name == "ml-100k":
        ml = root / "ml-100k" if (root / "ml-100k").is_dir() else root
        return to_implicit(ck.load_movielens("100k", data_dir=ml, progress=False), args.threshold)
    if name != "epinions":
        raise SystemExit(f"unknown data set {name!r}: ml-100k or epinions")
    data = to_implicit(
        ck.read_ratings(root / "epinions" / "ratings.tsv", duplicates="mean", name="epinions"),
        args.threshold,
    )
    f = data.frame
    per_item = f["item"].value_counts()
    f = f[f["item"].isin(per_item.index[per_item >= args.min_item])]
    per_user = f["user"].value_counts()
    f = f[f["user"].isin(per_user.index[per_user >= 5])]
    return data.with_frame(f, f"epinions (>= {args.threshold:g}, items >= {args.min_item}, users >= 5)")


def heldout(args, log: Console) -> dict[str, Any]:
    """Every kind on every data set and seed under strong generalisation; medians over seeds."""
    from collabkit.evaluate.compare import compare_heldout

    out: dict[str, Any] = {"protocol": "heldout-users", "fold_in": 0.8, "seeds": [], "datasets": {}}
    seeds = [args.seed + n for n in range(args.seeds)]
    out["seeds"] = seeds
    for name in args.datasets.split(","):
        data = positives(name, args)
        log.print(f"{data.name}: {len(data)} interactions, {data.n_users} users, {data.n_items} items")
        runs = []
        for seed in seeds:
            result = compare_heldout(KINDS, data, relevant_threshold=None, seed=seed)
            runs.append(result.to_json())
            for row in runs[-1]:
                log.print(
                    f"  seed {seed} {row['model']:<13} "
                    + "  ".join(f"{m} {row[m]:.4f}" for m in result.metrics)
                    + f"  fit {row['fit_seconds']:.1f}s"
                )
        out["datasets"][name] = {
            "name": data.name, "n_interactions": len(data), "n_users": data.n_users,
            "n_items": data.n_items, "n_heldout_users": runs[0][0]["n_heldout_users"],
            "models": {kind: _over_seeds([run[n] for run in runs]) for n, kind in enumerate(KINDS)},
        }  # fmt: skip
    return out


def _over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over seeds of each metric, the interval of the run at the median, min and max."""
    out: dict[str, Any] = {"runs": rows}
    for m in HELDOUT_METRICS:
        values = [r[m] for r in rows]
        middle = sorted(range(len(rows)), key=lambda n: values[n])[len(rows) // 2]
        out[m] = statistics.median(values)
        out[f"{m}_interval"] = rows[middle]["intervals"][m]
        out[f"{m}_range"] = [min(values), max(values)]
    out["fit_seconds"] = statistics.median(r["fit_seconds"] for r in rows)
    return out


def report_heldout(result: dict[str, Any]) -> None:
    console = Console()
    for d in result["datasets"].values():
        table = Table(
            title=f"{d['name']}: {d['n_heldout_users']} held-out users of {d['n_users']}, "
            f"{d['n_items']} items; median of {len(result['seeds'])} seeds [95% interval of the median run]"
        )
        for col in ["model", *HELDOUT_METRICS, "fit (s)"]:
            table.add_column(col, justify="left" if col == "model" else "right")
        for kind, m in d["models"].items():
            cells = [f"{m[x]:.4f} [{m[f'{x}_interval'][0]:.3f}, {m[f'{x}_interval'][1]:.3f}]" for x in HELDOUT_METRICS]
            table.add_row(kind, *cells, f"{m['fit_seconds']:.1f}")
        console.print(table)


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
