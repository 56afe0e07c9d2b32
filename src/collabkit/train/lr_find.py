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
from collabkit.models.base import CollabModel


@dataclass
class LRFinderResult:
    lrs: np.ndarray
    losses: np.ndarray  # exponentially smoothed training loss at each lr
    suggestion: float  # the 'valley': middle of the longest steep descent (fastai's default rule)
    steepest: float  # lr where the smoothed loss falls fastest

    def plot(self, path: str | Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"suggestion {self.suggestion:.2e}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
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
    return LRFinderResult(lrs_a, losses_a, _valley(lrs_a, losses_a), _steepest(lrs_a, losses_a))


def _steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    grads = np.gradient(losses, np.log(lrs))
    return float(lrs[int(np.argmin(grads))])


def _valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """Middle of the longest run of decreasing loss (fastai's 'valley' rule), in O(n^2) on ~100 points."""
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
