"""LR finder: train briefly with an exponentially growing learning rate and watch the loss."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from collabkit.core.loop import encode, lr_scale, train_step
from collabkit.core.optim import RowAdamW
from collabkit.data.interactions import Ratings
from collabkit.files import atomic_path
from collabkit.models.base import CollabModel, registry


@dataclass
class LRFinderResult:
    lrs: np.ndarray
    losses: np.ndarray  # exponentially smoothed training loss at each lr
    suggestion: float  # the valley, or with validation the candidate that validated best
    steepest: float  # lr where the smoothed loss falls fastest
    valley: float = float("nan")  # middle of the longest steep descent (fastai's default rule)
    validated: dict[float, float] | None = None  # candidate lr -> validation RMSE after a full fit

    def plot(self, path: str | Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        if self.validated and self.valley != self.suggestion:
            ax.axvline(self.valley, color="tab:gray", ls=":", label=f"valley {self.valley:.2e}")
        ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"suggestion {self.suggestion:.2e}")
        ax.legend()
        fig.tight_layout()
        try:
            with atomic_path(path) as tmp:  # whole or not at all; an OS error names ``path``
                fig.savefig(tmp, dpi=100, format="png")
        finally:
            plt.close(fig)
        return Path(path)


def lr_find(
    model: CollabModel,
    train: Ratings,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    steps: int = 100,
    wd: float = 0.1,
    bs: int | None = None,
    seed: int = 42,
) -> LRFinderResult:
    """Sweep lr from start_lr to end_lr over ``steps`` batches on a copy; ``model`` is untouched.

    Rates are reported as ``fit_one_cycle`` takes them: at batch size ``bs`` both scale them by
    ``lr_scale(bs)``, so the suggestion can be passed straight to ``fit_one_cycle(bs=bs)``.
    """
    if type(model)._fit is not CollabModel._fit:
        swept = sorted(k for k, cls in registry().items() if cls._fit is CollabModel._fit)
        raise ValueError(f"lr-find: a {model.kind!r} model is not trained by the one-cycle engine whose learning rate "
                         f"it sweeps (it has its own fit); kinds that are: {', '.join(swept)}")  # fmt: skip
    bs = bs or model.default_bs
    trial = copy.deepcopy(model)
    trial.train()
    data = encode(trial, train)
    opt = RowAdamW(list(trial.parameters()))
    gen = torch.Generator().manual_seed(seed)
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    for k in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (k / max(1, steps - 1))
        idx = torch.randint(len(data), (bs,), generator=gen)
        u, i, r = data.users[idx], data.items[idx], data.ratings[idx]
        loss = train_step(trial, opt, u, i, r, lr * lr_scale(bs), 0.9, wd)
        avg = 0.98 * avg + 0.02 * float(loss)
        smooth = avg / (1 - 0.98 ** (k + 1))
        lrs.append(lr)
        losses.append(smooth)
        best = min(best, smooth)
        if k > 10 and (smooth > 4 * best or not math.isfinite(smooth)):
            break
    lrs_a, losses_a = np.array(lrs), np.array(losses)
    valley = _valley(lrs_a, losses_a)
    return LRFinderResult(lrs_a, losses_a, valley, _steepest(lrs_a, losses_a), valley)


#: fractions of the valley tried by ``validate_lr``: the sweep measures how fast the training loss
#: falls, not how well the model generalises over a whole schedule (ML-100k, chapter recipe: the
#: valley, 2e-2, trains to RMSE 1.04; a quarter of it to 0.92)
FRACTIONS = (1.0, 0.5, 0.25, 0.125)


def validate_lr(
    model: CollabModel, train: Ratings, result: LRFinderResult, valid_pct: float = 0.1, seed: int = 42
) -> LRFinderResult:
    """Fit copies of ``model`` with its own recipe at fractions of the valley on ``train`` less a
    held-out ``valid_pct`` (carved from ``train``, never from a test set); the suggestion becomes the
    rate with the lowest validation RMSE."""
    from collabkit.data.split import random_split

    fit_part, valid = random_split(train, valid_pct, seed)
    scores = {}
    for fraction in FRACTIONS:
        lr = result.valley * fraction
        trial = copy.deepcopy(model)
        trial.fit(fit_part, lr_max=lr)
        enc = encode(trial, valid, strict=False)
        err = trial.predict_idx(enc.users, enc.items).double() - enc.ratings.double()
        scores[lr] = float(err.pow(2).mean().sqrt())
    best = min(scores, key=scores.get)
    return LRFinderResult(result.lrs, result.losses, best, result.steepest, result.valley, scores)


def _steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    grads = np.gradient(losses, np.log(lrs))
    return float(lrs[int(np.argmin(grads))])


def _valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """Middle of the longest run of decreasing loss (fastai's 'valley' rule), in O(n^2) on ~100 points.

    Only the descent counts: from the last point before the minimum still within 10% of the
    plateau (the median loss before the minimum). On a flat start noise alone makes long
    'decreasing' runs, and the rule then suggested rates too small to train (ML-100k: 4e-4).
    """
    low_at = int(np.argmin(losses))
    if low_at > 1:
        plateau, low = float(np.median(losses[:low_at])), float(losses[low_at])
        high = np.flatnonzero(losses[:low_at] >= low + 0.9 * (plateau - low))
        first = int(high[-1]) if len(high) else 0
        lrs, losses = lrs[first:], losses[first:]
    n = len(losses)
    run = np.ones(n, dtype=int)
    prev = np.arange(n)
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[j] + 1 > run[i]:
                run[i], prev[i] = run[j] + 1, prev[j] if run[j] > 1 else j
    end = int(np.argmax(run))
    start = int(prev[end])
    sections = (end - start) / 3
    return float(lrs[start + int(sections) + int(sections / 2)])
