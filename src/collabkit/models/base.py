"""The model contract every collabkit model honours: the one place it is written down.

A kind is a ``CollabModel`` subclass. It scores (user, item) index pairs as
``head(user_repr(u), item_repr(i))`` and implements:

    kind, Config     its registry name and its config dataclass (shape and training recipe)
    user_repr(u)     (B,) user indices -> (B, Du) representations
    item_repr(i)     (B,) item indices -> (B, Di) representations
    head(ur, ir)     (B, Du), (B, Di) -> (B,) scores; broadcasts (1, Du) against (N, Di)
    _fit(...)        its training, unless its Config is an SGDConfig (then the one-cycle engine)

and may override, for speed only, ``forward`` (the training path) and ``scorer`` (all items at
once: top-N and the serving engine). Everything else is built on these pieces. What a kind can do
beyond scoring it declares in ``capabilities``; each capability is a set of methods with a
default that fits most kinds, asked with ``require``/``supports``, never probed:

    RATINGS  scores are ratings on the data's scale (else ranking scores, implicit data); unknown
             ids get the baseline predictor (below)
    FACTORS  ``factors(side)``: latent vectors per item and user (similar items, the PCA map)
    FOLD_IN  the score is f(a_i . x + c_i), linear in the user's representation x through a link:
             ``user_linear(items)`` gives (a_i, c_i), ``link``/``link_inverse`` give f, and with
             them ``user_prior`` and ``fold_in`` place a new user (``models.linear``; a kind with
             an exact solve of its own, such as ALS, overrides ``fold_in``)
    ITEM_FOLD_IN  the mirror: the score is f(b_u . y + d_u), linear in the item's representation
             y: ``item_linear(users)`` gives (b_u, d_u), and ``item_prior`` and ``fold_in_items``
             place a new item from its ratings, the users fixed; ``set_reprs("item", ...)``
             writes it into a model grown to hold it (``grown``; ``models.incremental``)
    UPDATE   training goes on from the current weights on part of the data: ``update(new, old)``
             grows the vocabularies (new rows placed by fold-in where the kind has it) and trains
             on the new ratings mixed with a replay sample of the old ones (``models.incremental``)
    PROBA    ``proba_repr(ur, ir)``: a probability for each rating level (``config.levels``)
    BIASES   ``biases(side)``: one learned offset per item and user

A model made of parts (an ensemble) lists them in ``components()``; fold-in and onboarding
work on each component. ``grown(users, items)`` copies a model into larger vocabularies (known
ids keep their indices; new rows start as the kind's constructor makes them) and ``set_reprs``
writes representations into rows: each kind's own layout (factors and bias columns, metadata
parts, history CSR buffers). The registry is the set of kinds: every module of this package is
imported on the first lookup, so a new kind is one new module (and its conformance recipe).

Every kind trains through one method, ``model.fit(train, valid=None, **recipe) -> History``; the
recipe (epochs, learning rate, ...) lives in the model's config, so a saved model records how it
was trained.

Unknown ids: a rating model scores a pair whose user or item it never saw with the **baseline
predictor** b_ui = mu + b_u + b_i (Koren 2008; only the known side's term, mu alone when both are
unknown), fitted on the training ratings with shrinkage and clipped to the rating scale. Ranking
models (implicit data) give such pairs the all-zero representation's score. Top-N gives an unknown
user the average-taste user instead.
"""

from __future__ import annotations

import copy
import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.core import parallel
from collabkit.core.loop import History, fit_one_cycle
from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models import incremental, linear
from collabkit.models.capabilities import (  # noqa: F401  (the contract's names, kept here too)
    BIASES,
    CAPABILITIES,
    FACTORS,
    FOLD_IN,
    ITEM_FOLD_IN,
    NEIGHBOURS,
    PROBA,
    RATINGS,
    UPDATE,
    CapabilityError,
    supports,
)
from collabkit.models.config import ModelConfig, SGDConfig, check_memory, estimate
from collabkit.models.linear import UserPrior

