"""The model contract every collabkit model honours.

A model scores (user, item) index pairs as ``head(user_repr(u), item_repr(i))``. Splitting the
score this way gives one mechanism for everything else: unknown ids get the all-zero
representation (documented fallback), top-N scores every item at once, and fold-in solves for a
new user's representation with the item side fixed.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab


def sigmoid_range(x: Tensor, low: float, high: float) -> Tensor:
    """Squash x into (low, high) with a sigmoid, as in the fastai chapter."""
    return torch.sigmoid(x) * (high - low) + low


def default_y_range(scale: tuple[float, float]) -> tuple[float, float]:
    """Output range a little wider than the rating scale: (0, 5.5) for 1-5 stars, (0, 5.56) for 0.5-5.

    A sigmoid never reaches its ends, so the top of the scale needs headroom; the bottom gets a
    quarter of the scale's width (floored at 0 for non-negative scales).
    """
    lo, hi = scale
    width = hi - lo
    low = lo - width / 4
    if lo >= 0:
        low = max(0.0, low)
    return (float(low), float(hi + width / 8))


#: predict_idx's chunk holds about this many representation cells (4M floats: 16 MB per side)
PREDICT_CELLS = 1 << 22
#: score_all_items' generic path feeds the head about this many representation numbers at a time
SCORE_CELLS = 1 << 22


@dataclass
class ModelConfig:
    """Hyper-parameters shared by the factor models; subclasses add their own."""

    n_factors: int = 50  # length of each user/item embedding
    y_range: tuple[float, float] | None = None  # sigmoid output range; None = unbounded
    seed: int = 42  # seeds the initial weights

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in obj.items() if k in names}
        if kw.get("y_range") is not None:
            kw["y_range"] = tuple(kw["y_range"])
        for k, v in list(kw.items()):
            if isinstance(v, list):
                kw[k] = tuple(v)
        return cls(**kw)


class CollabModel(nn.Module):
    """Base class: scores users x items; vocabularies map the user's own ids to indices."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    registry: ClassVar[dict[str, type[CollabModel]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            CollabModel.registry[cls.kind] = cls

    def __init__(self, config: ModelConfig, users: Vocab, items: Vocab) -> None:
        super().__init__()
        self.config = config
        self.users = users
        self.items = items
        self.meta: dict[str, Any] = {}  # trained-on facts (scale, global mean...) saved with the model

    @classmethod
    def from_data(cls, ratings: Ratings, **config: Any) -> CollabModel:
        """Build an untrained model whose vocabularies are the users and items of ``ratings``."""
        cfg = cls.Config(**config)
        if "y_range" in {f.name for f in fields(cfg)} and "y_range" not in config and cls.wants_y_range:
            cfg.y_range = default_y_range(ratings.scale or (0.0, 1.0))
        users = Vocab(ratings.frame["user"], "user")
        items = Vocab(ratings.frame["item"], "item")
        torch.manual_seed(cfg.seed)
        model = cls(cfg, users, items)
        model.meta = {"scale": list(ratings.scale or ()), "global_mean": float(ratings.frame["rating"].mean())}
        return model

    wants_y_range: ClassVar[bool] = True

    # --- the three pieces every model defines -------------------------------------------
    def user_repr(self, u: Tensor) -> Tensor:
        """(B,) user indices -> (B, Du) representation."""
        raise NotImplementedError

    def item_repr(self, i: Tensor) -> Tensor:
        """(B,) item indices -> (B, Di) representation."""
        raise NotImplementedError

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        """(B, Du), (B, Di) -> (B,) predicted scores; must broadcast (1, Du) against (N, Di)."""
        raise NotImplementedError

    def forward(self, u: Tensor, i: Tensor) -> Tensor:
        """Scores for known index pairs (the training fast path)."""
        return self.head(self.user_repr(u), self.item_repr(i))

    # --- built on the pieces ---------------------------------------------------------------
    def score(self, u: Tensor, i: Tensor) -> Tensor:
        """Like forward, but index -1 (unknown id) gets the all-zero representation.

        For the bias models this means an unknown user is scored by the item's bias alone (and
        vice versa): the documented fallback, reported by ``evaluate``.
        """
        ur = self.user_repr(u.clamp(min=0)) * (u >= 0).unsqueeze(1)
        ir = self.item_repr(i.clamp(min=0)) * (i >= 0).unsqueeze(1)
        return self.head(ur, ir)

    @torch.no_grad()
    def predict(self, users: Any, items: Any, batch_size: int | None = None) -> np.ndarray:
        """Predicted scores for raw (user, item) id pairs; unknown ids use the zero fallback."""
        u = torch.from_numpy(self.users.lookup(users, strict=False))
        i = torch.from_numpy(self.items.lookup(items, strict=False))
        if len(u) != len(i):
            u, i = torch.broadcast_tensors(u, i)
        return self.predict_idx(u, i, batch_size).numpy()

    @torch.no_grad()
    def predict_idx(self, u: Tensor, i: Tensor, batch_size: int | None = None) -> Tensor:
        """Scores of index pairs, in chunks of ``batch_size`` pairs (default: PREDICT_CELLS //
        the user representation's width, so wide models such as Bayesian MF stay small)."""
        was = self.training
        self.eval()
        if batch_size is None:
            width = self.user_repr(torch.zeros(1, dtype=torch.int64)).shape[-1] if len(u) else 1
            batch_size = max(1024, PREDICT_CELLS // max(1, width))
        out = torch.cat([self.score(u[s : s + batch_size], i[s : s + batch_size]) for s in range(0, len(u), batch_size)]) if len(u) else torch.empty(0)
        self.train(was)
        return out

    @torch.no_grad()
    def score_all_items(self, u: Tensor, batch_users: int = 256) -> Tensor:
        """(U,) user indices -> (U, n_items) scores of every item (the top-N fast path).

        Per chunk of ``batch_users`` users: one (B, Du) x (N, Di) matrix product when the head is a
        dot product (``_combine_all``); otherwise the pairwise head on slices of the B x N pairs,
        each slice holding about SCORE_CELLS representation numbers, so no (B, N, D) block exists.
        """
        was = self.training
        self.eval()
        n = len(self.items)
        ir = self.item_repr(torch.arange(n))
        combine = getattr(self, "_combine_all", None)
        rows = []
        for ub in u.split(batch_users):
            ur = self.user_repr(ub.clamp(min=0)) * (ub >= 0).unsqueeze(1)
            if combine is not None:
                rows.append(combine(ur, ir))
                continue
            step = max(1, SCORE_CELLS // max(1, ur.shape[1] + ir.shape[1]))  # pairs per head call
            total = len(ub) * n
            spans = (torch.arange(s, min(s + step, total)) for s in range(0, total, step))
            flat = [self.head(ur[p // n], ir[p % n]) for p in spans]
            rows.append(torch.cat(flat).view(len(ub), n) if flat else torch.empty(len(ub), n))
        self.train(was)
        return torch.cat(rows) if rows else torch.empty(0, n)

    #: parameter name -> "user" or "item" for tables indexed by user/item index; the trainer
    #: gathers and updates only the rows a batch touches (see train.loop.train_step)
    user_item_tables: ClassVar[dict[str, str]] = {}
    #: the trainer's batch size when none is given: 16x the chapter's 64, within 0.006 RMSE of
    #: it on ML-100k u1 in a sixth of the time (bench/speed.py); a model may ask for another
    default_bs: ClassVar[int] = 1024

    def indexed_tables(self) -> dict[str, str]:
        return self.user_item_tables


#: every module that defines model kinds; imported on first lookup so the registry is complete
MODEL_MODULES = ("dot", "neural", "hybrid", "svdpp", "bayes", "autorec", "ensemble", "implicit")


def get_model_class(kind: str) -> type[CollabModel]:
    """The model class registered under ``kind`` (as saved in a checkpoint's config)."""
    for name in MODEL_MODULES:
        importlib.import_module(f"collabkit.models.{name}")
    try:
        return CollabModel.registry[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; choose one of {sorted(CollabModel.registry)}") from None
