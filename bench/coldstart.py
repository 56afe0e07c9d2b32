"""Cold start on MovieLens 100k: new users (fold-in vs fallback vs retrain), new items (hybrid), latency.

    python bench/coldstart.py --data-dir ../shared/data/ml-100k [--json]

New users: a share of the users (those with >= 40 ratings are eligible) is held out entirely. Each
held-out user's ratings are shuffled; the first half is the pool their answers come from, the
second half is scored. For k = 0, 1, 3, 5, 10, 20 answers (the first k of the pool) we report the
RMSE on the scored half of: fold-in (Gauss-Newton, and the logit-space ridge it starts from), the
average-taste fallback (ignores the answers), a full retrain on the training users plus every
held-out user's k answers (k = 0: the base model, whose unknown users get the zero fallback),
and fold-in from the first k answers the onboarding questionnaire obtains (it asks items in its
own order; a held-out user answers when the item is in their pool, else skips), beside the same
with most-popular-first questions. Every method is scored on the same ratings. Random answers
from the user's own ratings are an optimistic reference (no real questionnaire can sample them):
the realistic comparison for the questionnaire is most-popular-first. The hybrid model trained on
the same users scores held-out users from their metadata alone (a 0-answer point).

New items: 10% of the items are held out entirely (all their ratings); the remaining ratings are
split 90/10 into train and a warm test. RMSE on the held-out items' ratings of the hybrid model
(scored from genres and year), of the item-mean-by-genre baseline (mean training rating of each
genre, averaged over the item's genres) and of dot-bias (unknown item: zero fallback), plus each
model's warm RMSE.

Latency: one fold-in per held-out user from 10 answers (raw ids in, representation out), timed
one at a time after a warm-up; p50 and p95 in milliseconds. Training uses ``--threads`` torch
threads (default 1: on a shared 2-core machine a second intra-op thread makes small ops slower).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

import collabkit as ck
from collabkit.models.hybrid import Hybrid, score_new_items
from collabkit.models.linear import map_fold_in
from collabkit.recommend.foldin import fold_in_frame, pad_answers
from collabkit.recommend.onboard import Questionnaire

ANSWERS = (0, 1, 3, 5, 10, 20)
MIN_RATINGS = 2 * max(ANSWERS)  # eligible held-out users: a full pool and as many scored ratings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data-dir", type=Path, default=None, help="folder holding ml-100k (or the ml-100k folder)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--factors", type=int, default=50)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--holdout-users", type=float, default=0.2, help="share of all users held out")
    p.add_argument("--holdout-items", type=float, default=0.1, help="share of all items held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    log = Console(stderr=True)
    data = ck.load_movielens("100k", data_dir=args.data_dir, progress=False)
    t0 = time.perf_counter()
    users = new_users(data, args, log)
    items = new_items(data, args, log)
    result = {
        "dataset": data.name,
        "n_factors": args.factors,
        "new_users": users,
        "new_items": items,
        "acceptance": acceptance(users, items),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        report(result)


# --- new users -----------------------------------------------------------------------------------
def new_users(data: ck.Ratings, args: argparse.Namespace, log: Console) -> dict:
    """The curve (RMSE vs number of answers) for every method, on held-out users."""
    rng = np.random.default_rng(args.seed)
    f = data.frame
    counts = f["user"].value_counts()
    eligible = np.sort(counts.index[counts >= MIN_RATINGS].to_numpy())
    held = np.sort(
        rng.choice(eligible, size=round(args.holdout_users * len(counts)), replace=False)
    )
    train = data.subset(~f["user"].isin(held).to_numpy(), "train")
    rows = (
        f[f["user"].isin(held)]
        .assign(key=lambda d: rng.random(len(d)))
        .sort_values(["user", "key"], kind="stable")
    )
    rows["pos"] = rows.groupby("user").cumcount()
    rows["half"] = rows["pos"] < rows.groupby("user")["item"].transform("size") // 2
    known = rows["item"].isin(
        train.frame["item"]
    )  # items only held-out users rated cannot be placed
    pool, scored = rows[rows["half"] & known], rows[~rows["half"] & known]
    pool = pool.assign(pos=pool.groupby("user").cumcount())
    log.print(
        f"new users: {len(held)} held out ({len(scored)} scored ratings); training the base model"
    )
    base = fit(
        ck.DotProductBias.from_data(train, n_factors=args.factors, seed=args.seed), train, args
    )
    prior = base.user_prior(train)
    scored_users, sI, sR = pad_answers(base, scored)
    curve = {k: {"answers": k} for k in ANSWERS}
    fallback = rmse_of(base, prior.mean.expand(len(scored_users), -1), sI, sR)
    order = questionnaire_answers(base, train, prior, pool, scored_users, log)
    popularity = train.frame["item"].value_counts()
    popular = pool.assign(n=pool["item"].map(popularity)).sort_values(
        ["user", "n", "item"], ascending=[True, False, True]
    )
    popular = popular.assign(pos=popular.groupby("user").cumcount())
    for k in ANSWERS:
        random_k = pool[pool["pos"] < k]
        _, I, R = pad_answers(base, random_k, scored_users)
        row = curve[k]
        row["fold_in"] = rmse_of(base, base.fold_in(I, R, prior), sI, sR)
        row["logit_ridge"] = rmse_of(base, map_fold_in(base, I, R, prior, method="logit-ridge"), sI, sR)
        row["fallback"] = fallback
        _, qI, qR = pad_answers(base, order[order["pos"] < k], scored_users)
        row["questionnaire"] = rmse_of(base, base.fold_in(qI, qR, prior), sI, sR)
        _, pI, pR = pad_answers(base, popular[popular["pos"] < k], scored_users)
        row["popular"] = rmse_of(base, base.fold_in(pI, pR, prior), sI, sR)
        if k == 0:
            retrained = base
        else:
            log.print(f"  full retrain with {k} answers per held-out user")
            both = train.with_frame(pd.concat([train.frame, random_k[train.frame.columns]]))
            retrained = fit(
                ck.DotProductBias.from_data(both, n_factors=args.factors, seed=args.seed),
                both,
                args,
            )
        row["retrain"] = ck.evaluate_ratings(
            retrained, train.with_frame(scored[["user", "item", "rating"]])
        )["rmse"]
    log.print("  hybrid model from user metadata")
    hybrid = fit(Hybrid.from_data(train, n_factors=args.factors, seed=args.seed), train, args)
    meta = data.users.reindex(scored_users)
    hybrid_rmse = rmse_of(hybrid, hybrid.new_user_repr(meta).double(), sI, sR)
    return {
        "n_users": len(held),
        "n_scored": len(scored),
        "n_unplaceable": int((~known).sum()),
        "noise_var": prior.noise_var,
        "average_user": int(prior.average_user),
        "questionnaire_answered": float(
            order.groupby("user").size().reindex(scored_users).fillna(0).mean()
        ),
        "hybrid_metadata_rmse": hybrid_rmse,
        "curve": [curve[k] for k in ANSWERS],
        "latency_ms": latency(base, pool[pool["pos"] < 10], prior),
    }


def questionnaire_answers(
    model, train, prior, pool, users, log: Console, max_asks: int = 150
) -> pd.DataFrame:
    """Simulated onboarding: ask in the questionnaire's order; answer iff the item is in the pool."""
    log.print("  simulating the onboarding questionnaire")
    out = []
    for user, own in pool.groupby("user"):
        q = Questionnaire(model, train, prior)
        mine = dict(zip(own["item"], own["rating"]))
        for _ in range(max_asks):
            item = q.next_item()
            if item is None or len(q.items) >= max(ANSWERS):
                break
            q.answer(item, mine.get(item))
        out.append(q.answers.assign(user=user, pos=np.arange(len(q.items))))
    return pd.concat(out, ignore_index=True)


