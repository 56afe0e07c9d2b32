"""Ensemble: a weighted average of trained models whose weights may depend on support, saved and
loaded as one model.

    score(u, i) = sum_k w_k(c_u, c_i) score_k(u, i)

c_u and c_i are the user's and the item's numbers of training ratings (their support). Without
support bins (``support_edges`` empty) each w_k is one number (``weights``: the ``best`` preset).
With bins, w_k is constant on each cell of (user bin) x (item bin), the bins cut at
``support_edges`` (counts 1, 2-5, 6-20, 21-100, > 100 for (1, 5, 20, 100)): feature-weighted
linear stacking (Sill et al. 2009) whose meta-features are the cells' indicators, a step function
of log(1 + c_u) and log(1 + c_i). Thin cells can then lean on the baseline predictor and rich ones
on the factor models; ``train.blend`` fits the cells' weights on a validation part.

A **refined** ensemble (``refine``: an (F, K + 1) matrix A and a 0/1 gate per cell) adds, in the
cells whose gate is 1 and for pairs whose user and item both have ratings, a correction linear in
the pair's meta-features m (``meta_features``: 1, then log(1 + c), the rating mean and standard
deviation of the user and of the item):

    score(u, i) += sum_k (m A)_k score_k(u, i) + (m A)_K

so a member's weight also follows how spread and how high the user's and the item's ratings are
(the cells alone see only their counts).

In the contract's terms user_repr/item_repr are the members' representations side by side (plus,
with bins, the count c_u or c_i as a last column; refined, the count, rating mean and std as the
last three) and the head splits them again, so top-N, the serving engine and ``predict`` agree; a
folded-in user's count (mean, std) is that of their answers. The
members share the ensemble's vocabularies.

What the ensemble shows of itself (similar items, reasons, the map, biases) comes from one
**representation member** (``representative``): the one the user chose (``represent``), else the
member with the largest weight among those with factors and biases, else among those with
factors, else (an ensemble of bias models, such as auto's single baseline member) among those
with biases, whose item biases are then its reasons. It is named in ``meta["representation"]``
so every output that uses it can say so.

With **time offsets** (``time_points`` > 0: ``models.timeshift``, fitted by ``set_time_offsets``
on the blend's training residuals) a prediction given the time of the rating adds the shrunk,
kernel-weighted mean residual of the user's ratings near that time; scoring without times (top-N,
the service) is the blend alone.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.core.loop import History
from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models import timeshift
from collabkit.models.base import (
    BIASES,
    FACTORS,
    FOLD_IN,
    ITEM_FOLD_IN,
    RATINGS,
    SCORE_CELLS,
    CollabModel,
    Scorer,
    Sizes,
    get_model_class,
    require,
)
from collabkit.models.config import ConfigError, ModelConfig
from collabkit.models.linear import UserPrior

#: the count bins' upper ends a support-aware blend uses by default: 1, 2-5, 6-20, 21-100, > 100
SUPPORT_EDGES = (1, 5, 20, 100)
#: meta-features of a refined ensemble (``meta_features``)
N_META = 7
#: config fields a member name leaves out (set from the data, or too long to read)
_UNNAMED = ("seed", "y_range", "clip", "levels", "user_features", "item_features")


@dataclass
class EnsembleConfig(ModelConfig):
    n_factors: int = field(default=0, metadata={"min": 0, "max": 0})  # not used: each member has its own
    members: tuple[dict, ...] = ()  # {"kind": ..., "config": {...}} per member, in order
    # w_k, one per member (with bins: their mean over the blend's fit)
    weights: tuple[float, ...] = field(default=(), metadata={"min": 0})
    # count bins' upper ends; () = one weight per member
    support_edges: tuple[int, ...] = field(default=(), metadata={"min": 1, "increasing": True})
    # [user bin][item bin][member] -> w_k; () without bins
    cell_weights: tuple[tuple[tuple[float, ...], ...], ...] = ()
    # the member the ensemble is shown by; -1: chosen (``representative``)
    represent: int = field(default=-1, metadata={"min": -1})
    # [meta-feature][member, then offset] -> the refinement's coefficients; () without one
    refine: tuple[tuple[float, ...], ...] = ()
    # [user bin][item bin] -> 1.0 where the refinement applies
    refine_cells: tuple[tuple[float, ...], ...] = ()
    # (user, second) points of training residuals the time offsets weigh (``models.timeshift``); 0: none
    time_points: int = field(default=0, metadata={"min": 0})
    # their kernel width in seconds (> 0 with time_reg: fit them whenever fitted on timed ratings)
    time_scale: float = field(default=0.0, metadata={"min": 0})
    # their shrinkage: offset = weighted residual sum / (weight + time_reg)
    time_reg: float = field(default=0.0, metadata={"min": 0})
    # the points' times are seconds after this epoch second
    time_origin: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.members_of()  # every member a known kind with a config its schema accepts
        if len(self.weights) != len(self.members):
            raise ConfigError("weights", f"must hold one weight per member ({len(self.members)}), got {len(self.weights)}")
        if self.represent >= len(self.members):
            raise ConfigError("represent", f"must be -1 or a member index < {len(self.members)}, got {self.represent}")

    def members_of(self) -> list[tuple[type[CollabModel], ModelConfig]]:
        """(kind class, config) of each member, checked."""
        out = []
        for k, m in enumerate(self.members):
            if not isinstance(m, dict) or set(m) != {"kind", "config"}:
                raise ConfigError(f"members[{k}]", "must be {'kind': ..., 'config': {...}}")
            cls = get_model_class(m["kind"])
            out.append((cls, cls.Config.from_json(m["config"])))
        return out


class Ensemble(CollabModel):
    """Weighted average of member models (module docstring); build one with ``Ensemble.of``."""

    kind = "ensemble"
    Config = EnsembleConfig
    wants_y_range = False
    # what the members allow (set per instance: fold-ins and ratings if every member has them,
    # factors and biases if the representation member has them)
    capabilities = frozenset({FOLD_IN, ITEM_FOLD_IN, FACTORS, RATINGS, BIASES})
    user_item_tables: ClassVar[dict[str, str]] = {}  # members are trained on their own, never here

    def __init__(
        self,
        config: EnsembleConfig,
        users: Vocab,
        items: Vocab,
        members: list[CollabModel] | None = None,
    ) -> None:
        super().__init__(config, users, items)
        if len(config.weights) != len(config.members):
            raise ValueError(
                f"ensemble: {len(config.members)} members but {len(config.weights)} weights"
            )
        if members is None:  # loading: empty members, the weights come from the saved state
            members = []
            for m in config.members:
                cls = get_model_class(m["kind"])
                members.append(cls(cls.Config.from_json(m["config"]), users, items))
        self.members = nn.ModuleList(members)
        probe = torch.zeros(1, dtype=torch.int64)
        with torch.no_grad():  # representation widths, to split the concatenation in head()
            self._widths = [
                (m.user_repr(probe).shape[1], m.item_repr(probe).shape[1]) for m in members
            ]
        self.supported = bool(config.support_edges)
        self.refined = bool(config.refine)
        self._side = 3 if self.refined else 1  # support columns of a representation: count (mean, std)
        if self.supported:
            self._set_cells(config)
            self.register_buffer("user_count", torch.zeros(len(users)))  # training ratings per user
            self.register_buffer("item_count", torch.zeros(len(items)))  # ... and per item
        if self.refined:
            self._set_refinement(config)
            self.register_buffer("user_moments", torch.zeros(len(users), 2))  # rating mean, std per user
            self.register_buffer("item_moments", torch.zeros(len(items), 2))  # ... and per item
        if config.time_points:
            self.register_buffer("time_keys", torch.zeros(config.time_points, dtype=torch.int64))  # sorted
            self.register_buffer("time_sums", torch.zeros(config.time_points))  # residual sum per point
            self.register_buffer("time_counts", torch.zeros(config.time_points))  # ratings per point
        self._set_capabilities()

    def _set_cells(self, config: EnsembleConfig) -> None:
        cells = torch.tensor(config.cell_weights, dtype=torch.float32)
        n_bins, n = len(config.support_edges) + 1, len(config.members)
        if cells.shape != (n_bins, n_bins, n):
            raise ValueError(
                f"ensemble: cell_weights must be {n_bins} x {n_bins} x {n} (user bins x item "
                f"bins x members), not {tuple(cells.shape)}"
            )
        self.register_buffer("edges", torch.tensor(config.support_edges, dtype=torch.float32), persistent=False)
        self.register_buffer("cells", cells, persistent=False)

    def _set_refinement(self, config: EnsembleConfig) -> None:
        coef = torch.tensor(config.refine, dtype=torch.float32)
        gate = torch.tensor(config.refine_cells, dtype=torch.float32)
        n_bins, n = len(config.support_edges) + 1, len(config.members)
        if not self.supported or coef.shape != (N_META, n + 1) or gate.shape != (n_bins, n_bins):
            raise ValueError(
                f"ensemble: a refinement needs support bins, refine {N_META} x {n + 1} (meta-features x "
                f"members and offset) and refine_cells {n_bins} x {n_bins}, not {tuple(coef.shape)} and "
                f"{tuple(gate.shape)}"
            )
        self.register_buffer("refine", coef, persistent=False)
        self.register_buffer("gate", gate, persistent=False)

    def _set_capabilities(self) -> None:
        every = frozenset.intersection(frozenset({FOLD_IN, ITEM_FOLD_IN, RATINGS}), *(m.capabilities for m in self.members))
        rep = self.representative()
        shown = frozenset() if rep < 0 else self.members[rep].capabilities & {FACTORS, BIASES}
        self.capabilities = every | shown

    @classmethod
    def of(
        cls,
        members: list[CollabModel],
        weights: list[float],
        *,
        represent: int = -1,
        support: tuple[tuple[int, ...], np.ndarray] | None = None,
        train: Ratings | None = None,
        fallback: CollabModel | None = None,
        refine: tuple[np.ndarray, np.ndarray] | None = None,
        times: tuple[float, float] = (0.0, 0.0),
    ) -> Ensemble:
        """An ensemble of trained ``members`` (same users and items, in the same order).

        ``support`` = (edges, cell weights (bins, bins, members)) makes the weights depend on
        support; ``train``, the members' training ratings, gives every user's and item's count.
        ``represent``: the member that shows the ensemble (-1: ``representative``'s rule).
        ``fallback``: a rating model of the same ids whose baseline predictor scores the pairs with
        an unknown side (default: the first member's). ``refine`` = (A (F, members + 1), gate
        (bins, bins)) adds the refinement (module docstring); it needs ``support``. ``times`` = (kernel
        width in seconds, shrinkage), both > 0, gives it time offsets, fitted on ``train`` when it
        has timestamps (and by every later ``fit``).
        """
        first = members[0]
        for m in [*members[1:], *([fallback] if fallback is not None else [])]:
            if list(m.users.ids) != list(first.users.ids) or list(m.items.ids) != list(
                first.items.ids
            ):
                raise ValueError(
                    "ensemble members must be built from the same training data (same ids)"
                )
        if not -1 <= represent < len(members):
            raise ValueError(f"ensemble: represent must be -1 or a member index < {len(members)}")
        edges, cells = support if support is not None else ((), np.zeros(0))
        if support is not None and train is None:
            raise ValueError("a support-aware ensemble needs its training ratings (train=) to count support")
        config = EnsembleConfig(
            members=tuple({"kind": m.kind, "config": m.config.to_json()} for m in members),
            weights=tuple(float(w) for w in weights),
            support_edges=tuple(int(e) for e in edges),
            cell_weights=np.asarray(cells, dtype=np.float64).tolist() if support is not None else (),
            represent=represent,
            refine=np.asarray(refine[0], dtype=np.float64).tolist() if refine is not None else (),
            refine_cells=np.asarray(refine[1], dtype=np.float64).tolist() if refine is not None else (),
            time_scale=float(times[0]),
            time_reg=float(times[1]),
            seed=first.config.seed,
        )
        model = cls(config, first.users, first.items, members)
        model.meta = dict(first.meta)
        model.meta.pop("spec", None)
        source = first if fallback is None else fallback
        model.baseline_user.copy_(source.baseline_user)
        model.baseline_item.copy_(source.baseline_item)
        if support is not None:
            model._count_support(train)
        if train is not None:
            model._fit_times(train)
        model.meta["representation"] = model.representation()
        return model

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """Its members' fits one after another: their work adds up, and so does their memory
        (every member is kept)."""
        parts = [get_model_class(m["kind"]).cost(m["config"], sizes) for m in cls.option(config, "members")]
        return sum(w for w, _ in parts), sum(b for _, b in parts)

    def _fit(self, train: Ratings, valid: Ratings | None, console: object, progress: bool) -> History:
        """Train every member on ``train`` (each with its own recipe); the History holds every
        member's rows (epochs, sweeps) tagged with its name (``member``; one row with its time for a
        member fitted in closed form). The weights stay as they are; support counts are re-counted."""
        history = History()
        for k, member in enumerate(self.members):
            h = member.fit(train, valid, console=console, progress=progress)
            name = self.member_name(k)
            history.rows.extend({"member": name, **row} for row in h.rows or [{"time": h.fit_seconds}])
            history.fit_seconds += h.fit_seconds
        if self.supported:
            self._count_support(train)
        self._fit_times(train)
        return history

    def _fit_times(self, train: Ratings) -> None:
        """Time offsets of the configured width and shrinkage, fitted on the blend's residuals on
        ``train`` (none without them or without timestamps: earlier points described another fit)."""
        c = self.config
        if c.time_scale > 0 and c.time_reg > 0 and train.has_timestamps:
            self.set_time_offsets(*timeshift.residual_points(self, train), c.time_scale, c.time_reg)
        elif c.time_points:
            self.set_time_offsets(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), 0, c.time_scale, c.time_reg)

    def _count_support(self, train: Ratings) -> None:
        """Every user's and item's count (and, refined, rating mean and std) in ``train``."""
        cu, ci = rating_counts(self.users, self.items, train)
        self.user_count.copy_(torch.from_numpy(cu))
        self.item_count.copy_(torch.from_numpy(ci))
        if self.refined:
            mu, mi = rating_moments(self.users, self.items, train)
            self.user_moments.copy_(torch.from_numpy(mu))
            self.item_moments.copy_(torch.from_numpy(mi))

    # --- the representation member ---------------------------------------------------------------
    def representative(self) -> int:
        """Index of the member the ensemble is shown by (module docstring); -1 when none has factors
        or biases."""
        if self.config.represent >= 0:
            return self.config.represent
        for wanted in ({FACTORS, BIASES}, {FACTORS}, {BIASES}):
            having = [k for k, m in enumerate(self.members) if wanted <= m.capabilities]
            if having:
                return max(having, key=lambda k: (self.config.weights[k], -k))
        return -1

    def member_name(self, k: int) -> str:
        """Member ``k`` as a spec: its kind and the options that differ from the kind's defaults."""
        m = self.members[k]
        defaults = asdict(type(m.config)())
        options = {
            f.name: getattr(m.config, f.name) for f in fields(m.config)
            if f.name not in _UNNAMED and getattr(m.config, f.name) != defaults.get(f.name)
        }  # fmt: skip
        text = ", ".join(f"{name}={v!r}" for name, v in options.items())
        return f"{m.kind}({text})" if text else m.kind

    def representation(self) -> str:
        """What the ensemble's factors and biases are: 'member k: <spec> (weight w)', or ''."""
        k = self.representative()
        if k < 0:
            return ""
        shown = "factor" if FACTORS in self.members[k].capabilities else "bias"
        how = "chosen" if self.config.represent >= 0 else f"the {shown} model with the largest weight"
        return f"member {k + 1} of {len(self.members)}, {self.member_name(k)} (weight {self.config.weights[k]:.2f}; {how})"

    @torch.no_grad()
    def factors(self, side: str = "item") -> Tensor:
        """The representation member's factors."""
        require(self, FACTORS)
        return self.members[self.representative()].factors(side)

    @torch.no_grad()
    def biases(self, side: str = "item") -> Tensor:
        """The representation member's biases."""
        require(self, BIASES)
        return self.members[self.representative()].biases(side)

    # --- scoring -----------------------------------------------------------------------------------
    def weights_at(self, user_count: Tensor, item_count: Tensor) -> Tensor:
        """(..., K) member weights for support counts (broadcast against each other)."""
        if not self.supported:
            w = torch.tensor(self.config.weights, dtype=torch.float32)
            return w.expand(*torch.broadcast_shapes(user_count.shape, item_count.shape), len(w))
        bu = torch.bucketize(user_count.to(self.edges.dtype).contiguous(), self.edges)
        bi = torch.bucketize(item_count.to(self.edges.dtype).contiguous(), self.edges)
        return self.cells[bu, bi]

    def user_repr(self, u: Tensor) -> Tensor:
        parts = [m.user_repr(u) for m in self.members]
        if self.supported:
            parts.append(self._support("user", u).to(parts[0].dtype))
        return torch.cat(parts, 1)

    def item_repr(self, i: Tensor) -> Tensor:
        parts = [m.item_repr(i) for m in self.members]
        if self.supported:
            parts.append(self._support("item", i).to(parts[0].dtype))
        return torch.cat(parts, 1)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        w, offset = self._weights(ur[..., -self._side :], ir[..., -self._side :])
        out, su, si = offset, 0, 0
        for k, (m, (du, di)) in enumerate(zip(self.members, self._widths)):
            out = out + w[k] * m.head(ur[..., su : su + du], ir[..., si : si + di])
            su, si = su + du, si + di
        return out

    def _score(self, u: Tensor, i: Tensor) -> Tensor:
        """Each member's own scoring, weighted (the ensemble's baseline covers unknown ids)."""
        w, offset = list(self.config.weights), 0.0
        if self.supported:
            w, offset = self._weights(self._support("user", u), self._support("item", i))
        return offset + sum(wk * m.score(u, i) for wk, m in zip(w, self.members))

    def set_time_offsets(
        self, keys: np.ndarray, sums: np.ndarray, counts: np.ndarray, origin: int, scale: float, reg: float
    ) -> None:
        """Give the ensemble the residual points (sorted ``keys``, ``sums``, ``counts`` and
        ``origin``: ``models.timeshift.residual_points``) its time offsets weigh with kernel width
        ``scale`` and shrinkage ``reg``; no points drop the buffers, as a config without points
        has none to load."""
        self.config = replace(self.config, time_points=len(keys), time_scale=float(scale),
                              time_reg=float(reg), time_origin=int(origin))  # fmt: skip
        for name, values, dtype in (("time_keys", keys, np.int64), ("time_sums", sums, np.float32),
                                    ("time_counts", counts, np.float32)):  # fmt: skip
            if len(keys):
                self.register_buffer(name, torch.from_numpy(np.asarray(values, dtype=dtype)))
            else:
                self._buffers.pop(name, None)

    def time_offsets(self, u: Tensor, timestamps: np.ndarray) -> np.ndarray | None:
        c = self.config
        if not c.time_points:
            return None
        if len(timestamps) != len(u):
            raise ValueError(f"{len(timestamps)} timestamps for {len(u)} pairs")
        return timeshift.offsets(self.time_keys.numpy(), self.time_sums.numpy(), self.time_counts.numpy(),
                                 c.time_origin, c.time_scale, c.time_reg, u.numpy(), np.asarray(timestamps))  # fmt: skip

    def _weights(self, user_side: Tensor, item_side: Tensor) -> tuple[list[Tensor | float], Tensor | float]:
        """(member k's weight for each pair, the pairs' offset) from the sides' support columns
        (..., 1 or 3): count (mean, std); numbers without support bins."""
        if not self.supported:
            return list(self.config.weights), 0.0
        w = self.weights_at(user_side[..., 0], item_side[..., 0]).to(user_side.dtype)
        if not self.refined:
            return list(w.unbind(-1)), 0.0
        corr = meta_features(user_side, item_side) @ self.refine.to(user_side.dtype)  # (..., K + 1)
        corr = corr * self._gate(user_side[..., 0], item_side[..., 0]).unsqueeze(-1)
        return list((w + corr[..., :-1]).unbind(-1)), corr[..., -1]

    def _gate(self, user_count: Tensor, item_count: Tensor) -> Tensor:
        """1 where the refinement applies: its cell's gate, and both sides have ratings."""
        bu = torch.bucketize(user_count.to(self.edges.dtype).contiguous(), self.edges)
        bi = torch.bucketize(item_count.to(self.edges.dtype).contiguous(), self.edges)
        return (self.gate[bu, bi] * ((user_count > 0) & (item_count > 0))).to(user_count.dtype)

    def _support(self, side: str, idx: Tensor) -> Tensor:
        """(n, 1) training ratings of each user or item (``side``), or (n, 3) with their rating
        mean and std when refined (zeros for an unknown index, -1)."""
        user, at = side == "user", idx.clamp(min=0)
        out = (self.user_count if user else self.item_count)[at].unsqueeze(1)
        if self.refined:
            out = torch.cat([out, (self.user_moments if user else self.item_moments)[at]], 1)
        return torch.where((idx >= 0).unsqueeze(1), out, 0.0)

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """The members' scorers, each prepared once, applied to their slices and weighted: by
        one number each, or by the cell of the user's count and each item's."""
        parts, start = [], 0
        for m, (du, _) in zip(self.members, self._widths):
            parts.append((m.scorer(items), slice(start, start + du)))
            start += du
        if not self.supported:
            weights = self.config.weights

            @torch.no_grad()
            def rank(ur: Tensor) -> Tensor:
                return sum(w * s.finish(s.rank(ur[:, cols])) for w, (s, cols) in zip(weights, parts))

            return Scorer(rank)
        if self.refined:
            return self._refined_scorer(parts, items)
        counts = self.item_count if items is None else self.item_count[items]
        item_bins = torch.bucketize(counts, self.edges)  # (N,)
        by_item = self.cells[:, item_bins, :].permute(2, 0, 1).contiguous()  # (K, user bins, N)
        # users a member scores at a time: (users, N) blocks of about SCORE_CELLS stay in cache
        # (4x larger blocks ran 2.5x slower on Epinions)
        step = max(1, SCORE_CELLS // max(1, len(item_bins)))

        @torch.no_grad()
        def rank_by_support(ur: Tensor) -> Tensor:
            user_bins = torch.bucketize(ur[:, -1].to(self.edges.dtype).contiguous(), self.edges)  # (U,)
            out = torch.empty(len(ur), len(item_bins), dtype=ur.dtype)
            for start in range(0, len(ur), step):
                x, bins = ur[start : start + step], user_bins[start : start + step]
                acc = out[start : start + step].zero_()
                for k, (s, cols) in enumerate(parts):  # acc += scores_k * w_k(user bin, item bin)
                    acc.addcmul_(s.finish(s.rank(x[:, cols])), by_item[k].index_select(0, bins))
            return out

        return Scorer(rank_by_support)

    def _refined_scorer(self, parts: list[tuple[Scorer, slice]], items: Tensor | None) -> Scorer:
        """The members' scorers weighted pair by pair as ``_weights`` does, with the refinement's
        item part (m A over the item's meta-features) prepared once and the user's per block:
        w_k(u, i) = cells_k(bins) + gate(bins) (user_k(u) + item_k(i))."""
        item_side = self._support("item", self.catalogue(items))  # (N, 3)
        item_bins = torch.bucketize(item_side[:, 0].contiguous(), self.edges)  # (N,)
        by_item = self.cells[:, item_bins, :].permute(2, 0, 1).contiguous()  # (K, user bins, N)
        gate_by_item = self.gate[:, item_bins] * (item_side[:, 0] > 0)  # (user bins, N)
        item_part = side_features(item_side) @ self.refine[4:]  # (N, K + 1)
        step = max(1, SCORE_CELLS // max(1, len(item_bins)))  # (users, N) blocks, as rank_by_support

        @torch.no_grad()
        def rank_refined(ur: Tensor) -> Tensor:
            side = ur[:, -3:].to(torch.float32)
            user_part = torch.cat([torch.ones_like(side[:, :1]), side_features(side)], 1) @ self.refine[:4]  # (U, K + 1)
            user_bins = torch.bucketize(side[:, 0].contiguous(), self.edges)
            out = torch.empty(len(ur), len(item_bins), dtype=ur.dtype)
            for start in range(0, len(ur), step):
                block = slice(start, start + step)
                x, bins, up = ur[block], user_bins[block], user_part[block]
                gate = gate_by_item.index_select(0, bins) * (side[block, :1] > 0)  # (B, N)
                acc = out[block]
                torch.mul(gate, up[:, -1:] + item_part[:, -1], out=acc)  # the offset
                for k, (s, cols) in enumerate(parts):
                    w = by_item[k].index_select(0, bins) + gate * (up[:, k : k + 1] + item_part[:, k])
                    acc.addcmul_(s.finish(s.rank(x[:, cols])), w)
            return out

        return Scorer(rank_refined)

    # --- fold-in of users and of items: each member folds the same answers in its own space -------
    def components(self) -> list[tuple[float, CollabModel]]:
        return list(zip(self.config.weights, self.members))

    @torch.no_grad()
    def user_prior(self, ratings: Ratings | None = None, noise_var: float | None = None) -> UserPrior:
        """Each member's own prior, side by side (``UserPrior.parts``); with support bins the
        average-taste user has no ratings (count 0)."""
        return self._prior("user", ratings, noise_var)

    @torch.no_grad()
    def item_prior(self, ratings: Ratings | None = None, noise_var: float | None = None) -> UserPrior:
        """Each member's own item prior, side by side; with support bins a new item starts with no
        ratings (count 0)."""
        return self._prior("item", ratings, noise_var)

    @property
    def fold_in_per_user(self) -> bool:  # type: ignore[override]
        """Per user when every member's fold-in is."""
        return all(m.fold_in_per_user for m in self.members)

    @torch.no_grad()
    def fold_in(self, items: Tensor, values: Tensor, prior: UserPrior | None = None) -> Tensor:
        """The members' fold-ins side by side; with support bins, then the number of answers."""
        return self._fold_in("user", items, values, prior)

    @torch.no_grad()
    def fold_in_items(self, users: Tensor, values: Tensor, prior: UserPrior | None = None) -> Tensor:
        """The members' item fold-ins side by side; with support bins, then the number of raters."""
        return self._fold_in("item", users, values, prior)

    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]:
        raise TypeError("an ensemble is not linear in its users: take each of its components()")

    def item_linear(self, users: Tensor) -> tuple[Tensor, Tensor]:
        raise TypeError("an ensemble is not linear in its items: take each of its components()")

    def _prior(self, side: str, ratings: Ratings | None, noise_var: float | None) -> UserPrior:
        """The members' priors of ``side`` ("user" or "item") side by side; with support bins a
        count column that starts at 0."""
        user = side == "user"
        require(self, FOLD_IN if user else ITEM_FOLD_IN)
        prior = UserPrior.joined([(m.user_prior if user else m.item_prior)(ratings, noise_var) for m in self.members])
        if self.supported:
            zero = prior.mean.new_zeros(self._side)
            prior.mean, prior.precision = torch.cat([prior.mean, zero]), torch.cat([prior.precision, zero + 1])
        return prior

    def _fold_in(self, side: str, answered: Tensor, values: Tensor, prior: UserPrior | None) -> Tensor:
        """New rows of ``side`` from their answers: every member's fold-in under its part of
        ``prior`` (by default the side's own), side by side; with support bins then the number of
        answers (indices >= 0 in ``answered``, padding is -1)."""
        user = side == "user"
        require(self, FOLD_IN if user else ITEM_FOLD_IN)
        prior = prior or self._prior(side, None, None)
        parts = [(m.fold_in if user else m.fold_in_items)(answered, values, p) for m, p in zip(self.members, prior.parts)]
        if self.supported:
            parts.append(_answer_support(answered, values, self.refined).to(parts[0].dtype))
        return torch.cat(parts, -1)

    # --- growing: member by member ----------------------------------------------------------------
    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        """Each member's slice of the representation, written by the member (with support bins
        the last column is the count)."""
        start = 0
        for m, widths in zip(self.members, self._widths):
            width = widths[side == "item"]
            m.set_reprs(side, index, reprs[:, start : start + width])
            start += width
        if self.supported:
            (self.user_count if side == "user" else self.item_count)[index] = reprs[:, start].to(torch.float32)
        if self.refined:
            moments = self.user_moments if side == "user" else self.item_moments
            moments[index] = reprs[:, start + 1 : start + 3].to(torch.float32)

    @torch.no_grad()
    def grown(self, users: Vocab, items: Vocab) -> Ensemble:
        """Every member grown its own way, weighted as before; new ids start with mu alone and,
        with support bins, no ratings."""
        model = Ensemble(copy.deepcopy(self.config), users, items, [m.grown(users, items) for m in self.members])
        model.baseline_user.zero_()[: len(self.users)] = self.baseline_user
        model.baseline_item.zero_()[: len(self.items)] = self.baseline_item
        if self.supported:
            model.user_count.zero_()[: len(self.users)] = self.user_count
            model.item_count.zero_()[: len(self.items)] = self.item_count
        if self.refined:
            model.user_moments.zero_()[: len(self.users)] = self.user_moments
            model.item_moments.zero_()[: len(self.items)] = self.item_moments
        if self.config.time_points:  # keys hold user indices, which growing keeps
            model.time_keys.copy_(self.time_keys)
            model.time_sums.copy_(self.time_sums)
            model.time_counts.copy_(self.time_counts)
        model.meta = copy.deepcopy(self.meta)
        return model


def rating_counts(users: Vocab, items: Vocab, ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """(n_users,), (n_items,) float32 numbers of ``ratings`` per user and item of the vocabularies."""
    u = users.lookup(ratings.frame["user"], strict=False)
    i = items.lookup(ratings.frame["item"], strict=False)
    keep = (u >= 0) & (i >= 0)
    cu = np.bincount(u[keep], minlength=len(users)).astype(np.float32)
    ci = np.bincount(i[keep], minlength=len(items)).astype(np.float32)
    return cu, ci


def rating_moments(users: Vocab, items: Vocab, ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, 2), (n_items, 2) float32 rating mean and standard deviation (population) of
    ``ratings`` per user and item of the vocabularies (0, 0 for one without ratings)."""
    u = users.lookup(ratings.frame["user"], strict=False)
    i = items.lookup(ratings.frame["item"], strict=False)
    keep = (u >= 0) & (i >= 0)
    r = ratings.frame["rating"].to_numpy(np.float64)[keep]
    return moments_of(u[keep], r, len(users)), moments_of(i[keep], r, len(items))


def moments_of(idx: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    """(n, 2) float32 mean and population std of the ratings ``r`` of each index 0..n-1 in ``idx``."""
    count = np.maximum(np.bincount(idx, minlength=n), 1)
    mean = np.bincount(idx, r, n) / count
    var = np.maximum(np.bincount(idx, r * r, n) / count - mean**2, 0.0)
    return np.stack([mean, np.sqrt(var)], 1).astype(np.float32)


def meta_features(user_side: Tensor, item_side: Tensor) -> Tensor:
    """(..., N_META) meta-features of pairs from their sides' (count, mean, std) (..., 3):
    1, log(1 + c_u), mean_u, std_u, log(1 + c_i), mean_i, std_i."""
    user_side, item_side = torch.broadcast_tensors(user_side, item_side)
    one = torch.ones_like(user_side[..., :1])
    return torch.cat([one, side_features(user_side), side_features(item_side)], -1)


def side_features(side: Tensor) -> Tensor:
    """(..., 3) one side's part of ``meta_features``: log(1 + count), mean, std."""
    return torch.cat([torch.log1p(side[..., :1]), side[..., 1:]], -1)


def _answer_support(answered: Tensor, values: Tensor, moments: bool) -> Tensor:
    """(n, 1) number of answers per row (indices >= 0; padding -1), or (n, 3) with their mean and
    std (population) when ``moments``: a folded-in user's or item's support."""
    mask = (answered >= 0).to(values.dtype)
    count = mask.sum(-1, keepdim=True)
    if not moments:
        return count
    mean = (values * mask).sum(-1, keepdim=True) / count.clamp(min=1)
    var = (((values - mean) * mask) ** 2).sum(-1, keepdim=True) / count.clamp(min=1)
    return torch.cat([count, mean, var.sqrt()], -1)


def support_bins(counts: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    """The bin of each count: 0 for <= edges[0], j for edges[j-1] < count <= edges[j]."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(counts, dtype=np.float64), side="left")

