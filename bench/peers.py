"""Run a peer library on a given train/test CSV (user,item,rating) and print one JSON line.

Runs inside the peers venv (../shared/tools/peers-venv.sh), never in collabkit's own:
    .peers-venv/bin/python bench/peers.py --train tr.csv --test te.csv --which fastai|baseline|svd|svdpp|knn \
        [--bs 64 --lr 5e-3 --threads 1 --repeat 2]

fastai's timed work is ``fit_one_cycle``: 5 epochs with a pass over the valid set after each
(its default), on ``--threads`` torch threads; bench/speed.py times collabkit doing the same.
``--repeat N`` fits N times in this process (a fresh model each time): the first fit is the
fresh-process figure, the later ones warm (``fit_seconds_each``); metrics are the first fit's.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import pandas as pd


def fastai(
    train: pd.DataFrame, test: pd.DataFrame, bs: int = 64, lr: float = 5e-3
) -> tuple[np.ndarray, np.ndarray, float]:
    """The chapter's recipe: collab_learner(n_factors=50, y_range=(0, 5.5)), fit_one_cycle(5, lr, wd=0.1) at ``bs``."""
    import torch
    from fastai.collab import CollabDataLoaders, collab_learner

    torch.manual_seed(42)
    df = pd.concat([train.assign(is_valid=False), test.assign(is_valid=True)], ignore_index=True)
    from fastai.data.transforms import ColSplitter

    dls = CollabDataLoaders.from_df(df, user_name="user", item_name="item", rating_name="rating", bs=bs,
                                    splitter=ColSplitter("is_valid"))
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(5, lr, wd=0.1)
    fit = time.perf_counter() - t0
    # dls.valid holds exactly the test rows, but not in the file's order: score against its targets
    preds, targets = learn.get_preds(dl=dls.valid)
    return preds.reshape(-1).numpy(), targets.reshape(-1).numpy(), fit


def surprise(train: pd.DataFrame, test: pd.DataFrame, which: str) -> tuple[np.ndarray, np.ndarray, float]:
    from surprise import SVD, BaselineOnly, Dataset, KNNBaseline, Reader, SVDpp

    scale = (float(train.rating.min()), float(train.rating.max()))
    data = Dataset.load_from_df(train[["user", "item", "rating"]], Reader(rating_scale=scale))
    if which == "baseline":
        algo = BaselineOnly(verbose=False)
    elif which == "knn":  # item-based on baseline residuals, as collabkit's knn kind
        algo = KNNBaseline(k=40, sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False)
    else:
        algo = (SVD if which == "svd" else SVDpp)(random_state=42)
    t0 = time.perf_counter()
    algo.fit(data.build_full_trainset())
    fit = time.perf_counter() - t0
    pred = np.array([algo.predict(u, i).est for u, i in zip(test.user, test.item)])
    return pred, test.rating.to_numpy(), fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--which", choices=["fastai", "baseline", "svd", "svdpp", "knn"], required=True)
    ap.add_argument("--bs", type=int, default=64, help="fastai's batch size")
    ap.add_argument("--lr", type=float, default=5e-3, help="fastai's peak learning rate")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeat", type=int, default=1, help="fits in this process (the first fresh, then warm)")
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    train, test = pd.read_csv(a.train), pd.read_csv(a.test)
    fits = []
    for n in range(a.repeat):
        if a.which == "fastai":
            got = fastai(train, test, a.bs, a.lr)
        else:
            got = surprise(train, test, a.which)
        fits.append(got[2])
        if n == 0:
            pred, truth, fit = got
    err = pred - truth
    print(json.dumps({
        "rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "fit_seconds": fit,
        "ratings_per_second": len(train) * (5 if a.which == "fastai" else 20) / fit,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "fit_seconds_each": fits,
    }))


if __name__ == "__main__":
    main()