def latency(model, answers: pd.DataFrame, prior) -> dict:
    """p50/p95 milliseconds of one user's fold-in from raw (item, rating) pairs."""
    groups = [g for _, g in answers.groupby("user")]
    for g in groups[:5]:
        fold_in_frame(model, g, prior)
    times = []
    for g in groups:
        t = time.perf_counter()
        fold_in_frame(model, g, prior)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return {
        "p50": float(np.median(ms)),
        "p95": float(np.percentile(ms, 95)),
        "n": len(ms),
        "answers": 10,
    }


# --- new items -----------------------------------------------------------------------------------
def new_items(data: ck.Ratings, args: argparse.Namespace, log: Console) -> dict:
    """RMSE on items unseen in training: hybrid vs the genre-mean baseline vs dot-bias's fallback."""
    rng = np.random.default_rng(args.seed + 1)
    f = data.frame
    items = np.sort(f["item"].unique())
    held = np.sort(rng.choice(items, size=round(args.holdout_items * len(items)), replace=False))
    cold_rows = f["item"].isin(held).to_numpy()
    rest = data.subset(~cold_rows)
    train, warm = ck.random_split(rest, 0.1, args.seed)
    cold = data.subset(cold_rows, "cold")
    log.print(
        f"new items: {len(held)} held out ({len(cold)} ratings); training dot-bias and hybrid"
    )
    y = cold.frame["rating"].to_numpy(np.float64)
    baseline = genre_mean(train, data.items.loc[held, "genres"])
    pred = cold.frame["item"].map(baseline).to_numpy(np.float64)
    dot = fit(
        ck.DotProductBias.from_data(train, n_factors=args.factors, seed=args.seed), train, args
    )
    hybrid = fit(Hybrid.from_data(train, n_factors=args.factors, seed=args.seed), train, args)
    scores = score_new_items(hybrid, data.items.loc[held], np.unique(cold.frame["user"]))
    hybrid_pred = scores.stack().reindex(
        pd.MultiIndex.from_arrays([cold.frame["user"], cold.frame["item"]])
    )
    return {
        "n_items": len(held),
        "n_ratings": len(cold),
        "features": {
            "users": [s["column"] for s in hybrid.config.user_features],
            "items": [s["column"] for s in hybrid.config.item_features],
        },
        "genre_mean": {"cold_rmse": _rmse(pred, y)},
        "dot_bias": {
            "cold_rmse": ck.evaluate_ratings(dot, cold)["rmse"],
            "warm_rmse": ck.evaluate_ratings(dot, warm)["rmse"],
        },
        "hybrid": {
            "cold_rmse": _rmse(hybrid_pred.to_numpy(np.float64), y),
            "warm_rmse": ck.evaluate_ratings(hybrid, warm)["rmse"],
        },
    }


