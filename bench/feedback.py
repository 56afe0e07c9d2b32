"""Feedback loops on MovieLens 100k: the runaway minority without mitigation and with each mitigation.

    python bench/feedback.py --data-dir ../shared/data [--seeds 0,1,2] [--rounds 20] [--json]
        [--png feedback.png] [--html feedback.html] [--no-controls]
    python bench/feedback.py --data-dir ../shared/data --candidate SPEC [--candidate SPEC ...]

Per seed: one world fitted to ML-100k (``WorldConfig`` defaults, or ``--world``: a 5% enthusiastic
minority fond of animated films, 20x as active, recruiting), the default system
under test retrained every round, the same world and seed for every mitigation. Two control
worlds run without mitigation: "no minority" (``minority_share=0``: the loop alone) and "no
minority, no feedback" (users also ignore the lists): what rises there is not the minority's doing.
"start" is the mean of the first 3 rounds, "end" the mean of the last 3; "cut" is how much of the
unmitigated rise in the favourites' share of majority lists a mitigation removes; majority
utility is its mean over all rounds, relative to the unmitigated run. Every figure is the median
over the seeds of the per-seed figures (the loop is deterministic under a seed; a run is a
figure, not a timing); the plots show each round's median over the seeds.

``--candidate`` compares systems under test before any loop runs: each is trained on the world's
seed log (round 0) and scored on how well its lists match the users' true tastes (NDCG@10 of
unseen items, ``ndcg_truth``), how close it is to a popularity ranking (``popularity_corr``) and
what a retraining costs (README, Feedback loops: which system under test).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields, replace

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

import collabkit as ck
from collabkit.simulate import PRESETS, WorldConfig, fit_world, simulate
from collabkit.simulate.loop import DEFAULT_SPEC
from collabkit.simulate.report import summarise, write_html, write_png
from collabkit.train.spec import parse_options

# control worlds: name -> the WorldConfig fields they change (run without mitigation)
CONTROLS = {
    "control: no minority": {"minority_share": 0.0},
    "control: no minority, no feedback": {"minority_share": 0.0, "feedback": False},
}


def run_seed(
    data: ck.Ratings, spec: str, names: list[str], seed: int, rounds: int, controls: bool,
    config: WorldConfig,
):  # fmt: skip
    """Summaries and per-round metrics of every run for one seed: {name: (summary, metrics)}."""
    world = fit_world(data, config, seed=seed)
    out = {}
    worlds = [(name, world, PRESETS[name]) for name in names]
    if controls:
        worlds += [
            (name, fit_world(data, replace(config, **kw), seed=seed), PRESETS["none"])
            for name, kw in CONTROLS.items()
        ]
    for name, w, mitigation in worlds:
        t = time.perf_counter()
        sim = simulate(w, spec, rounds=rounds, mitigation=mitigation, seed=seed)
        summary = summarise(sim.metrics)
        summary["wall_seconds"] = time.perf_counter() - t
        summary["majority_left"] = (
            int(len(w.tastes) - w.minority.sum()) - summary["majority_users_end"]
        )
        out[name] = (summary, sim.metrics)
    base = out["none"][0]
    rise = base["fav_share_majority_rise"]
    for name, (row, _) in out.items():
        row["share_rise_cut"] = 1 - row["fav_share_majority_rise"] / rise if rise > 0 else np.nan
        row["utility_majority_vs_none"] = (
            row["utility_majority_mean"] / base["utility_majority_mean"] - 1
        )
    return out


# round-0 figures of a candidate system under test, and their table headings
ROUND0 = {
    "ndcg_truth": "NDCG@10 vs truth",
    "popularity_corr": "rank corr. with popularity",
    "gini": "exposure Gini",
    "jaccard": "jaccard",
    "rmse": "RMSE vs truth",
    "fit_seconds": "fit s",
}


def round0(data: ck.Ratings, specs: list[str], seeds: list[int], config: WorldConfig) -> pd.DataFrame:
    """Each candidate's round-0 figures (median over seeds): trained on the seed log only."""
    rows = []
    for seed in seeds:
        world = fit_world(data, config, seed=seed)
        for spec in specs:
            r = simulate(world, spec, rounds=1, seed=seed).metrics.iloc[0]
            rows.append({"spec": spec, "seed": seed, **{c: float(r[c]) for c in ROUND0}})
    return pd.DataFrame(rows).groupby("spec", sort=False)[list(ROUND0)].median()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding ml-100k")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--spec", default=DEFAULT_SPEC, help="system under test (a model spec)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds; figures are medians")
    p.add_argument(
        "--mitigations",
        default=",".join(PRESETS),
        help=f"comma-separated, from {', '.join(PRESETS)}",
    )
    p.add_argument("--no-controls", action="store_true", help="skip the two control worlds")
    p.add_argument(
        "--world",
        default="",
        help="WorldConfig fields for every world, e.g. 'favourite_genres=(\"Animation\",)'",
    )
    p.add_argument("--png", default=None, help="write each metric over rounds here")
    p.add_argument("--html", default=None, help="write the HTML report here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--candidate",
        action="append",
        default=[],
        help="compare this system under test at round 0 instead (repeat the flag)",
    )
    args = p.parse_args()
    names = [n.strip() for n in args.mitigations.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        p.error(f"unknown mitigation(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if "none" not in names:
        names.insert(0, "none")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: write whole numbers separated by commas, e.g. 0,1,2")
    if not seeds:
        p.error("--seeds: give at least one seed")
    try:
        config = replace(WorldConfig(), **parse_options(args.world))
    except (ValueError, TypeError) as e:
        p.error(f"--world {args.world!r}: {e}; fields: {', '.join(f.name for f in fields(WorldConfig))}")

    t0 = time.perf_counter()
    data = ck.load_movielens("100k", data_dir=args.data_dir, progress=False)
    if args.candidate:
        table0 = round0(data, args.candidate, seeds, config)
        if args.json:
            print(json.dumps({"seeds": seeds, "candidates": table0.to_dict(orient="index")}))
            return
        t = Table(title=f"ML-100k, round 0 (seed log only), median of seeds {args.seeds}")
        t.add_column("system under test")
        for head in ROUND0.values():
            t.add_column(head, justify="right")
        for spec, r in table0.iterrows():
            t.add_row(str(spec), *(f"{r[c]:.3f}" for c in ROUND0))
        Console(width=200).print(t)
        return
    per_seed = {
        s: run_seed(data, args.spec, names, s, args.rounds, not args.no_controls, config)
        for s in seeds
    }
    runs = list(per_seed[seeds[0]])
    rows = {
        name: pd.DataFrame([per_seed[s][name][0] for s in seeds]).median().to_dict()
        for name in runs
    }
    curves = {  # each round's median over the seeds, for the pictures
        name: pd.concat([per_seed[s][name][1] for s in seeds])
        .groupby("round", as_index=False)
        .median()
        for name in runs
    }
    if args.png:
        write_png(curves, args.png)
    if args.html:
        title = f"Feedback loop on ML-100k: {args.spec}, median of seeds {args.seeds}"
        write_html(curves, args.html, title=title)
    total = time.perf_counter() - t0
    if args.json:
        out = {
            name: {**rows[name], "per_seed": {s: per_seed[s][name][0] for s in seeds}}
            for name in runs
        }
        print(
            json.dumps(
                {
                    "spec": args.spec,
                    "world": args.world,
                    "rounds": args.rounds,
                    "seeds": seeds,
                    "total_seconds": total,
                    "runs": out,
                }
            )
        )
        return
    table = Table(
        title=f"ML-100k, {args.rounds} rounds, median of seeds {args.seeds}, system {args.spec}"
    )
    cols = {
        "fav share": "fav_share_majority",
        "gini (all)": "gini",
        "gini (majority)": "gini_majority",
        "top-1% share (majority)": "top1_share_majority",
        "gini since round 0": "gini_cumulative",
        "jaccard": "jaccard",
        "maj. utility": "utility_majority",
        "ndcg vs truth": "ndcg_truth",
    }
    table.add_column("run")
    for col in [*cols, "mean share", "cut", "maj. utility vs none", "min. utility end"]:
        table.add_column(col, justify="right")
    table.add_column("majority left / minority end", justify="right")
    table.add_column("s", justify="right")
    for name, r in rows.items():
        control = name.startswith("control")
        table.add_row(
            name,
            *(f"{r[f'{c}_start']:.3f}->{r[f'{c}_end']:.3f}" for c in cols.values()),
            f"{r['fav_share_majority_mean']:.3f}",
            "" if name == "none" or control else f"{r['share_rise_cut']:.0%}",
            "" if name == "none" or control else f"{r['utility_majority_vs_none']:+.1%}",
            f"{r['utility_minority_end']:.2f}",
            f"{r['majority_left']:.0f} / {r['minority_users_end']:.0f}",
            f"{r['wall_seconds']:.0f}",
        )
    Console(width=240).print(table)
    Console().print(f"total {total:.0f} s")


if __name__ == "__main__":
    main()
