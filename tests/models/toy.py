"""A model kind defined only in the tests, declaring every capability: the contract's proof that a
new kind needs no edit in ``src/`` (``test_toy_kind.py`` runs the whole conformance suite on it).

    score(u, i) = sigmoid_range(p_u . q_i + b_u + b_i, *y_range)
    P(r = l_k | u, i) = softmax_k( -(l_k - score)^2 / (2 spread^2) )

One table a side holds [factors, bias]; training is the shared one-cycle engine (an SGDConfig).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.data.interactions import Ratings
from collabkit.models.base import (
    BIASES,
    FACTORS,
    FOLD_IN,
    ITEM_FOLD_IN,
    NEIGHBOURS,
    PROBA,
    RATINGS,
    UPDATE,
    CollabModel,
    SGDConfig,
    sigmoid_range,
)


@dataclass
class ToyConfig(SGDConfig):
    n_factors: int = 4
    y_range: tuple[float, float] | None = (0.0, 5.5)
    levels: tuple[float, ...] = ()  # the rating levels, from the data
    spread: float = 0.8  # the rating distribution's width around the score


class Toy(CollabModel):
    """A biased factor model with a Gaussian rating distribution (the tests' own kind)."""

    kind = "toy"
    Config = ToyConfig
    capabilities = frozenset({FOLD_IN, ITEM_FOLD_IN, UPDATE, FACTORS, RATINGS, PROBA, BIASES, NEIGHBOURS})
    bias_columns = (1, 1)
    user_item_tables: ClassVar[dict[str, str]] = {"user_table.weight": "user", "item_table.weight": "item"}

    def __init__(self, config: ToyConfig, users, items) -> None:
        super().__init__(config, users, items)
        self.user_table = nn.Embedding(len(users), config.n_factors + 1)
        self.item_table = nn.Embedding(len(items), config.n_factors + 1)
        for table in (self.user_table, self.item_table):
            nn.init.normal_(table.weight, 0.0, 0.01)

    @classmethod
    def from_data(cls, ratings: Ratings, **config: Any) -> CollabModel:
        levels = tuple(float(v) for v in np.unique(ratings.frame["rating"]))
        return super().from_data(ratings, **{"levels": levels, **config})

    def user_repr(self, u: Tensor) -> Tensor:
        return self.user_table(u)

    def item_repr(self, i: Tensor) -> Tensor:
        return self.item_table(i)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        z = (ur[..., :-1] * ir[..., :-1]).sum(-1) + ur[..., -1] + ir[..., -1]
        return sigmoid_range(z, *self.config.y_range)

    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]:
        ir = self.item_reprs(items)  # z = [q_i, 1] . [p_u, b_u] + b_i
        return torch.cat([ir[..., :-1], torch.ones_like(ir[..., -1:])], -1), ir[..., -1]

    def item_linear(self, users: Tensor) -> tuple[Tensor, Tensor]:
        ur = self.reprs_of("user", users)  # z = [p_u, 1] . [q_i, b_i] + b_u
        return torch.cat([ur[..., :-1], torch.ones_like(ur[..., -1:])], -1), ur[..., -1]

    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        table = self.user_table if side == "user" else self.item_table
        table.weight[index] = reprs.to(table.weight.dtype)

    def item_similarity(self, a: Tensor, b: Tensor) -> Tensor:
        f = nn.functional.normalize(self.item_table.weight[:, :-1].detach(), dim=-1)  # cosine of q_a, q_b
        return (f[a] * f[b]).sum(-1)

    def proba_repr(self, ur: Tensor, ir: Tensor) -> Tensor:
        levels = torch.tensor(self.config.levels, dtype=torch.float32)
        score = self.head(ur.float(), ir.float()).unsqueeze(-1)
        return torch.softmax(-((levels - score) ** 2) / (2 * self.config.spread**2), -1)
