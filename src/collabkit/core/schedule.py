"""The one-cycle schedule (Smith 2018, as in fastai): learning rate up then down, momentum inverse."""

from __future__ import annotations

import math


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def one_cycle(
    pct: float,
    lr_max: float,
    pct_start: float = 0.25,
    div: float = 25.0,
    div_final: float = 1e5,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
) -> tuple[float, float]:
    """(lr, beta1) at training progress ``pct`` in [0, 1].

    Warm-up: lr cosine from lr_max/div to lr_max while beta1 falls from moms[0] to moms[1];
    then lr anneals to lr_max/div_final while beta1 climbs back to moms[2].
    """
    if pct < pct_start:
        p = pct / pct_start
        return _cos(lr_max / div, lr_max, p), _cos(moms[0], moms[1], p)
    p = (pct - pct_start) / (1 - pct_start)
    return _cos(lr_max, lr_max / div_final, p), _cos(moms[1], moms[2], p)