def genre_mean(train: ck.Ratings, genres: pd.Series) -> pd.Series:
    """Per item: the mean over its genres of each genre's mean training rating (global mean if none)."""
    g = train.frame[["item", "rating"]].merge(
        train.items[["genres"]], left_on="item", right_index=True
    )
    per_genre = (
        g.assign(genre=g["genres"].str.split("|"))
        .explode("genre")
        .groupby("genre")["rating"]
        .mean()
    )
    per_item = genres.str.split("|").explode().map(per_genre).groupby(level=0).mean()
    return per_item.reindex(genres.index).fillna(float(train.frame["rating"].mean()))


# --- helpers ---------------------------------------------------------------------------------------
def fit(model: ck.CollabModel, train: ck.Ratings, args: argparse.Namespace) -> ck.CollabModel:
    model.fit(train, epochs=args.epochs, lr_max=args.lr, wd=args.wd, seed=args.seed)
    return model


@torch.no_grad()
def rmse_of(
    model: ck.CollabModel, reprs: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
) -> float:
    """RMSE of users with representations (U, D) on their padded (U, m) scored items."""
    A, c = model.user_linear(items)
    pred, _ = model.link((A @ reprs.double().unsqueeze(-1)).squeeze(-1) + c)
    keep = items >= 0
    return _rmse(pred[keep].numpy(), ratings[keep].numpy())


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - y) ** 2)))