#: rows per chunk of the baseline predictor's sweep (its float64 temporaries: 8 MB each)
BASELINE_CHUNK = 1 << 20
#: shrinkage of the baseline predictor's item and user offsets (Koren 2008's lambda_2, lambda_3)
BASELINE_REG = (25.0, 10.0)
#: alternating sweeps of its fit: ~10 converge to the least-squares offsets on ML-100k and Epinions
BASELINE_SWEEPS = 10


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
class Scorer:
    """A kind's scoring of user representations against every item, its item side prepared once
    (top-N and the serving engine use one per model).

    ``rank`` maps (U, Du) user representations to (U, n_items) numbers ordered like the scores;
    ``finish`` turns chosen numbers into the scores (an increasing map: kinds whose score ends in
    sigmoid_range leave it to ``finish``, so it runs on n cells a user, not all). ``shared``: for
    kinds whose ranking is the same for every user, (n_items,) numbers in that order (top-N then
    sorts the catalogue once instead of scoring every cell). ``user_side``/``item_side``: for
    kinds whose ranking is an inner product, rank(ur) = user_side(ur) @ item_side.T with
    ``item_side`` (n_items, D): an approximate inner-product index may then search the catalogue
    (``recommend.ann``); None for any other kind, which keeps exact search.
    """

    rank: Callable[[Tensor], Tensor]
    finish: Callable[[Tensor], Tensor] = field(default=lambda top: top)
    shared: Tensor | None = None
    user_side: Callable[[Tensor], Tensor] | None = None
    item_side: Tensor | None = None

    @functools.cached_property
    def order(self) -> np.ndarray:
        """``shared``'s item indices, best first (ties to the lower index), sorted once."""
        return torch.sort(-self.shared.double().cpu(), stable=True).indices.numpy()


@dataclass
class Sizes:
    """What cost rules read: ratings, users, items, and this machine's speed."""

    n: int
    users: int
    items: int
    speed: float = 1e6  # dot-bias rating-epochs per second (the self-tuning preset measures it)
    levels: int = 0  # distinct rating values (0: not counted)


