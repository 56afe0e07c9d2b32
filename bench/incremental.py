"""Learning from new ratings without a full retrain: update, fold-in only and a full refit, compared.

    python bench/incremental.py --data-dir ../shared/data [--dataset ml-100k,epinions] [--json]
    python bench/incremental.py --data-dir ../shared/data --tune      # how the defaults were chosen

**Update vs refit.** The ratings are put in time order (ML-100k by timestamp, ties in file order;
Epinions in file order, its timestamps were not kept) and a model is trained on the first 80%
(the base). Then 5%, 10% and 20% more ratings (shares of the base: the next 4%, 8%, 16% of the
data) arrive in daily-sized chunks: ML-100k's calendar days; for Epinions, chunks of n / 213
ratings (ML-100k spans 213 days). Three ways to learn from them:

- ``update``: ``model.update(chunk, old=everything before it)`` once per chunk, each from the
  previous update's model (its default recipe: fold-in of new users and items, then 3 epochs on
  the chunk plus as many replayed old ratings);
- ``fold-in``: the base model with the new users and items placed by fold-in from all the added
  ratings and no training (``update`` with ``epochs=0``, once);
- ``refit``: the same recipe trained from scratch on the base plus everything added.

Each is scored on the **following ratings** (the next 4% of the data after what was added) and on
the subsets of them by users and of items that are new since the base (first seen in the added
ratings); and on a random tenth of the added ratings **set aside** (none of the three sees them:
how well each learned the added period's own users and items). Time: one refit, and an update per
chunk (median, and the sum over the chunks), in this process after a warm-up fit. Peak memory:
each method run alone in a fresh process (the base model loaded from disk, a small fit first),
as the rise of its peak RSS during the call (VmHWM reset before it): within one process, memory
freed by earlier work is reused and hides allocations. Every model is trained with the same
recipe, batch size and threads.

**New items.** 10% of the items with at least 40 ratings are held out entirely; each held-out
item's ratings are shuffled, the first 20 are the pool its k ratings come from and the rest are
scored. For k = 1, 5, 10, 20 the RMSE on the scored ratings of: item fold-in from the first k
ratings (``model.with_items``; the prior calibrated on the training ratings), the baseline predictor
(the model's fallback for an unknown item), and a full refit on the training ratings plus every
held-out item's k ratings. The target compares item fold-in with the refit at k = 20.

``--tune`` runs the update-vs-refit protocol one step earlier (base = the first 60%, 10% added,
scored on the next 4%: never the benchmark's test ratings) for a grid of update recipes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.train.build import build_model

SHARES = (0.05, 0.10, 0.20)  # ratings added, as shares of the base
TEST_SHARE = 0.04  # the following ratings scored, as a share of the data
WITHIN = 0.1  # share of the added ratings set aside and scored (the added period's own ratings)
ML_DAYS = 213  # days ML-100k's ratings span: Epinions is cut into as many chunks
ANSWERS = (1, 5, 10, 20)  # ratings a held-out item is folded in from
MIN_ITEM_RATINGS = 40
SPEC = "dot-bias(n_factors=50)"  # the chapter's recipe: 5 epochs, lr 5e-3, wd 0.1


# --- data ------------------------------------------------------------------------------------------
def load(name: str, root: Path) -> tuple[ck.Ratings, np.ndarray]:
    """(ratings in time order, the chunk each row belongs to)."""
    if name == "ml-100k":
        data = ck.load_movielens("100k", data_dir=root, progress=False)
        frame = data.frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
        return data.with_frame(frame), (frame["timestamp"] // 86400).to_numpy()
    data = ck.read_ratings(root / "epinions" / "ratings.tsv", duplicates="last", name="epinions")
    n = len(data.frame)
    return data, np.arange(n) // max(1, n // ML_DAYS)


def part(data: ck.Ratings, lo: int, hi: int) -> ck.Ratings:
    return data.with_frame(data.frame.iloc[lo:hi])


def measured(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Any, float, float]:
    """(fn(*args, **kw), seconds, rise of the process's peak RSS in MB while it ran)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _kb("VmRSS")
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t, (_kb("VmHWM") - before) / 1024


def _kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def scores(model: ck.CollabModel, test: ck.Ratings, new_users: set, new_items: set) -> dict[str, float]:
    """RMSE on every following rating, and on those by new users and of new items."""
    f = test.frame
    err = model.predict(f["user"], f["item"]) - f["rating"].to_numpy()
    rmse = lambda keep: float(np.sqrt(np.mean(err[keep] ** 2))) if keep.any() else float("nan")
    return {
        "rmse": rmse(np.ones(len(f), bool)),
        "rmse_new_users": rmse(f["user"].isin(new_users).to_numpy()),
        "rmse_new_items": rmse(f["item"].isin(new_items).to_numpy()),
    }


# --- update vs refit ---------------------------------------------------------------------------------
def chain(model: ck.CollabModel, data: ck.Ratings, chunks: np.ndarray, a: int, b: int,
          recipe: dict[str, Any], seed: int) -> tuple[ck.CollabModel, list[float], list[float]]:  # fmt: skip
    """``model`` updated chunk by chunk with rows a..b; (the last model, seconds, peak MB) per chunk."""
    times, peaks = [], []
    for day in pd.unique(chunks[a:b]):
        at = np.flatnonzero(chunks[a:b] == day) + a
        chunk, before = part(data, at[0], at[-1] + 1), part(data, 0, at[0])
        model, t, mb = measured(model.update, chunk, before, seed=seed, **recipe)
        times.append(t)
        peaks.append(mb)
    return model, times, peaks


def held_out(data: ck.Ratings, chunks: np.ndarray, a: int, b: int, seed: int) -> tuple[ck.Ratings, np.ndarray, int, ck.Ratings]:
    """A random WITHIN share of rows a..b set aside: (the data without them, its chunks, where the
    added rows now end, the rows set aside)."""
    aside = np.zeros(len(data.frame), bool)
    aside[a:b] = np.random.default_rng(seed).random(b - a) < WITHIN
    return data.with_frame(data.frame[~aside]), chunks[~aside], b - int(aside.sum()), data.with_frame(data.frame[aside])


DATASETS = {"ml-100k": "ml-100k", "epinions": "epinions"}  # Ratings.name -> --dataset


def peak_alone(method: str, dataset: str, share: float, base: Path, spec: str, seed: int) -> float:
    """Peak RSS rise (MB) of ``method`` (update: the chain of chunks, its largest) run alone in a
    fresh process (``--peak``)."""
    cmd = [sys.executable, __file__, "--data-dir", str(ROOT[0]), "--dataset", DATASETS.get(dataset, dataset),
           "--model", spec, "--peak", f"{method},{share},{seed},{base}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def peak_child(arg: str, name: str, spec: str) -> float:
    """The ``--peak`` process: load the data and the base model, warm up, measure one method."""
    method, share, seed, base = arg.split(",", 3)
    data, chunks = load(name, ROOT[0])
    model = load_model(base)
    build_model(spec, part(data, 0, 2000), seed=0)  # the first fit of a process loads the compiled kernels
    n = len(data.frame)
    a = int(0.8 * n)
    kept, kept_chunks, b, _ = held_out(data, chunks, a, a + int(float(share) * a), int(seed))
    if method == "update":
        return max(chain(model, kept, kept_chunks, a, b, {}, int(seed))[2])
    if method == "fold_in":
        return measured(model.update, part(kept, a, b), part(kept, 0, a), epochs=0)[2]
    return measured(build_model, spec, part(kept, 0, b), seed=int(seed))[2]


ROOT: list[Path] = []  # --data-dir, for the --peak processes


def newcomers(data: ck.Ratings, a: int, b: int) -> tuple[set, set]:
    """(users, items) first seen in rows a..b."""
    base, added = data.frame.iloc[:a], data.frame.iloc[a:b]
    return set(added["user"]) - set(base["user"]), set(added["item"]) - set(base["item"])


def compare(data: ck.Ratings, chunks: np.ndarray, spec: str, base_share: float, shares: tuple[float, ...],
            recipe: dict[str, Any], log: Console, seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """One row per share: update, fold-in only and refit on the ratings that follow."""
    n = len(data.frame)
    a = int(base_share * n)
    base = part(data, 0, a)
    (model, _), t_base, _ = measured(build_model, spec, base, seed=seed)
    log.print(f"  base: {a} ratings, trained in {t_base:.2f} s")
    folder = save_model(model, Path(tempfile.mkdtemp(prefix="incremental-")) / "base")
    rows = []
    for share in shares:
        kept, kept_chunks, b, aside = held_out(data, chunks, a, a + int(share * a), seed)
        added, test = part(kept, a, b), part(kept, b, b + int(TEST_SHARE * n))
        new_users, new_items = newcomers(kept, a, b)
        updated, times, _ = chain(model, kept, kept_chunks, a, b, recipe, seed)
        folded, t_fold, _ = measured(model.update, added, base, epochs=0)
        (refit, _), t_refit, _ = measured(build_model, spec, part(kept, 0, b), seed=seed)
        peak = {m: peak_alone(m, data.name, share, folder, spec, seed) for m in ("update", "fold_in", "refit")}
        row = {"share": share, "added": b - a, "chunks": len(times), "test": len(test.frame), "aside": len(aside.frame),
               "new_users": len(new_users), "new_items": len(new_items), "refit_seconds": t_refit,
               "refit_peak_mb": peak["refit"], "update_seconds": statistics.median(times),
               "update_seconds_total": sum(times), "update_peak_mb": peak["update"], "fold_in_seconds": t_fold,
               "fold_in_peak_mb": peak["fold_in"]}  # fmt: skip
        for name, m in (("update", updated), ("fold_in", folded), ("refit", refit)):
            row.update({f"{name}_{k}": v for k, v in scores(m, test, new_users, new_items).items()})
            row.update({f"{name}_within_{k}": v for k, v in scores(m, aside, new_users, new_items).items()})
        row["gap"] = row["update_rmse"] - row["refit_rmse"]
        row["gap_within"] = row["update_within_rmse"] - row["refit_within_rmse"]
        row["time_ratio"] = row["update_seconds"] / row["refit_seconds"]
        log.print(f"  +{share:.0%}: update {row['update_rmse']:.4f} fold-in {row['fold_in_rmse']:.4f} "
                  f"refit {row['refit_rmse']:.4f} (set aside: {row['update_within_rmse']:.4f} {row['fold_in_within_rmse']:.4f} "
                  f"{row['refit_within_rmse']:.4f}); update {row['update_seconds']:.3f} s a chunk, refit {t_refit:.2f} s")  # fmt: skip
        rows.append(row)
    return rows


# --- new items ---------------------------------------------------------------------------------------
def new_items(data: ck.Ratings, spec: str, log: Console, share: float = 0.1, seed: int = 0) -> list[dict[str, Any]]:
    """Item fold-in from k ratings vs a refit that saw them, on the held-out items' other ratings."""
    f = data.frame
    rng = np.random.default_rng(seed)
    counts = f["item"].value_counts()
    eligible = counts.index[counts.to_numpy() >= MIN_ITEM_RATINGS].to_numpy()
    held = set(rng.choice(eligible, max(1, int(share * len(eligible))), replace=False).tolist())
    out = f["item"].isin(held).to_numpy()
    train = data.with_frame(f[~out])
    pool = f[out].sample(frac=1.0, random_state=seed)
    pool = pool.assign(k=pool.groupby("item").cumcount())
    scored = data.with_frame(pool[pool["k"] >= max(ANSWERS)])
    model = build_model(spec, train, seed=seed)[0]
    prior = model.item_prior(train)
    log.print(f"  new items: {len(held)} held out, {len(scored.frame)} of their ratings scored")
    rows = []
    for k in ANSWERS:
        given = data.with_frame(pool[pool["k"] < k])
        folded = model.with_items(given, 1, prior)
        refit = build_model(spec, data.with_frame(pd.concat([train.frame, given.frame])), seed=seed)[0]
        row = {"ratings": k}
        for name, m in (("fold_in", folded), ("baseline", model), ("refit", refit)):
            row[f"{name}_rmse"] = ck.evaluate_ratings(m, scored)["rmse"]
        row["gap"] = row["fold_in_rmse"] - row["refit_rmse"]
        log.print(f"  k={k}: fold-in {row['fold_in_rmse']:.4f} baseline {row['baseline_rmse']:.4f} refit {row['refit_rmse']:.4f}")
        rows.append(row)
    return rows


# --- tuning on a validation protocol -----------------------------------------------------------------
GRID = [{"epochs": e, "replay": r, "lr_max": lr} for e in (1, 3) for r in (1.0, 3.0) for lr in (2e-4, 5e-4, 1e-3, 2e-3)]


def tune(data: ck.Ratings, chunks: np.ndarray, spec: str, log: Console, seed: int = 0) -> list[dict[str, Any]]:
    """The update recipes of GRID on base = the first 60%, 10% added (a tenth of it set aside),
    scored on the set-aside ratings and the next 4%; beside fold-in only (``epochs=0``) and the
    refit."""
    n = len(data.frame)
    a = int(0.6 * n)
    data, chunks, b, aside = held_out(data, chunks, a, a + int(0.1 * a), seed)
    test = part(data, b, b + int(TEST_SHARE * n))
    new_users, new_items = newcomers(data, a, b)
    model, _ = build_model(spec, part(data, 0, a), seed=seed)
    refit, _ = build_model(spec, part(data, 0, b), seed=seed)

    def measure(m: ck.CollabModel) -> dict[str, float]:
        within = scores(m, aside, new_users, new_items)
        return {**scores(m, test, new_users, new_items), **{f"within_{k}": v for k, v in within.items()}}

    reference = measure(refit)
    rows = []
    for recipe in [{"epochs": 0}, *GRID]:
        updated, times, _ = chain(model, data, chunks, a, b, recipe, seed)
        row = {"epochs": recipe["epochs"], "replay": recipe.get("replay"), "lr_max": recipe.get("lr_max"),
               **measure(updated), "update_seconds": statistics.median(times)}  # fmt: skip
        row.update({f"refit_{k}": v for k, v in reference.items()}, gap=row["rmse"] - reference["rmse"],
                   gap_within=row["within_rmse"] - reference["within_rmse"])  # fmt: skip
        log.print(f"  {recipe}: {row['rmse']:.4f} (refit {reference['rmse']:.4f}), set aside {row['within_rmse']:.4f} "
                  f"(refit {reference['within_rmse']:.4f}; new users {row['within_rmse_new_users']:.4f}, new items {row['within_rmse_new_items']:.4f})")  # fmt: skip
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder holding ml-100k/ and epinions/")
    p.add_argument("--dataset", default="ml-100k,epinions")
    p.add_argument("--model", default=SPEC, help="the recipe every method trains (a spec)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the shared 2-core machine)")
    p.add_argument("--tune", action="store_true", help="compare update recipes on the validation protocol")
    p.add_argument("--parts", default="update,items", help="update (update vs refit) and/or items (new items)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--peak", help=argparse.SUPPRESS)  # method,share,seed,base-folder: one memory measurement
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ROOT.append(args.data_dir)
    if args.peak:
        print(peak_child(args.peak, args.dataset, args.model))
        return
    log = Console(stderr=True)
    result: dict[str, Any] = {"model": args.model, "threads": args.threads, "datasets": {}}
    for name in args.dataset.split(","):
        log.print(f"[bold]{name}[/bold]")
        data, chunks = load(name, args.data_dir)
        build_model(args.model, part(data, 0, 2000), seed=0)  # a warm-up fit: timings exclude loading the kernels
        if args.tune:
            result["datasets"][name] = {"tune": tune(data, chunks, args.model, log)}
            continue
        parts, entry = args.parts.split(","), {}
        if "update" in parts:
            entry["update_vs_refit"] = compare(data, chunks, args.model, 0.8, SHARES, {}, log)
        if "items" in parts:
            entry["new_items"] = new_items(data, args.model, log)
        result["datasets"][name] = entry
    if args.json:
        json.dump(result, sys.stdout, default=float)
        sys.stdout.write("\n")
        return
    show(result)


def show(result: dict[str, Any]) -> None:
    out = Console(width=None if sys.stdout.isatty() else 160)
    for name, entry in result["datasets"].items():
        if "tune" in entry:
            table = Table(title=f"{name}: update recipes, chained over daily chunks (base 60%, +10%; validation)")
            for col in ("epochs", "replay", "lr_max", "following", "gap", "set aside", "gap", "its new users", "its new items", "s a chunk"):
                table.add_column(col, justify="right")
            for r in entry["tune"]:
                table.add_row(str(r["epochs"]), f"{r['replay'] or '-'}", f"{r['lr_max'] or '-'}", f"{r['rmse']:.4f}",
                              f"{r['gap']:+.4f}", f"{r['within_rmse']:.4f}", f"{r['gap_within']:+.4f}",
                              f"{r['within_rmse_new_users']:.4f}", f"{r['within_rmse_new_items']:.4f}", f"{r['update_seconds']:.3f}")  # fmt: skip
            out.print(table)
            continue
        table = Table(title=f"{name}: {result['model']}, trained on the first 80%, ratings added in daily-sized chunks")
        for col in ("added", "chunks", "method", "RMSE", "new users", "new items", "seconds", "peak MB"):
            table.add_column(col, justify="right")
        for r in entry.get("update_vs_refit", []):
            for method, secs, peak in (("update", f"{r['update_seconds']:.3f} a chunk ({r['update_seconds_total']:.2f} in all)", r["update_peak_mb"]),
                                       ("fold-in", f"{r['fold_in_seconds']:.3f}", r["fold_in_peak_mb"]),
                                       ("refit", f"{r['refit_seconds']:.2f}", r["refit_peak_mb"])):  # fmt: skip
                key = method.replace("-", "_")
                table.add_row(f"+{r['share']:.0%} ({r['added']})", str(r["chunks"]), method, f"{r[key + '_rmse']:.4f}",
                              f"{r[key + '_rmse_new_users']:.4f}", f"{r[key + '_rmse_new_items']:.4f}", secs, f"{peak:.0f}")  # fmt: skip
        out.print(table)
        if "new_items" in entry:
            table = Table(title=f"{name}: new items, RMSE on their other ratings")
            for col in ("ratings", "item fold-in", "baseline", "refit", "gap"):
                table.add_column(col, justify="right")
            for r in entry["new_items"]:
                table.add_row(str(r["ratings"]), f"{r['fold_in_rmse']:.4f}", f"{r['baseline_rmse']:.4f}", f"{r['refit_rmse']:.4f}", f"{r['gap']:+.4f}")
            out.print(table)


if __name__ == "__main__":
    main()
