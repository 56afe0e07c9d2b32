"""The model contract every collabkit model honours.

A model scores (user, item) index pairs as ``head(user_repr(u), item_repr(i))``. Splitting the
score this way gives one mechanism for everything else: top-N scores every item at once, and
fold-in solves for a new user's representation with the item side fixed.

Every kind trains through one method, ``model.fit(train, valid=None, **recipe) -> History``; the
recipe (epochs, learning rate, ...) lives in the model's config, so a saved model records how it
was trained. What a kind can do beyond scoring is declared in ``capabilities`` and asked with
``require``/``supports``, never probed.

Unknown ids: a rating model scores a pair whose user or item it never saw with the **baseline
predictor** b_ui = mu + b_u + b_i (Koren 2008; only the known side's term, mu alone when both are
unknown), fitted on the training ratings with shrinkage and clipped to the rating scale. Ranking
models (implicit data) give such pairs the all-zero representation's score. ``score_all_items``
(the top-N path) serves known users; top-N gives an unknown user the average-taste user instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.core.loop import History, fit_one_cycle
from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models.config import ModelConfig, SGDConfig, check_memory, estimate

# --- capabilities: what a kind can do beyond scoring ------------------------------------------
FOLD_IN = "fold-in"  # new users from a few answers, without retraining (recommend.foldin)
FACTORS = "factors"  # latent vectors per item and user: similar items/users, the PCA map
RATINGS = "ratings"  # scores are ratings on the data's scale (else ranking scores, implicit data)
PROBA = "proba"  # a probability for each rating level (config.levels; predict_proba, proba_repr)
CAPABILITIES = (FOLD_IN, FACTORS, RATINGS, PROBA)

#: rows per chunk of the baseline predictor's sweep (its float64 temporaries: 8 MB each)
BASELINE_CHUNK = 1 << 20
#: shrinkage of the baseline predictor's item and user offsets (Koren 2008's lambda_2, lambda_3)
BASELINE_REG = (25.0, 10.0)


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


class CapabilityError(TypeError, ValueError):
    """A model was asked for something its kind does not declare (see ``require``)."""


class CollabModel(nn.Module):
    """Base class: scores users x items; vocabularies map the user's own ids to indices."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    registry: ClassVar[dict[str, type[CollabModel]]] = {}
    #: what this kind can do beyond scoring (FOLD_IN, FACTORS, RATINGS, PROBA)
    capabilities: ClassVar[frozenset[str]] = frozenset({RATINGS})
    #: True for kinds that fold in a new user by their own exact solve, ``fold_in(items, weights)``
    #: (the implicit rankers); rating models fold in through ``recommend.foldin``'s prior
    solves_new_users: ClassVar[bool] = False
    #: columns at the end of (user_repr, item_repr) that are biases, not factors
    bias_columns: ClassVar[tuple[int, int]] = (0, 0)

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
        # the baseline predictor's offsets b_u, b_i (fallback for unknown ids; set by fit)
        self.register_buffer("baseline_user", torch.zeros(len(users)))
        self.register_buffer("baseline_item", torch.zeros(len(items)))

    @classmethod
    def from_data(cls, ratings: Ratings, **config: Any) -> CollabModel:
        """Build an untrained model whose vocabularies are the users and items of ``ratings``."""
        cfg = cls.Config(**config)
        if "y_range" in {f.name for f in fields(cfg)} and "y_range" not in config and cls.wants_y_range:
            cfg.y_range = default_y_range(ratings.scale or (0.0, 1.0))
        users = Vocab(ratings.frame["user"], "user")
        items = Vocab(ratings.frame["item"], "item")
        check_memory([estimate(cls, cfg, users, items, len(ratings))], f"the {cls.kind} model")  # before allocating
        torch.manual_seed(cfg.seed)
        model = cls(cfg, users, items)
        model.meta = {"scale": list(ratings.scale or ()), "global_mean": float(ratings.frame["rating"].mean())}
        return model

    wants_y_range: ClassVar[bool] = True

    # --- training: one protocol for every kind --------------------------------------------
    def fit(
        self,
        train: Ratings,
        valid: Ratings | None = None,
        *,
        console: Any = None,
        progress: bool = False,
        **recipe: Any,
    ) -> History:
        """Train on ``train`` (``valid`` is only reported on); returns what training measured.

        ``recipe`` overrides fields of the config (``epochs=10``, ``lr_max=1e-2``...) and is kept
        in it, so the saved model says how it was trained. ``console`` gets the epoch table.
        """
        if recipe:
            self.config = self.config.updated(**recipe)
        if len(train) == 0:
            raise ValueError("cannot train on an empty set of ratings")
        if RATINGS in self.capabilities:
            self.set_baseline(train)
        history = self._fit(train, valid, console, progress)
        self.eval()
        return history

    def _fit(self, train: Ratings, valid: Ratings | None, console: Any, progress: bool) -> History:
        """The kind's training; by default the one-cycle engine with the config's recipe."""
        cfg = self.config
        if not isinstance(cfg, SGDConfig):
            raise NotImplementedError(f"{self.kind} must define _fit or use an SGDConfig")
        return fit_one_cycle(
            self, train, valid, epochs=cfg.epochs, lr_max=cfg.lr_max, wd=cfg.wd, bs=cfg.bs,
            seed=cfg.seed, console=console, progress=progress,
        )  # fmt: skip

    @torch.no_grad()
    def set_baseline(self, train: Ratings, reg: tuple[float, float] | None = None) -> None:
        """Fit the baseline predictor mu + b_u + b_i to ``train`` (one shrunk sweep: items, then
        users; ``reg`` = (item, user) shrinkage, BASELINE_REG by default).

        Rows go BASELINE_CHUNK at a time: 8 bytes a rating (int32 indices) stay for the sweep,
        float64 temporaries are a chunk's, so this is no peak of a large training run.
        """
        f = train.frame
        u, i = np.empty(len(f), np.int32), np.empty(len(f), np.int32)
        spans = [slice(s, s + BASELINE_CHUNK) for s in range(0, len(f), BASELINE_CHUNK)]
        for span in spans:
            u[span] = self.users.lookup(f["user"].iloc[span], strict=False)
            i[span] = self.items.lookup(f["item"].iloc[span], strict=False)
        ratings = f["rating"].to_numpy()

        def known(span: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            keep = (u[span] >= 0) & (i[span] >= 0)
            return u[span][keep], i[span][keep], ratings[span][keep].astype(np.float64)

        n_items, n_users = len(self.items), len(self.users)
        total, n_i, s_i = 0.0, np.zeros(n_items), np.zeros(n_items)
        for span in spans:
            _, ii, r = known(span)
            total += r.sum()
            n_i += np.bincount(ii, minlength=n_items)
            s_i += np.bincount(ii, r, n_items)
        mu = total / n_i.sum() if n_i.sum() else 0.0
        reg_i, reg_u = reg or BASELINE_REG
        b_i = (s_i - mu * n_i) / (reg_i + n_i)  # = sum_i (r - mu) / (reg_i + n_i)
        n_u, s_u = np.zeros(n_users), np.zeros(n_users)
        for span in spans:
            uu, ii, r = known(span)
            n_u += np.bincount(uu, minlength=n_users)
            s_u += np.bincount(uu, r - mu - b_i[ii], n_users)
        b_u = s_u / (reg_u + n_u)
        self.baseline_item.copy_(torch.from_numpy(b_i))
        self.baseline_user.copy_(torch.from_numpy(b_u))
        self.meta["global_mean"] = float(mu)

    def baseline(self, u: Tensor, i: Tensor) -> Tensor:
        """(B,) mu + b_u + b_i with the term of an unknown side (index -1) left out, clipped to the scale."""
        out = torch.full(u.shape, float(self.meta.get("global_mean", 0.0)))
        out = out + torch.where(u >= 0, self.baseline_user[u.clamp(min=0)], 0.0)
        out = out + torch.where(i >= 0, self.baseline_item[i.clamp(min=0)], 0.0)
        scale = self.meta.get("scale") or ()
        return out.clamp(*scale) if len(scale) == 2 else out

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
        """Like forward, but a pair with an unknown side (index -1) gets the fallback (module doc)."""
        s = self._score(u, i)
        unknown = (u < 0) | (i < 0)
        if RATINGS in self.capabilities and bool(unknown.any()):
            s = torch.where(unknown, self.baseline(u, i), s)
        return s

    def _score(self, u: Tensor, i: Tensor) -> Tensor:
        """Scores with the all-zero representation for an unknown side."""
        ur = self.user_repr(u.clamp(min=0)) * (u >= 0).unsqueeze(1)
        ir = self.item_repr(i.clamp(min=0)) * (i >= 0).unsqueeze(1)
        return self.head(ur, ir)

    @torch.no_grad()
    def factors(self, side: str = "item") -> Tensor:
        """(n, F) latent vectors of every item (or user): the representation minus its bias columns."""
        require(self, FACTORS)
        n = len(self.items if side == "item" else self.users)
        was = self.training
        self.eval()
        rep = (self.item_repr if side == "item" else self.user_repr)(torch.arange(n)).float()
        self.train(was)
        return rep[:, : rep.shape[1] - self.bias_columns[side == "item"]]

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

    def ranker(self) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
        """(rank, finish) for top-N: ``rank`` maps user indices to (U, n_items) numbers ordered like
        ``scorer()``'s, ``finish`` turns the chosen ones into those scores. Kinds whose score ends
        in an increasing squash (sigmoid_range) leave it to ``finish``: n cells a user, not all."""
        return self.scorer(), lambda top: top

    def shared_ranking(self) -> Tensor | None:
        """(n_items,) numbers whose descending order is every user's ranking of the items, for kinds
        whose ranking does not depend on the user (top-N then sorts the catalogue once instead of
        scoring every user x item cell); None for the others."""
        return None

    def scorer(self) -> Callable[[Tensor], Tensor]:
        """A function (U,) user indices -> (U, n_items) scores, for scoring many chunks of users
        (the top-N path): kinds whose item side is costly prepare it once here."""
        return self.score_all_items

    #: parameter name -> "user" or "item" for tables indexed by user/item index; the trainer
    #: gathers and updates only the rows a batch touches (see train.loop.train_step)
    user_item_tables: ClassVar[dict[str, str]] = {}
    #: the trainer's batch size when none is given: 16x the chapter's 64, within 0.006 RMSE of
    #: it on ML-100k u1 in a sixth of the time (bench/speed.py); a model may ask for another
    default_bs: ClassVar[int] = 1024

    def indexed_tables(self) -> dict[str, str]:
        return self.user_item_tables

    def dot_tables(self) -> list[Tensor] | None:
        """[P, Q] or [P, Q, b_u, b_i] when the score is exactly p_u . q_i (+ b_u + b_i), squashed
        into ``config.y_range``: the trainer then runs ``core.kernels``'s compiled MSE step on these
        tables. None (the default): the trainer backpropagates through ``forward``."""
        return None


#: every module that defines model kinds; imported on first lookup so the registry is complete
MODEL_MODULES = (
    "dot", "neural", "hybrid", "svdpp", "bayes", "autorec", "ensemble", "implicit", "ordinal",
    "baseline",
)  # fmt: skip


def registry() -> dict[str, type[CollabModel]]:
    """Every registered model kind -> its class (importing the model modules registers them)."""
    for name in MODEL_MODULES:
        importlib.import_module(f"collabkit.models.{name}")
    return dict(CollabModel.registry)


def get_model_class(kind: str) -> type[CollabModel]:
    """The model class registered under ``kind`` (as saved in a checkpoint's config)."""
    kinds = registry()
    try:
        return kinds[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; choose one of {sorted(kinds)}") from None


def supports(model: CollabModel | type[CollabModel], capability: str) -> bool:
    """True when ``model`` (a model or a kind's class) declares ``capability``."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}; one of {CAPABILITIES}")
    return capability in model.capabilities


def require(model: CollabModel, capability: str) -> None:
    """Raise CapabilityError, naming the kinds that have ``capability``, unless ``model`` has it."""
    if not supports(model, capability):
        having = sorted(k for k, cls in registry().items() if capability in cls.capabilities)
        raise CapabilityError(
            f"a {model.kind!r} model has no {capability!r} capability; kinds that do: {', '.join(having)}"
        )
