"""Ensemble: a fixed weighted average of trained models, saved and loaded as one model.

    score(u, i) = sum_k w_k score_k(u, i)

Models that err differently (a Bayesian factorisation and an autoencoder, say) average to a lower
error than either. In the contract's terms user_repr/item_repr are the members' representations
side by side and the head splits them again; the members share the ensemble's vocabularies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from collabkit.core.loop import History
from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models.base import (
    BIASES,
    FACTORS,
    FOLD_IN,
    ITEM_FOLD_IN,
    RATINGS,
    CollabModel,
    Scorer,
    get_model_class,
    require,
)
from collabkit.models.config import ConfigError, ModelConfig
from collabkit.models.linear import UserPrior


@dataclass
class EnsembleConfig(ModelConfig):
    n_factors: int = field(default=0, metadata={"min": 0, "max": 0})  # not used: each member has its own
    members: tuple[dict, ...] = ()  # {"kind": ..., "config": {...}} per member, in order
    weights: tuple[float, ...] = field(default=(), metadata={"min": 0})  # w_k, one per member

    def __post_init__(self) -> None:
        super().__post_init__()
        self.members_of()  # every member a known kind with a config its schema accepts
        if len(self.weights) != len(self.members):
            raise ConfigError("weights", f"must hold one weight per member ({len(self.members)}), got {len(self.weights)}")

    def members_of(self) -> list[tuple[type[CollabModel], ModelConfig]]:
        """(kind class, config) of each member, checked."""
        out = []
        for k, m in enumerate(self.members):
            if set(m) != {"kind", "config"}:
                raise ConfigError(f"members[{k}]", "must be {'kind': ..., 'config': {...}}")
            cls = get_model_class(m["kind"])
            out.append((cls, cls.Config.from_json(m["config"])))
        return out


class Ensemble(CollabModel):
    """Weighted average of member models (module docstring); build one with ``Ensemble.of``."""

    kind = "ensemble"
    Config = EnsembleConfig
    wants_y_range = False
    # what every member can do (set per instance)
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
        self.capabilities = frozenset.intersection(
            type(self).capabilities, *(m.capabilities for m in members)
        )
        probe = torch.zeros(1, dtype=torch.int64)
        with torch.no_grad():  # representation widths, to split the concatenation in head()
            self._widths = [
                (m.user_repr(probe).shape[1], m.item_repr(probe).shape[1]) for m in members
            ]

    @classmethod
    def of(cls, members: list[CollabModel], weights: list[float]) -> Ensemble:
        """An ensemble of trained ``members`` (same users and items, in the same order)."""
        first = members[0]
        for m in members[1:]:
            if list(m.users.ids) != list(first.users.ids) or list(m.items.ids) != list(
                first.items.ids
            ):
                raise ValueError(
                    "ensemble members must be built from the same training data (same ids)"
                )
        config = EnsembleConfig(
            members=tuple({"kind": m.kind, "config": m.config.to_json()} for m in members),
            weights=tuple(float(w) for w in weights),
            seed=first.config.seed,
        )
        model = cls(config, first.users, first.items, members)
        model.meta = dict(first.meta)
        model.baseline_user.copy_(first.baseline_user)
        model.baseline_item.copy_(first.baseline_item)
        return model

    def _fit(self, train: Ratings, valid: Ratings | None, console: object, progress: bool) -> History:
        """Train every member on ``train`` (each with its own recipe); one History row per member."""
        history = History()
        for k, member in enumerate(self.members):
            h = member.fit(train, valid, console=console, progress=progress)
            row = {"epoch": k, "train_loss": h.final.get("train_loss", float("nan"))}
            if "valid_loss" in h.final:
                row["valid_loss"] = h.final["valid_loss"]
            history.rows.append({**row, "time": h.fit_seconds})
            history.fit_seconds += h.fit_seconds
        return history

    @torch.no_grad()
    def factors(self, side: str = "item") -> Tensor:
        """Members' unit-length factors side by side, member k scaled by sqrt(w_k / sum w): the
        cosine of two such rows is the weighted mean of the members' cosines."""
        require(self, FACTORS)
        total = sum(self.config.weights)
        parts = [
            nn.functional.normalize(m.factors(side), dim=1) * (w / total) ** 0.5
            for m, w in zip(self.members, self.config.weights)
        ]
        return torch.cat(parts, 1)

    def user_repr(self, u: Tensor) -> Tensor:
        return torch.cat([m.user_repr(u) for m in self.members], 1)

    def item_repr(self, i: Tensor) -> Tensor:
        return torch.cat([m.item_repr(i) for m in self.members], 1)

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        out, su, si = 0.0, 0, 0
        for m, w, (du, di) in zip(self.members, self.config.weights, self._widths):
            out = out + w * m.head(ur[..., su : su + du], ir[..., si : si + di])
            su, si = su + du, si + di
        return out

    def _score(self, u: Tensor, i: Tensor) -> Tensor:
        """Each member's own scoring, averaged (the ensemble's baseline covers unknown ids)."""
        return sum(w * m.score(u, i) for m, w in zip(self.members, self.config.weights))

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """The members' scorers, each prepared once, applied to their slices and averaged."""
        parts, start = [], 0
        for m, w, (du, _) in zip(self.members, self.config.weights, self._widths):
            parts.append((w, m.scorer(items), slice(start, start + du)))
            start += du

        @torch.no_grad()
        def rank(ur: Tensor) -> Tensor:
            return sum(w * s.finish(s.rank(ur[:, cols])) for w, s, cols in parts)

        return Scorer(rank)

    # --- fold-in: each member folds the same answers in its own space ---------------------------
    def components(self) -> list[tuple[float, CollabModel]]:
        return list(zip(self.config.weights, self.members))

    @torch.no_grad()
    def user_prior(self, ratings: Ratings | None = None, noise_var: float | None = None) -> UserPrior:
        """Each member's own prior, side by side (``UserPrior.parts``)."""
        require(self, FOLD_IN)
        return UserPrior.joined([m.user_prior(ratings, noise_var) for m in self.members])

    @torch.no_grad()
    def fold_in(self, items: Tensor, values: Tensor, prior: UserPrior | None = None) -> Tensor:
        require(self, FOLD_IN)
        prior = prior or self.user_prior()
        parts = zip(self.members, prior.parts)
        return torch.cat([m.fold_in(items, values, p) for m, p in parts], -1)

    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]:
        raise TypeError("an ensemble is not linear in its users: take each of its components()")

    # --- item fold-in and growing: member by member ---------------------------------------------
    @torch.no_grad()
    def item_prior(self, ratings: Ratings | None = None, noise_var: float | None = None) -> UserPrior:
        """Each member's own item prior, side by side (``UserPrior.parts``)."""
        require(self, ITEM_FOLD_IN)
        return UserPrior.joined([m.item_prior(ratings, noise_var) for m in self.members])

    @torch.no_grad()
    def fold_in_items(self, users: Tensor, values: Tensor, prior: UserPrior | None = None) -> Tensor:
        require(self, ITEM_FOLD_IN)
        prior = prior or self.item_prior()
        return torch.cat([m.fold_in_items(users, values, p) for m, p in zip(self.members, prior.parts)], -1)

    def item_linear(self, users: Tensor) -> tuple[Tensor, Tensor]:
        raise TypeError("an ensemble is not linear in its items: take each of its components()")

    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        """Each member's slice of the representation, written by the member."""
        start = 0
        for m, widths in zip(self.members, self._widths):
            width = widths[side == "item"]
            m.set_reprs(side, index, reprs[:, start : start + width])
            start += width

    @torch.no_grad()
    def grown(self, users: Vocab, items: Vocab) -> Ensemble:
        """Every member grown its own way, then averaged as before."""
        model = Ensemble.of([m.grown(users, items) for m in self.members], list(self.config.weights))
        model.config = copy.deepcopy(self.config)
        model.baseline_user.zero_()[: len(self.users)] = self.baseline_user  # new ids: mu alone
        model.baseline_item.zero_()[: len(self.items)] = self.baseline_item
        model.meta = copy.deepcopy(self.meta)
        return model

    @torch.no_grad()
    def biases(self, side: str = "item") -> Tensor:
        """The members' biases, weighted as their scores are."""
        require(self, BIASES)
        return sum(w * m.biases(side) for m, w in zip(self.members, self.config.weights))