class CollabModel(nn.Module):
    """Base class: scores users x items; vocabularies map the user's own ids to indices."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    registry: ClassVar[dict[str, type[CollabModel]]] = {}
    #: what this kind can do beyond scoring (FOLD_IN, ITEM_FOLD_IN, UPDATE, FACTORS, RATINGS, PROBA, BIASES)
    capabilities: ClassVar[frozenset[str]] = frozenset({RATINGS})
    #: buffers whose length is a count of the training data (a CSR history, say): resized from
    #: the saved file when a model is loaded
    data_sized: ClassVar[tuple[str, ...]] = ()
    #: columns at the end of (user_repr, item_repr) that are biases, not factors
    bias_columns: ClassVar[tuple[int, int]] = (0, 0)
    #: each user's ``fold_in`` depends on their own answers only, not on who else is in the batch
    #: (the serving engine then folds in the users of concurrent requests together)
    fold_in_per_user: bool = True
    #: FOLD_IN through ``user_linear`` (score = link(A x + c)); False for a kind with its own
    #: ``fold_in`` that is not (onboarding then measures no gain on it)
    linear_fold_in: ClassVar[bool] = True

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
        users = Vocab(ratings.frame["user"], "user")
        items = Vocab(ratings.frame["item"], "item")
        mean = float(ratings.frame["rating"].mean())
        return cls.from_vocabs(users, items, ratings.scale, mean, n_ratings=len(ratings), **config)

    @classmethod
    def from_vocabs(
        cls, users: Vocab, items: Vocab, scale: tuple[float, float] | None, global_mean: float,
        n_ratings: int = 0, **config: Any,
    ) -> CollabModel:
        """An untrained model from what ``from_data`` reads of the ratings (the data-parallel trainer
        gathers these over every rank's shard). Seeded by ``config``'s seed; a kind that wants a
        y_range and is given none gets ``default_y_range(scale)``, one whose predictions are
        clipped (a ``clip`` option) is clipped to the scale. Its memory is checked before anything
        is allocated (``models.config.check_memory``)."""
        cfg = cls.Config(**config)
        names = {f.name for f in fields(cfg)}
        if "y_range" in names and "y_range" not in config and cls.wants_y_range:
            cfg.y_range = default_y_range(scale or (0.0, 1.0))
        if "clip" in names and "clip" not in config:
            cfg.clip = tuple(scale) if scale else None
        check_memory([estimate(cls, cfg, users, items, n_ratings)], f"the {cls.kind} model")  # before allocating
        torch.manual_seed(cfg.seed)
        model = cls(cfg, users, items)
        model.meta = {"scale": list(scale or ()), "global_mean": float(global_mean)}
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
        in it, so the saved model says how it was trained; ``train.origin``, the description of
        the data (``data.source``), is kept in ``meta["data"]``. ``console`` gets the epoch table.
        """
        if recipe:
            self.config = self.config.updated(**recipe)
        if len(train) == 0:
            raise ValueError("cannot train on an empty set of ratings")
        self.meta.pop("data", None)  # what it was trained on: recorded when the data says
        if train.origin is not None:
            self.meta["data"] = dict(train.origin)
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
    def set_baseline(
        self, train: Ratings, reg: tuple[float, float] | None = None, sweeps: int = BASELINE_SWEEPS
    ) -> None:
        """Fit the baseline predictor mu + b_u + b_i to ``train`` by ``sweeps`` alternating sweeps
        (items, then users; ``reg`` = (item, user) shrinkage, BASELINE_REG by default).

        Each sweep sets one side's offsets to the exact minimiser, the other side fixed, of
        sum (r_ui - mu - b_u - b_i)^2 + reg_item sum b_i^2 + reg_user sum b_u^2, so repeated sweeps
        descend to its least-squares solution; one sweep is Koren's (2008) one-pass estimate.

        Rows go BASELINE_CHUNK at a time: 8 bytes a rating (int32 indices) stay for the sweeps,
        float64 temporaries are a chunk's, so this is no peak of a large training run. In a
        data-parallel run (``core.parallel``) the sums are over every rank's shard.
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
        total, n_i, n_u = 0.0, np.zeros(n_items), np.zeros(n_users)
        for span in spans:
            uu, ii, r = known(span)
            total += r.sum()
            n_i += np.bincount(ii, minlength=n_items)
            n_u += np.bincount(uu, minlength=n_users)
        total, n_i, n_u = _total(np.r_[total, n_i, n_u], (1, n_items, n_users))  # over every rank
        mu = float(total[0]) / n_i.sum() if n_i.sum() else 0.0
        reg_i, reg_u = reg or BASELINE_REG
        b_i, b_u = np.zeros(n_items), np.zeros(n_users)
        for _ in range(sweeps):
            b_i = _sweep(spans, known, "item", mu, b_u, n_i, reg_i)
            b_u = _sweep(spans, known, "user", mu, b_i, n_u, reg_u)
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
    def predict(self, users: Any, items: Any, batch_size: int | None = None, timestamps: Any = None) -> np.ndarray:
        """Predicted scores for raw (user, item) id pairs; unknown ids use the zero fallback.
        ``timestamps`` (epoch seconds, one per pair): when the ratings were made, for a kind
        with time offsets (``time_offsets``)."""
        u = torch.from_numpy(self.users.lookup(users, strict=False))
        i = torch.from_numpy(self.items.lookup(items, strict=False))
        if len(u) != len(i):
            u, i = torch.broadcast_tensors(u, i)
        return self.predict_idx(u, i, batch_size, timestamps).numpy()

    @torch.no_grad()
    def predict_idx(self, u: Tensor, i: Tensor, batch_size: int | None = None, timestamps: Any = None) -> Tensor:
        """Scores of index pairs, in chunks of ``batch_size`` pairs (default: PREDICT_CELLS //
        the user representation's width, so wide models such as Bayesian MF stay small), plus
        the kind's time offsets when ``timestamps`` are given."""
        was = self.training
        self.eval()
        if batch_size is None:
            width = self.user_repr(torch.zeros(1, dtype=torch.int64)).shape[-1] if len(u) else 1
            batch_size = max(1024, PREDICT_CELLS // max(1, width))
        out = torch.cat([self.score(u[s : s + batch_size], i[s : s + batch_size]) for s in range(0, len(u), batch_size)]) if len(u) else torch.empty(0)
        self.train(was)
        return out if timestamps is None else self.at_times(out, u, timestamps)

    def at_times(self, scores: Tensor, u: Tensor, timestamps: Any) -> Tensor:
        """``scores`` of users ``u`` shifted by the kind's offsets at ``timestamps`` and clipped to
        the scale; ``scores`` itself (the same tensor) for a kind without time effects."""
        shift = self.time_offsets(u, np.asarray(timestamps)) if len(u) else None
        if shift is None:
            return scores
        scale = self.meta.get("scale") or ()
        out = scores + torch.from_numpy(shift)
        return out.clamp(*scale) if len(scale) == 2 else out

    def time_offsets(self, u: Tensor, timestamps: np.ndarray) -> np.ndarray | None:
        """(B,) float32 shifts of the scores of users ``u`` rating at ``timestamps``, or None: a
        kind without time effects (all but a blend given time offsets, ``models.timeshift``)."""
        return None

    @torch.no_grad()
    def score_all_items(self, u: Tensor) -> Tensor:
        """(U,) user indices -> (U, n_items) scores of every item (-1: the all-zero user)."""
        scorer = self.scorer()
        return scorer.finish(scorer.rank(self.user_reprs(u)))

    def user_reprs(self, u: Tensor) -> Tensor:
        """(U,) user indices -> (U, Du) representations, all-zero for an unknown user (-1)."""
        return self.user_repr(u.clamp(min=0)) * (u >= 0).unsqueeze(1)

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """How this kind scores user representations against every item, its item side prepared
        once (``Scorer``), for every item or for item indices ``items`` (columns in that order).
        This default feeds the pairwise head slices of the U x N pairs holding
        about SCORE_CELLS representation numbers each, so no (U, N, D) block exists; kinds whose
        head is a dot product override it with one matrix product."""
        was = self.training
        self.eval()
        ir = self.item_repr(self.catalogue(items))
        self.train(was)
        n = len(ir)

        @torch.no_grad()
        def rank(ur: Tensor) -> Tensor:
            was = self.training
            self.eval()
            step = max(1, SCORE_CELLS // max(1, ur.shape[1] + ir.shape[1]))  # pairs per head call
            total = len(ur) * n
            spans = (torch.arange(s, min(s + step, total)) for s in range(0, total, step))
            flat = [self.head(ur[p // n], ir[p % n]) for p in spans]
            self.train(was)
            return torch.cat(flat).view(len(ur), n) if flat else torch.empty(len(ur), n)

        return Scorer(rank)

    def catalogue(self, items: Tensor | None = None) -> Tensor:
        """The item indices a scorer covers: ``items``, or every item."""
        return torch.arange(len(self.items)) if items is None else items

    def pair_scores(self, ur: Tensor, items: Tensor) -> Tensor:
        """(B, Du) user representations, (B,) item indices -> (B,) scores (the top-N path of kinds
        with a shared ranking scores only the chosen cells)."""
        was = self.training
        self.eval()
        out = self.head(ur.to(torch.float32), self.item_repr(items))
        self.train(was)
        return out

    # --- FACTORS and BIASES -------------------------------------------------------------------
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

    def biases(self, side: str = "item") -> Tensor:
        """(n,) the learned offset of every item (or user), for kinds with BIASES."""
        require(self, BIASES)
        if not self.bias_columns[side == "item"]:
            raise CapabilityError(f"a {self.kind!r} model has no {side} biases")
        rep = (self.item_repr if side == "item" else self.user_repr)(
            torch.arange(len(self.items if side == "item" else self.users))
        )
        return rep[:, -1].detach()

    # --- NEIGHBOURS: item-item similarities of the kind's own ----------------------------------
    def item_similarity(self, a: Tensor, b: Tensor) -> Tensor:
        """Similarities of item indices ``a`` and ``b`` (broadcast): for similar items and reasons,
        in place of the cosine of factors, in kinds that declare NEIGHBOURS (knn: its s_ij)."""
        require(self, NEIGHBOURS)
        raise NotImplementedError(f"{self.kind} declares {NEIGHBOURS!r} but has no item_similarity")

    # --- PROBA: a probability for each rating level (config.levels) ----------------------------
    def proba_repr(self, ur: Tensor, ir: Tensor) -> Tensor:
        """(..., Du), (..., Di) representations -> (..., K) P(r = l_k) over ``config.levels``."""
        raise NotImplementedError(f"{self.kind} declares {PROBA!r} but has no proba_repr")

    @torch.no_grad()
    def predict_proba(self, users: Any, items: Any) -> np.ndarray:
        """(n, K) P(r = l_k) for raw (user, item) id pairs, columns in ``config.levels`` order. An
        unknown side gets the all-zero representation (a kind may do better: the ordinal model
        puts it at the baseline predictor's rating)."""
        require(self, PROBA)
        u = torch.from_numpy(self.users.lookup(users, strict=False))
        i = torch.from_numpy(self.items.lookup(items, strict=False))
        u, i = torch.broadcast_tensors(u, i)
        ir = self.item_repr(i.clamp(min=0)) * (i >= 0).unsqueeze(1)
        return self.proba_repr(self.user_reprs(u), ir).numpy()

    # --- FOLD_IN: score = link(a_i . x + c_i), linear in the user's representation x -----------
    @torch.no_grad()
    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """Item indices (...,) -> (A (..., Du), c (...)) in float64 with z = A . x + c, the
        pre-link score of a user whose representation is x. Default: the head is a plain dot
        product of the representations (A = item_repr, c = 0)."""
        return self.item_reprs(items), torch.zeros(items.shape, dtype=torch.float64)

    @torch.no_grad()
    def item_reprs(self, items: Tensor) -> Tensor:
        """Item indices of any shape (...,) -> (..., Di) float64 representations (for fold-in)."""
        return self.reprs_of("item", items)

    @torch.no_grad()
    def reprs_of(self, side: str, index: Tensor) -> Tensor:
        """Indices of one side, any shape (...,) -> (..., D) float64 representations: the fixed
        side of a fold-in (-1, padding, reads row 0; the solves weigh it 0)."""
        flat = index.clamp(min=0).reshape(-1)
        rep = (self.user_repr(flat) if side == "user" else self.item_repr(flat)).double()
        return rep.reshape(*index.shape, rep.shape[-1])

    def link(self, z: linear.Array) -> tuple[linear.Array, linear.Array]:
        """(f(z), f'(z)): the score from its pre-link value; sigmoid_range of ``config.y_range``.
        A tensor gives tensors, a numpy array numpy arrays (fold-in's compiled steps)."""
        return linear.squash(z, self.config.y_range)

    def link_inverse(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """(t, f'(t)) with f(t) = r, r clipped inside f's range (its ends are never reached)."""
        return linear.unsquash(r, self.config.y_range)

    def link_is_identity(self) -> bool:
        """f(z) = z: fold-in's ridge solution is then exact, with no Gauss-Newton steps."""
        return self.config.y_range is None

    @torch.no_grad()
    def user_prior(self, ratings: Ratings | None = None, noise_var: float | None = None) -> UserPrior:
        """The Gaussian prior fold-in shrinks towards, measured on the trained users
        (``models.linear.measure_prior``; ``ratings``, the training ratings, calibrate it)."""
        require(self, FOLD_IN)
        return linear.measure_prior(self, ratings, noise_var)

    @torch.no_grad()
    def fold_in(self, items: Tensor, values: Tensor, prior: UserPrior | None = None) -> Tensor:
        """(U, Du) representations of users the model never saw, item side fixed, from their
        answers: item indices (U, m), -1 = padding, and ratings (U, m). A 1-D pair is one user.
        Default: the MAP user under ``prior`` (``models.linear.map_fold_in``)."""
        require(self, FOLD_IN)
        return linear.map_fold_in(self, items, values, prior or self.user_prior())

    # --- ITEM_FOLD_IN: score = link(b_u . y + d_u), linear in the item's representation y ------
    @torch.no_grad()
    def item_linear(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """User indices (...,) -> (B (..., Di), d (...)) in float64 with z = B . y + d, the pre-link
        score of an item whose representation is y. Default: a plain dot product (B = user_repr)."""
        return self.reprs_of("user", users), torch.zeros(users.shape, dtype=torch.float64)

    @torch.no_grad()
    def item_prior(self, ratings: Ratings | None = None, noise_var: float | None = None) -> UserPrior:
        """The Gaussian prior item fold-in shrinks towards, measured on the trained items
        (``models.linear.measure_prior`` with side="item"; ``ratings`` calibrate it)."""
        require(self, ITEM_FOLD_IN)
        return linear.measure_prior(self, ratings, noise_var, side="item")

    @torch.no_grad()
    def fold_in_items(self, users: Tensor, values: Tensor, prior: UserPrior | None = None) -> Tensor:
        """(I, Di) representations of items the model never saw, the users fixed, from their
        ratings: user indices (I, m), -1 = padding, and ratings (I, m). A 1-D pair is one item.
        Default: the MAP item under ``prior`` (``models.linear.map_fold_in``, side="item")."""
        require(self, ITEM_FOLD_IN)
        return linear.map_fold_in(self, users, values, prior or self.item_prior(), side="item")

    # --- growing: new users and items, placed without retraining ---------------------------
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        """Write (n, D) representations into rows ``index`` of ``side`` ("user" or "item"), so that
        ``user_repr(index)`` (``item_repr``) gives them back: how a folded-in user or item joins a
        grown model. Each kind knows its layout; kinds that cannot are refused."""
        raise CapabilityError(f"a {self.kind!r} model cannot write {side} representations")

    @torch.no_grad()
    def grown(self, users: Vocab, items: Vocab) -> CollabModel:
        """A copy of this model over larger vocabularies that start with this model's ids, at the
        same indices (``Vocab.extended``). Every tensor's known rows (and columns) are copied; the
        new ones are what the kind's constructor gives a model of the new ids alone (seeded by the
        config), to be placed by fold-in (``set_reprs``) or training; a region between known and
        new (a matrix over items by items) is zero. Only the new rows are initialised: the grown
        model is built on the meta device and filled. Kinds with CSR buffers over users or items
        extend them in an override."""
        for new, old in ((users, self.users), (items, self.items)):
            if len(new) < len(old) or not np.array_equal(new.ids[: len(old)], old.ids):
                raise ValueError(f"a grown {old.name} vocabulary must start with the model's {len(old)} ids, in order")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            with torch.device("meta"):
                shell = type(self)(copy.deepcopy(self.config), users, items)
            extra = type(self)(copy.deepcopy(self.config), Vocab(users.ids[len(self.users) :], "user", sort=False),
                               Vocab(items.ids[len(self.items) :], "item", sort=False))  # fmt: skip
        shapes, fresh = shell.state_dict(), extra.state_dict()
        state = {name: old.clone() if name.split(".")[-1] in self.data_sized else _grow(old, shapes[name].shape, fresh[name])
                 for name, old in self.state_dict().items()}  # fmt: skip
        model = shell.to_empty(device="cpu")
        model.load_state_dict(state)
        for name, buf in self.named_buffers():  # buffers outside the state (derived from the config)
            if name not in state:
                model.get_buffer(name).copy_(buf)
        model.meta = copy.deepcopy(self.meta)
        return model.train(self.training)

    def update(self, new: Ratings, old: Ratings | None = None, **recipe: Any) -> CollabModel:
        """This model trained on from its weights with the ``new`` ratings (UPDATE): a new model,
        its lineage in ``meta["lineage"]``; ``old``: the ratings it was trained on (by default read
        again as ``meta`` records them). ``recipe``: epochs, replay, lr_max, seed, console,
        progress. See ``models.incremental.update``."""
        require(self, UPDATE)
        return incremental.update(self, new, old, **recipe)

    def with_items(self, ratings: Ratings, min_ratings: int = 1, prior: UserPrior | None = None) -> CollabModel:
        """A copy that also holds the items of ``ratings`` it does not know with ``min_ratings``
        ratings by its users, placed by item fold-in (ITEM_FOLD_IN; ``models.incremental.add_items``)."""
        require(self, ITEM_FOLD_IN)
        return incremental.add_items(self, ratings, min_ratings, prior)

    def components(self) -> list[tuple[float, CollabModel]]:
        """(weight, part) of a score that is a weighted sum of parts; a plain kind is one part."""
        return [(1.0, self)]

    # --- cost, for the self-tuning preset and size limits -------------------------------------
    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """(work, bytes) a fit of this kind with ``config`` overrides is expected to need on data
        of ``sizes``: work in dot-bias rating-epochs (``Sizes.speed`` of them a second), bytes of
        working memory. Default: a gradient-trained kind with embedding tables and an MLP or
        metadata beside them: an epoch is 12 dot-bias epochs' work per rating (an MLP or encoders
        per example, autograd) plus the tables' updates; memory is the weights, Adam's moments
        and a working copy, plus the trainer's ~150 bytes per rating (encoded ids, shuffles).
        The factors were measured on ML-100k and Epinions (2 cores, one thread)."""
        f, epochs = cls.option(config, "n_factors"), cls.option(config, "epochs")
        cells = (sizes.users + sizes.items) * (f + 1)
        return epochs * (12.0 * sizes.n + 0.12 * cells), cells * 16 + sizes.n * 150

    @classmethod
    def sized(cls, config: dict[str, Any], sizes: Sizes, limit: float) -> tuple[dict[str, Any] | None, str]:
        """``config`` as it is when its working memory fits ``limit`` bytes, else a smaller one
        that does (with a note saying what changed), else None with the reason."""
        _, mem = cls.cost(config, sizes)
        if mem <= limit:
            return config, ""
        return None, f"skipped: its tables would need ~{mem / 1e9:.1f} GB (> {limit / 1e9:.1f} GB)"

    @classmethod
    def option(cls, config: dict[str, Any], name: str) -> Any:
        """``config[name]``, or the kind's default for it."""
        return config[name] if name in config else getattr(cls.Config(), name)

    #: parameter name -> "user" or "item" for tables indexed by user/item index; the trainer
    #: gathers and updates only the rows a batch touches (see train.loop.train_step)
    user_item_tables: ClassVar[dict[str, str]] = {}
    #: the trainer's batch size when none is given: 16x the chapter's 64, within 0.006 RMSE of
    #: it on ML-100k u1 in a sixth of the time (bench/speed.py); a model may ask for another
    default_bs: ClassVar[int] = 1024

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        # ``data_sized`` buffers take their length from the file (the model is built before it is read)
        for name in self.data_sized:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def indexed_tables(self) -> dict[str, str]:
        return self.user_item_tables

    def dot_tables(self) -> list[Tensor] | None:
        """[P, Q] or [P, Q, b_u, b_i] when the score is exactly p_u . q_i (+ b_u + b_i), squashed
        into ``config.y_range``: the trainer then runs ``core.kernels``'s compiled MSE step on these
        tables. None (the default): the trainer backpropagates through ``forward``."""
        return None


def _grow(old: Tensor, shape: torch.Size, fresh: Tensor) -> Tensor:
    """A tensor of ``shape`` holding ``old`` in its leading positions along every dimension and
    ``fresh`` (a model of the new ids alone) in the trailing ones, zero in between."""
    if old.shape == shape:
        return old.clone()
    if old.dim() != len(shape) or any(a > b for a, b in zip(old.shape, shape)):
        raise ValueError(f"cannot grow a tensor of shape {tuple(old.shape)} into {tuple(shape)}")
    out = torch.zeros(shape, dtype=old.dtype)
    out[tuple(slice(0, n) for n in old.shape)] = old
    grows = [d for d in range(old.dim()) if old.shape[d] != shape[d]]
    tail = tuple(slice(old.shape[d], None) if d in grows else slice(None) for d in range(old.dim()))
    if tuple(out[tail].shape) == tuple(fresh.shape):
        out[tail] = fresh
    return out


def dense_rows(indptr: Tensor, cols: Tensor, values: Tensor, rows: Tensor, width: int) -> Tensor:
    """(len(rows), width) dense rows of a CSR matrix, gathered without a Python loop (the CSR
    buffers of kinds that keep training rows: svdpp's N(u), EASE's x_u, knn's residuals)."""
    start, count = indptr[rows], indptr[rows + 1] - indptr[rows]
    owner = torch.repeat_interleave(torch.arange(len(rows)), count)
    flat = torch.repeat_interleave(start - (torch.cumsum(count, 0) - count), count) + torch.arange(int(count.sum()))
    out = torch.zeros(len(rows), width, dtype=values.dtype)
    out[owner, cols[flat]] = values[flat]
    return out


def extended_indptr(indptr: Tensor, rows: int) -> Tensor:
    """CSR pointers over ``rows`` rows from those of the first len(indptr) - 1: new rows are empty
    (how a grown model's CSR buffers cover its new users)."""
    return torch.cat([indptr, indptr[-1:].expand(rows + 1 - len(indptr))])


def _sweep(
    spans: list[slice], known: Callable[[slice], tuple[np.ndarray, np.ndarray, np.ndarray]], side: str,
    mu: float, other: np.ndarray, counts: np.ndarray, reg: float,
) -> np.ndarray:  # fmt: skip
    """The offsets of ``side`` ("user" or "item") given the other side's ``other``: per index,
    sum (r - mu - other) / (reg + count), the sums over every rank's shard."""
    sums = np.zeros(len(counts))
    for span in spans:
        uu, ii, r = known(span)
        index, partner = (ii, uu) if side == "item" else (uu, ii)
        sums += np.bincount(index, r - mu - other[partner], len(counts))
    return _total(sums, (len(counts),))[0] / (reg + counts)


def _total(x: np.ndarray, parts: tuple[int, ...]) -> list[np.ndarray]:
    """``x`` summed over the ranks of a data-parallel run (itself in one process), cut into ``parts``."""
    x = parallel.total(torch.from_numpy(x)).numpy()
    return np.split(x, np.cumsum(parts)[:-1])


def registry() -> dict[str, type[CollabModel]]:
    """Every registered model kind -> its class. Defining a subclass with a ``kind`` registers it;
    the first call imports every module of this package, so each kind is found where it lives."""
    if not _imported:
        package = importlib.import_module("collabkit.models")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"collabkit.models.{module.name}")
        _imported.append(True)
    return dict(CollabModel.registry)


_imported: list[bool] = []


def get_model_class(kind: str) -> type[CollabModel]:
    """The model class registered under ``kind`` (as saved in a checkpoint's config)."""
    kinds = registry()
    try:
        return kinds[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; choose one of {sorted(kinds)}") from None


def require(model: CollabModel, capability: str) -> None:
    """Raise CapabilityError, naming the kinds that have ``capability``, unless ``model`` has it."""
    if not supports(model, capability):
        having = sorted(k for k, cls in registry().items() if capability in cls.capabilities)
        if capability in type(model).capabilities:  # the kind can, this one cannot: its parts decide
            parts = ", ".join(sorted({part.kind for _, part in model.components()}))
            raise CapabilityError(
                f"this {model.kind} has no {capability!r} capability, which it takes from its members ({parts}); "
                f"kinds that do: {', '.join(k for k in having if k != model.kind)}"
            )
        raise CapabilityError(
            f"a {model.kind!r} model has no {capability!r} capability; kinds that do: {', '.join(having)}"
        )
