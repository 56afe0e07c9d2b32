"""Dot-product models of the fastai chapter: user . item, optionally plus biases and sigmoid_range."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from collabkit.core.loop import History
from collabkit.data.interactions import Ratings
from collabkit.models.base import (
    BIASES,
    FACTORS,
    FOLD_IN,
    ITEM_FOLD_IN,
    RATINGS,
    UPDATE,
    CollabModel,
    Scorer,
    Sizes,
    sigmoid_range,
)
from collabkit.models.config import ModelConfig, SGDConfig


def _table(n: int, dim: int) -> nn.Embedding:
    """A learnable lookup table, initialised N(0, 0.01) as in the chapter."""
    emb = nn.Embedding(n, dim)
    nn.init.normal_(emb.weight, 0.0, 0.01)
    return emb


def bias_linear(reprs: Tensor) -> tuple[Tensor, Tensor]:
    """The other side's [factors, bias] representations (..., F + 1) -> (A, c) with
    z = A . [factors, bias] + c: A = [factors, 1] (this side's bias enters with weight 1) and
    c = the other side's bias."""
    return torch.cat([reprs[..., :-1], torch.ones_like(reprs[..., -1:])], -1), reprs[..., -1]


class BiasLinear:
    """Fold-in for kinds whose link input is p_u . q_i + b_u + b_i (dot-bias, ordinal): linear in
    either side's [factors, bias] given the other side's."""

    @torch.no_grad()
    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """[factors, bias] user: z = [q_i, 1] . x + b_i."""
        return bias_linear(self.item_reprs(items))

    @torch.no_grad()
    def item_linear(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """[factors, bias] item: z = [p_u, 1] . y + b_u."""
        return bias_linear(self.reprs_of("user", users))


@torch.no_grad()
def write_rows(model: nn.Module, side: str, index: Tensor, reprs: Tensor) -> None:
    """Rows ``index`` of the ``side_factors`` table (and ``side_bias``, the last column, when the
    model has one) set to ``reprs``: the dot family's [factors(, bias)] layout."""
    tables = dict(model.named_children())
    factors, bias = tables[f"{side}_factors"], tables.get(f"{side}_bias")
    width = factors.weight.shape[1]
    factors.weight[index] = reprs[:, :width].to(factors.weight.dtype)
    if bias is not None:
        bias.weight[index] = reprs[:, width:].to(bias.weight.dtype)


class DotProduct(CollabModel):
    """score = u_f . i_f  (optionally squashed into y_range)."""

    kind = "dot"
    Config = SGDConfig
    capabilities = frozenset({FOLD_IN, ITEM_FOLD_IN, UPDATE, FACTORS, RATINGS})
    wants_y_range = False
    user_item_tables: ClassVar[dict[str, str]] = {"user_factors.weight": "user", "item_factors.weight": "item"}

    def __init__(self, config: ModelConfig, users, items) -> None:
        super().__init__(config, users, items)
        self.user_factors = _table(len(users), config.n_factors)
        self.item_factors = _table(len(items), config.n_factors)

    def user_repr(self, u: Tensor) -> Tensor:
        return self.user_factors(u)

    def item_repr(self, i: Tensor) -> Tensor:
        return self.item_factors(i)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        return self._squash((ur * ir).sum(-1))

    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        """The representation is the factor row (``DotProductBias``: factors, then the bias)."""
        write_rows(self, side, index, reprs)

    def _squash(self, x: Tensor) -> Tensor:
        y = self.config.y_range
        return x if y is None else sigmoid_range(x, *y)

    def _squash_(self, x: Tensor) -> Tensor:
        """``_squash`` in place (no autograd: the scoring path), one pass over x."""
        y = self.config.y_range
        return x if y is None else x.sigmoid_().mul_(y[1] - y[0]).add_(y[0])

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """One (U, D) @ (D, n_items) product per chunk of users, biases folded in as extra
        columns (``_user_side``/``_item_side``), the item side built once; ``finish`` squashes
        (increasing), so the ranking is the inner product's: declared for approximate search."""
        was = self.training
        self.eval()
        side = self._item_side(self.item_repr(self.catalogue(items))).contiguous()
        self.train(was)

        @torch.no_grad()
        def user_side(ur: Tensor) -> Tensor:
            return self._user_side(ur.to(side.dtype))

        @torch.no_grad()
        def rank(ur: Tensor) -> Tensor:
            return user_side(ur) @ side.T

        return Scorer(rank, self._squash_, user_side=user_side, item_side=side)

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """An epoch: one unit per rating (the compiled step) plus the tables' AdamW updates, 0.12
        a cell (measured: ~3 s an epoch on Epinions' 22 k x 296 k tables of 51, 2 cores);
        memory: weights and Adam's two moments, and ~150 bytes per rating for the trainer."""
        f, epochs = cls.option(config, "n_factors"), cls.option(config, "epochs")
        cells = (sizes.users + sizes.items) * (f + 1)
        return epochs * (sizes.n + 0.12 * cells), cells * 4 * 3 + sizes.n * 150

    def dot_tables(self) -> list[Tensor] | None:
        if type(self) not in (DotProduct, DotProductBias, BiasOnly):
            return None  # subclasses (bpr, bpmf...) change the score or the loss
        params = dict(self.named_parameters())
        tables = [params[name] for name in self.user_item_tables]  # factors, then biases
        return tables if all(p.requires_grad for p in tables) else None  # a frozen table: autograd

    def _user_side(self, ur: Tensor) -> Tensor:
        return ur

    def _item_side(self, ir: Tensor) -> Tensor:
        return ir

    def cross(self, ur: Tensor, ir: Tensor) -> Tensor:
        """(U, Du), (N, Di) representations -> (U, N) scores of every pair, by one product."""
        return self._squash_(self._user_side(ur) @ self._item_side(ir).T)


@dataclass
class BiasConfig(SGDConfig):
    y_range: tuple[float, float] | None = (0.0, 5.5)


class DotProductBias(BiasLinear, DotProduct):
    """score = sigmoid_range(u_f . i_f + u_b + i_b, *y_range).

    The representation of a user is [factors, bias] (F+1 numbers), likewise for items, so the
    head is a dot product over the factor part plus the two bias columns.
    """

    kind = "dot-bias"
    wants_y_range = True
    Config = BiasConfig
    capabilities = frozenset({FOLD_IN, ITEM_FOLD_IN, UPDATE, FACTORS, RATINGS, BIASES})
    bias_columns = (1, 1)
    user_item_tables: ClassVar[dict[str, str]] = {**DotProduct.user_item_tables, "user_bias.weight": "user", "item_bias.weight": "item"}

    def __init__(self, config: ModelConfig, users, items) -> None:
        super().__init__(config, users, items)
        self.user_bias = _table(len(users), 1)
        self.item_bias = _table(len(items), 1)

    def user_repr(self, u: Tensor) -> Tensor:
        return torch.cat([self.user_factors(u), self.user_bias(u)], 1)

    def item_repr(self, i: Tensor) -> Tensor:
        return torch.cat([self.item_factors(i), self.item_bias(i)], 1)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        dot = (ur[..., :-1] * ir[..., :-1]).sum(-1)
        return self._squash(dot + ur[..., -1] + ir[..., -1])

    def forward(self, u: Tensor, i: Tensor) -> Tensor:
        # same maths as head(user_repr, item_repr) without the concatenations: the training hot path
        dot = (self.user_factors(u) * self.item_factors(i)).sum(1)
        return self._squash(dot + self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1))

    def _user_side(self, ur: Tensor) -> Tensor:
        """[u_f, b_u] -> [u_f, b_u, 1], so that . [i_f, 1, b_i] = u_f . i_f + b_u + b_i."""
        return torch.cat([ur, torch.ones(len(ur), 1)], 1)

    def _item_side(self, ir: Tensor) -> Tensor:
        return torch.cat([ir[:, :-1], torch.ones(len(ir), 1), ir[:, -1:]], 1)


@dataclass
class BiasOnlyConfig(BiasConfig):
    n_factors: int = field(default=0, metadata={"min": 0, "max": 0})  # no factors


class BiasOnly(DotProductBias):
    """score = sigmoid_range(u_b + i_b): the user/item bias baseline (no factors)."""

    kind = "bias"
    Config = BiasOnlyConfig
    capabilities = frozenset({FOLD_IN, ITEM_FOLD_IN, UPDATE, RATINGS, BIASES})  # no factors to compare

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """Shared: sigmoid_range is increasing, so b_u + b_i ranks items alike for every user."""
        full = super().scorer(items)
        return Scorer(full.rank, full.finish, self.item_bias.weight.detach()[self.catalogue(items), 0])


class GlobalMean(CollabModel):
    """score = the training set's mean rating, for everyone: the floor every model must beat."""

    kind = "mean"
    wants_y_range = False

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """A pass over the ratings (the baseline's sums); its id lookups."""
        return sizes.n * 0.4, sizes.n * 50.0

    def _fit(self, train: Ratings, valid: Ratings | None, console: object, progress: bool) -> History:
        return History()  # the mean is the baseline's mu, set by fit

    def user_repr(self, u: Tensor) -> Tensor:
        return torch.zeros(len(u), 0)

    def item_repr(self, i: Tensor) -> Tensor:
        return torch.zeros(len(i), 0)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        return torch.full((max(len(ur), len(ir)),), float(self.meta.get("global_mean", 0.0)))

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """The same number everywhere (one fill, not the pairwise head); every item ties, so
        lists go by item index."""
        mean, n = float(self.meta.get("global_mean", 0.0)), len(self.catalogue(items))
        return Scorer(lambda ur: torch.full((len(ur), n), mean), shared=torch.zeros(n))
