"""Feedback loops on MovieLens 100k: the runaway minority without mitigation and with each mitigation.

    python bench/feedback.py --data-dir ../shared/data [--rounds 20] [--json] [--png feedback.png]

One world fitted to ML-100k (``WorldConfig`` defaults: 5% enthusiastic minority fond of animation,
children's, fantasy and sci-fi films, 10x as active, recruiting), one fixed seed, the default
system under test retrained every round; the same world and seed for every mitigation. "start" is
the mean of the first 3 rounds, "end" the mean of the last 3; "cut" is how much of the
unmitigated rise in the favourites' share of majority lists a mitigation removes; majority utility
is its mean over all rounds, relative to the unmitigated run. One run per mitigation (the loop is
deterministic under the seed; a run is the figure, not a timing).
"""

from __future__ import annotations

import argparse
import json
import time

from rich.console import Console
from rich.table import Table

import collabkit as ck
from collabkit.simulate import PRESETS, fit_world, simulate
from collabkit.simulate.loop import DEFAULT_SPEC
from collabkit.simulate.report import summarise, write_html, write_png


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding ml-100k")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--spec", default=DEFAULT_SPEC, help="system under test (a model spec)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mitigations",
        default=",".join(PRESETS),
        help=f"comma-separated, from {', '.join(PRESETS)}",
    )
    p.add_argument("--png", default=None, help="write each metric over rounds here")
    p.add_argument("--html", default=None, help="write the HTML report here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    names = [n.strip() for n in args.mitigations.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        p.error(f"unknown mitigation(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if "none" not in names:
        names.insert(0, "none")

    t0 = time.perf_counter()
    data = ck.load_movielens("100k", data_dir=args.data_dir, progress=False)
    world = fit_world(data, seed=args.seed)
    runs, rows = {}, {}
    for name in names:
        t = time.perf_counter()
        sim = simulate(
            world, args.spec, rounds=args.rounds, mitigation=PRESETS[name], seed=args.seed
        )
        runs[name] = sim.metrics
        rows[name] = {**summarise(sim.metrics), "wall_seconds": time.perf_counter() - t}
    base = rows["none"]
    for row in rows.values():
        rise = base["fav_share_majority_rise"]
        row["share_rise_cut"] = (
            1 - row["fav_share_majority_rise"] / rise if rise > 0 else float("nan")
        )
        row["utility_majority_vs_none"] = (
            row["utility_majority_mean"] / base["utility_majority_mean"] - 1
        )
    figure = write_png(runs, args.png) if args.png else None
    if args.html:
        write_html(runs, args.html, title=f"Feedback loop on ML-100k: {args.spec}", png=figure)
    total = time.perf_counter() - t0
    if args.json:
        print(
            json.dumps(
                {
                    "spec": args.spec,
                    "rounds": args.rounds,
                    "seed": args.seed,
                    "total_seconds": total,
                    "runs": rows,
                }
            )
        )
        return
    table = Table(title=f"ML-100k, {args.rounds} rounds, seed {args.seed}, system {args.spec}")
    for col in (
        "mitigation",
        "fav share start->end",
        "fav share mean",
        "cut",
        "gini start->end",
        "jaccard start->end",
        "maj. utility start->end",
        "maj. utility vs none",
        "min. utility end",
        "majority left",
        "minority end",
        "s",
    ):
        table.add_column(col, justify="right")
    n_major0 = int((world.alive & ~world.minority).sum())
    for name, r in rows.items():
        table.add_row(
            name,
            f"{r['fav_share_majority_start']:.3f}->{r['fav_share_majority_end']:.3f}",
            f"{r['fav_share_majority_mean']:.3f}",
            "" if name == "none" else f"{r['share_rise_cut']:.0%}",
            f"{r['gini_start']:.3f}->{r['gini_end']:.3f}",
            f"{r['jaccard_start']:.3f}->{r['jaccard_end']:.3f}",
            f"{r['utility_majority_start']:.3f}->{r['utility_majority_end']:.3f}",
            "" if name == "none" else f"{r['utility_majority_vs_none']:+.1%}",
            f"{r['utility_minority_end']:.3f}",
            f"{n_major0 - r['majority_users_end']}",
            f"{r['minority_users_end']}",
            f"{r['wall_seconds']:.0f}",
        )
    Console(width=220).print(table)
    Console().print(f"total {total:.0f} s")


if __name__ == "__main__":
    main()
