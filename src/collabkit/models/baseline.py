"""The baseline predictor as a model of its own: b_ui = mu + b_u + b_i (Koren 2008).

    b_i = sum_{u rated i} (r_ui - mu - b_u) / (reg_item + n_i)
    b_u = sum_{i rated by u} (r_ui - mu - b_i) / (reg_user + n_u)

alternated ``sweeps`` times from b_u = 0: the least-squares offsets under the two shrinkages
(one sweep is Koren's one-pass estimate, which leaves an item rated by one harsh user with that
user's harshness as its own offset).

Every rating model already keeps it (BASELINE_REG, BASELINE_SWEEPS) as the fallback for unknown
ids (``models.base``); as a kind its shrinkage and sweeps are a tunable recipe. On very sparse
data (most items rated once or twice) it is hard to beat, and ``auto`` blends it with the factor
models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from collabkit.core.loop import History
from collabkit.data.interactions import Ratings
from collabkit.models.base import (
    BASELINE_REG,
    BASELINE_SWEEPS,
    BIASES,
    RATINGS,
    CollabModel,
    Scorer,
    Sizes,
)
from collabkit.models.config import ModelConfig


@dataclass
class BaselineConfig(ModelConfig):
    n_factors: int = field(default=0, metadata={"min": 0, "max": 0})  # no factors
    # shrinkage of the item and user offsets towards 0
    reg_item: float = field(default=BASELINE_REG[0], metadata={"min": 0})
    reg_user: float = field(default=BASELINE_REG[1], metadata={"min": 0})
    # alternating sweeps (items, then users); 1 is Koren's one-pass estimate
    sweeps: int = field(default=BASELINE_SWEEPS, metadata={"min": 1})
    # predictions clipped here; from_data sets the scale
    clip: tuple[float, float] | None = field(default=None, metadata={"increasing": True})


class BaselinePredictor(CollabModel):
    """score = mu + b_u + b_i, shrunk and clipped to the scale (module docstring)."""

    kind = "baseline"
    Config = BaselineConfig
    capabilities = frozenset({RATINGS, BIASES})
    wants_y_range = False
    bias_columns = (1, 1)  # the representations are the offsets alone

    def __init__(self, config: BaselineConfig, users, items) -> None:
        super().__init__(config, users, items)
        # mu kept as a buffer too: an ensemble's members are saved without their own meta
        self.register_buffer("global_mean", torch.zeros(()))

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """Encoding the ratings (~0.3 units a rating) and ~0.06 a sweep (measured on Epinions:
        0.016 s a sweep of 730 k ratings, one thread), for the fallback every rating model fits
        (BASELINE_SWEEPS) and for its own; the encoded ids and the sweeps' float64 chunks (~50 bytes
        a rating), two offsets a row."""
        sweeps = BASELINE_SWEEPS + cls.option(config, "sweeps")
        return sizes.n * (0.3 + 0.06 * sweeps), sizes.n * 50.0 + (sizes.users + sizes.items) * 8.0

    def _fit(self, train: Ratings, valid: Ratings | None, console: object, progress: bool) -> History:
        self.set_baseline(train, (self.config.reg_item, self.config.reg_user), self.config.sweeps)
        self.global_mean.fill_(self.meta["global_mean"])
        return History()

    def user_repr(self, u: Tensor) -> Tensor:
        return self.baseline_user[u].unsqueeze(1)  # (B, 1): b_u

    def item_repr(self, i: Tensor) -> Tensor:
        return self.baseline_item[i].unsqueeze(1)  # (B, 1): b_i

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        return self._clip(self.global_mean + ur[..., 0] + ir[..., 0])

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """(U, n_items) by broadcasting: mu + b_u[:, None] + b_i[None, :]."""
        b = self.baseline_item[self.catalogue(items)]
        return Scorer(lambda ur: self._clip(self.global_mean + ur + b.unsqueeze(0)))

    def _clip(self, x: Tensor) -> Tensor:
        c = self.config.clip
        return x if c is None else x.clamp(*c)
