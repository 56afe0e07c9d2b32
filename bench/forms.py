"""The form auto's blend takes, on rating sets unlike the ones it was built on.

    python bench/forms.py --data-dir ../shared/data [--sets a,b] [--json]

auto fits a support-aware blend (weights per cell of user x item support) on a validation tenth of
the training data and keeps whichever form errs least out of fold: those cells, one weight per
member, or the best single member (``train.blend.choose_form``). This bench checks that choice on
sets of other sizes, scales and sparsity, derived from the shared files and generated:

- ``ml10``: a random tenth of ML-100k (10 k ratings); ``tiny``: its users <= 40 x items <= 60;
- ``half``: ML-100k on half stars (0.5-5); ``ten``: ML-100k on a 1-10 scale;
- ``epinions20``: a fifth of the Epinions users (its category as item metadata);
- ``jester``: a dense continuous -10..10 set (3,000 users x 100 jokes, low rank plus noise);
- ``books``: a power-law 1-10 set with e-mail and ISBN-like string ids (users and items Zipf).

For each set (80/20 random split, seed 42): auto is run once with the cells form kept, and the
other two forms are built from the same refitted members, so the three test RMSEs differ only by
the form; the form auto would choose is its out-of-fold rule applied to the same validation
predictions ("baseline member" when no form beat the best baseline member by one standard error,
and that member is then scored). Also the baseline predictor (``--model baseline``). One torch
thread by default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

import collabkit as ck
from collabkit.data.split import random_split
from collabkit.models.ensemble import Ensemble
from collabkit.train import auto
from collabkit.train.blend import choose_form

SETS = ("tiny", "ml10", "books", "jester", "half", "ten", "epinions20")


def make_set(name: str, data_dir: Path) -> ck.Ratings:
    """The rating set ``name`` (module docstring), deterministic."""
    rng = np.random.default_rng(0)
    if name == "epinions20":
        ep = pd.read_csv(data_dir / "epinions" / "ratings.tsv", sep="\t")
        users = ep["user"].drop_duplicates().sample(frac=0.2, random_state=0)
        ep = ep[ep["user"].isin(users)].drop_duplicates(["user", "item"], keep="last")
        return ck.read_ratings(ep, item_columns=["category"], name=name)
    if name in ("jester", "books"):
        if name == "jester":
            u, v = rng.normal(size=(3000, 5)), rng.normal(size=(100, 5))
            users, items = np.nonzero(rng.random((3000, 100)) < 0.5)
            r = (u[users] * v[items]).sum(1) * 1.5 + rng.normal(0, 3, len(users)) + rng.normal(0, 2, 100)[items]
            frame = pd.DataFrame({"user": users, "item": items, "rating": np.clip(r, -10, 10).round(2)})
        else:
            n = 150_000
            users, items = np.minimum(rng.zipf(1.6, n), 40_000), np.minimum(rng.zipf(1.4, n), 200_000)
            r = 7 + rng.normal(0, 1, 40_001)[users] + rng.normal(0, 1.5, 200_001)[items] + rng.normal(0, 1.5, n)
            frame = pd.DataFrame({"user": [f"u{x}@mail" for x in users], "item": [f"ISBN-{x:010d}" for x in items],
                                  "rating": np.clip(np.round(r), 1, 10)})  # fmt: skip
            frame = frame.drop_duplicates(["user", "item"], keep="last")
        return ck.read_ratings(frame, name=name)
    ml = pd.read_csv(data_dir / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "ts"])[["user", "item", "rating"]]
    if name == "ml10":
        ml = ml.sample(frac=0.1, random_state=0)
    elif name == "tiny":
        ml = ml[(ml["user"] <= 40) & (ml["item"] <= 60)]
    elif name == "half":
        ml = ml.assign(rating=ml["rating"] - rng.integers(0, 2, len(ml)) * 0.5)
    elif name == "ten":
        ml = ml.assign(rating=ml["rating"] * 2 - rng.integers(0, 2, len(ml)))
    return ck.read_ratings(ml, name=name)


def rmse(model: ck.CollabModel, test: ck.Ratings) -> float:
    p = model.predict(test.frame["user"], test.frame["item"])
    return float(np.sqrt(np.mean((p - test.frame["rating"].to_numpy()) ** 2)))


def run_set(name: str, data_dir: Path, budget: float) -> dict:
    """Test RMSE of the three forms from one auto run, the form its rule picks, the baseline's."""
    train, test = random_split(make_set(name, data_dir), 0.2, seed=42)
    seen: dict = {}
    fit = auto.fit_support

    def spy(P, y, uc, ic, baselines, names, **kw):  # keep the last blend's inputs
        seen.update(args=(P, y, uc, ic, baselines, names), blend=fit(P, y, uc, ic, baselines, names, **kw))
        return seen["blend"]

    with mock.patch.object(auto, "fit_support", spy), mock.patch.object(auto, "choose_form", lambda b, *a: b):
        model, _ = auto.build_auto(train, seed=42, budget=budget)  # the cells form, whatever the rule says
    blend, chosen = seen["blend"], choose_form(seen["blend"], *seen["args"])
    members = list(model.members)

    def of(ms: list, ws: list) -> Ensemble:  # same members, same fallback for unknown ids
        return Ensemble.of(ms, ws, fallback=model)

    P, y, uc, ic = seen["args"][:4]
    known = (uc > 0) & (ic > 0)  # the rows choose_form compares the members on
    best = int(np.argmin([np.mean((P[known, j] - y[known]) ** 2) for j in range(len(members))]))
    test_rmse = {"cells": rmse(model, test), "constant": rmse(of(members, list(blend.constant)), test),
                 "single": rmse(of([members[best]], [1.0]), test)}  # fmt: skip
    pick = int(np.argmax(chosen.mean_weights)) if chosen.form == "single" else best
    if pick != best:  # the rule's baseline member, for want of evidence (``chosen.note``)
        test_rmse["baseline member"] = rmse(of([members[pick]], [1.0]), test)
    form = "baseline member" if pick != best else chosen.form
    base = ck.build_model("baseline", train)[0]
    return {
        "set": name, "n_train": len(train), "users": train.n_users, "items": train.n_items,
        "oof_cells": blend.cells_oof_rmse, "oof_constant": blend.constant_oof_rmse, "oof_single": chosen.single_rmse,
        "form": form, "rmse_cells": test_rmse["cells"], "rmse_constant": test_rmse["constant"],
        "rmse_single": test_rmse["single"], "rmse": test_rmse[form], "rmse_baseline": rmse(base, test),
        "gain_over_cells": test_rmse["cells"] - test_rmse[form],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("COLLABKIT_TEST_DATA", "../shared/data")),
                   help="folder holding ml-100k/ and epinions/")  # fmt: skip
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    p.add_argument("--budget", type=float, default=auto.DEFAULT_BUDGET, help="auto's seconds per set")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if unknown := [s for s in sets if s not in SETS]:
        sys.exit(f"error: --sets: unknown {', '.join(unknown)}; choose from {', '.join(SETS)}")
    torch.set_num_threads(args.threads)
    load_before = list(os.getloadavg())
    rows = [run_set(s, args.data_dir, args.budget) for s in sets]
    out = {"sets": rows, "mean_gain_over_cells": float(np.mean([r["gain_over_cells"] for r in rows])),
           "threads": args.threads, "load_average_before": load_before, "load_average_after": list(os.getloadavg())}  # fmt: skip
    if args.json:
        print(json.dumps(out))
        return
    table = Table(title="auto's blend forms: test RMSE (out-of-fold validation RMSE)")
    for col in ("set", "ratings", "cells", "constant", "single member", "chosen", "baseline"):
        table.add_column(col)
    for r in rows:
        cell = lambda f: f"{r['rmse_' + f]:.4f} ({r['oof_' + f]:.4f})"  # noqa: B023
        table.add_row(r["set"], f"{r['n_train']:,}", cell("cells"), cell("constant"), cell("single"), r["form"],
                      f"{r['rmse_baseline']:.4f}")  # fmt: skip
    Console(width=120).print(table)
    Console().print(f"mean test gain of the chosen form over the cells: {out['mean_gain_over_cells']:+.4f}; "
                    f"load average {load_before[0]:.1f} before, {out['load_average_after'][0]:.1f} after")  # fmt: skip


if __name__ == "__main__":
    main()
