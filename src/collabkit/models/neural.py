"""EmbeddingNN: concatenated user and item embeddings through an MLP (the chapter's neural model)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from collabkit.data.vocab import Vocab
from collabkit.models.base import FACTORS, RATINGS, UPDATE, CollabModel, Sizes, sigmoid_range
from collabkit.models.config import SGDConfig
from collabkit.models.dot import _table, write_rows


def emb_size(n: int) -> int:
    """fastai's rule of thumb for an embedding's width: min(600, round(1.6 * n ** 0.56))."""
    return int(min(600, round(1.6 * n**0.56)))


@dataclass
class NNConfig(SGDConfig):
    # 0 = per-table sizes from emb_size(); else both tables this wide
    n_factors: int = field(default=0, metadata={"min": 0})
    layers: tuple[int, ...] = field(default=(100,), metadata={"min": 1})  # hidden layer widths
    dropout: float = field(default=0.0, metadata={"min": 0, "lt": 1})  # after each hidden layer
    emb_dropout: float = field(default=0.0, metadata={"min": 0, "lt": 1})  # on the concatenated embeddings
    y_range: tuple[float, float] | None = (0.0, 5.5)
    bs: int | None = field(default=None, metadata={"min": 2})  # batch norm needs two rows a batch


class EmbeddingNN(CollabModel):
    """score = sigmoid_range(MLP([u_emb, i_emb])); hidden layers are Linear -> ReLU -> BatchNorm."""

    kind = "nn"
    Config = NNConfig
    # a non-linear head: no fold-in; an update starts new users' and items' rows from the init
    capabilities = frozenset({FACTORS, RATINGS, UPDATE})
    # an MLP with batch norm wants more, smaller steps: chapter recipe on u1, bs 256 RMSE 0.936,
    # bs 1024 0.945
    default_bs: ClassVar[int] = 256
    user_item_tables: ClassVar[dict[str, str]] = {"user_factors.weight": "user", "item_factors.weight": "item"}

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """The default rule, with the tables' widths from ``emb_size`` when n_factors is 0."""
        f = cls.option(config, "n_factors")
        if f:
            return super().cost(config, sizes)
        epochs = cls.option(config, "epochs")
        cells = sizes.users * (emb_size(sizes.users) + 1) + sizes.items * (emb_size(sizes.items) + 1)
        return epochs * (12.0 * sizes.n + 0.12 * cells), cells * 16 + sizes.n * 150

    def __init__(self, config: NNConfig, users: Vocab, items: Vocab) -> None:
        super().__init__(config, users, items)
        du = config.n_factors or emb_size(len(users))
        di = config.n_factors or emb_size(len(items))
        self.user_factors = _table(len(users), du)
        self.item_factors = _table(len(items), di)
        self.emb_drop = nn.Dropout(config.emb_dropout)
        sizes = [du + di, *config.layers]
        blocks: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes):
            blocks += [nn.Linear(n_in, n_out), nn.ReLU(), nn.BatchNorm1d(n_out)]
            if config.dropout:
                blocks.append(nn.Dropout(config.dropout))
        blocks.append(nn.Linear(sizes[-1], 1))
        self.mlp = nn.Sequential(*blocks)

    def user_repr(self, u: Tensor) -> Tensor:
        return self.user_factors(u)

    def item_repr(self, i: Tensor) -> Tensor:
        return self.item_factors(i)

    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        write_rows(self, side, index, reprs)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        ur, ir = ur.expand(max(len(ur), len(ir)), -1), ir.expand(max(len(ur), len(ir)), -1)
        x = self.emb_drop(torch.cat([ur, ir], 1))  # (B, Du + Di)
        out = self.mlp(x).squeeze(1)  # (B,)
        y = self.config.y_range
        return out if y is None else sigmoid_range(out, *y)