def acceptance(users: dict, items: dict) -> dict:
    at10 = next(r for r in users["curve"] if r["answers"] == 10)
    return {
        "fold_in_within_0.02_of_retrain_at_10": at10["fold_in"] <= at10["retrain"] + 0.02,
        "fold_in_beats_fallback_at_10": at10["fold_in"] < at10["fallback"] - 0.02,
        "hybrid_beats_genre_mean": items["hybrid"]["cold_rmse"] < items["genre_mean"]["cold_rmse"],
        "fold_in_p50_under_5ms": users["latency_ms"]["p50"] < 5.0,
    }


def report(r: dict) -> None:
    out = Console()
    u, it = r["new_users"], r["new_items"]
    t = Table(
        title=f"New users: RMSE on held-out users' other ratings vs number of answers ({u['n_users']} users, {u['n_scored']} ratings)"
    )
    cols = [
        ("answers", "answers"),
        ("fold-in", "fold_in"),
        ("logit ridge", "logit_ridge"),
        ("fallback", "fallback"),
        ("retrain", "retrain"),
        ("onboard", "questionnaire"),
        ("popular", "popular"),
    ]
    for name, _ in cols:
        t.add_column(name, justify="right")
    for row in u["curve"]:
        t.add_row(*(str(row[k]) if k == "answers" else f"{row[k]:.4f}" for _, k in cols))
    out.print(t)
    out.print(
        "fold-in: Gauss-Newton from k random answers of the user's own; logit ridge: its closed-form start; "
        "fallback: the average-taste user; retrain: full retrain with those answers (k = 0: the zero fallback); "
        "onboard / popular: fold-in from the first k answers to the questionnaire / to most-popular-first questions"
    )
    out.print(
        f"hybrid from user metadata alone (0 answers): {u['hybrid_metadata_rmse']:.4f}; average-taste user: "
        f"{u['average_user']}; prior noise_var (calibrated on training users): {u['noise_var']:.3f}; questionnaire "
        f"answers per user (of {max(ANSWERS)}): {u['questionnaire_answered']:.1f}; {u['n_unplaceable']} held-out ratings "
        "of items no training user rated were not scored"
    )
    t = Table(
        title=f"New items: RMSE on {it['n_items']} items unseen in training ({it['n_ratings']} ratings)"
    )
    for name in ("model", "unseen items", "warm test"):
        t.add_column(name, justify="right")
    t.add_row("genre mean baseline", f"{it['genre_mean']['cold_rmse']:.4f}", "")
    t.add_row(
        "dot-bias (zero fallback)",
        f"{it['dot_bias']['cold_rmse']:.4f}",
        f"{it['dot_bias']['warm_rmse']:.4f}",
    )
    t.add_row(
        "hybrid (" + ", ".join(it["features"]["users"] + it["features"]["items"]) + ")",
        f"{it['hybrid']['cold_rmse']:.4f}",
        f"{it['hybrid']['warm_rmse']:.4f}",
    )
    out.print(t)
    lat = u["latency_ms"]
    out.print(
        f"fold-in latency ({lat['answers']} answers, {lat['n']} users, {r['n_factors']} factors): p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms"
    )
    at10 = next(row for row in u["curve"] if row["answers"] == 10)
    ok = all(r["acceptance"].values())
    out.print(
        f"coldstart: fold-in@10 {at10['fold_in']:.4f} vs retrain {at10['retrain']:.4f} vs fallback {at10['fallback']:.4f}; "
        f"unseen items hybrid {it['hybrid']['cold_rmse']:.4f} vs genre-mean {it['genre_mean']['cold_rmse']:.4f}; "
        f"fold-in p50 {lat['p50']:.2f} ms; acceptance {'PASS' if ok else 'FAIL: ' + ', '.join(k for k, v in r['acceptance'].items() if not v)} "
        f"({r['seconds']:.0f} s)"
    )


if __name__ == "__main__":
    main()
