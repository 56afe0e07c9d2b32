"""The ground-truth world: every user's true rating of every item, who is active, who joins, who leaves.

True tastes are fitted from real data (a factor model's predictions, ``WorldConfig.taste_spec``)
plus fixed per-(user, item) noise, clipped to the rating scale. A small enthusiastic minority
shares a distinctive taste: their true ratings of the favourite items (default: the animated
films, the chapter's anime fans, less those in the 10% most liked overall, such as Toy Story)
are boosted, they rate many times more often than the majority, and they recruit new users like
themselves in proportion to how well the system serves them.
Majority users who are served badly may leave. Users and items are integer indices (0..U-1,
0..I-1), which is also what the simulation's logs hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from collabkit.data.interactions import Ratings
from collabkit.train.build import build_model


@dataclass
class WorldConfig:
    """How the world behaves; the defaults tell the chapter's story on ML-100k."""

    minority_share: float = 0.05  # share of the initial users in the enthusiastic minority
    favourite_genres: tuple[str, ...] = ("Animation",)  # the chapter's anime fans
    niche: float | None = 0.9  # keep the favourites whose mean taste is below this quantile
    # (drops the films everyone loves, e.g. Toy Story and Wallace & Gromit: a distinctive taste)
    boost: float = 1.5  # added to the minority's true rating of every favourite item
    noise: float = 0.5  # std of the fixed true-rating noise around the fitted tastes
    activity: float = 0.5  # majority: mean ratings per user per round (Poisson)
    minority_activity: float = 10.0  # minority: mean ratings per user per round
    organic_share: float = 0.3  # share of ratings users find by themselves, outside the list
    choice_power: float = 2.0  # list choice: P(slot) ~ position bias * normalised taste ** this
    temperature: float = 0.5  # organic choice: P(item) ~ exp(true rating / temperature)
    n_init: int = 10  # ratings each user (and each recruit) brings before the first round
    recruit_rate: float = 0.1  # recruits per minority user per round when perfectly served
    leave_threshold: float = 3.5  # a majority user served below this (mean true rating)...
    leave_prob: float = 0.2  # ...leaves with this probability that round
    feedback: bool = True  # False: users ignore the lists and only choose organically
    taste_spec: str = "dot-bias(n_factors=20, epochs=10)"  # the model the true tastes come from


@dataclass
class World:
    """The world's state; ``truth`` (U, I) grows a row per recruit. Mutated by the loop."""

    tastes: np.ndarray  # (U0, I) fitted tastes without noise; recruits are drawn from these rows
    truth: np.ndarray  # (U, I) float32 true ratings
    minority: np.ndarray  # (U,) bool
    alive: np.ndarray  # (U,) bool: still using the system
    seen: np.ndarray  # (U, I) bool: already consumed (never consumed twice)
    favourites: np.ndarray  # (I,) bool: the minority's favourite items
    genres: np.ndarray  # (I, G) float32, rows sum to 1: each item's genre distribution
    scale: tuple[float, float]
    config: WorldConfig
    item_ids: np.ndarray = field(default_factory=lambda: np.zeros(0))  # raw ids, for display

    @property
    def n_users(self) -> int:
        return self.truth.shape[0]

    @property
    def n_items(self) -> int:
        return self.truth.shape[1]

    def rates(self, users: np.ndarray) -> np.ndarray:
        """Mean ratings per round of each user (Poisson rate)."""
        c = self.config
        return np.where(self.minority[users], c.minority_activity, c.activity)

    def add_users(
        self, base: np.ndarray, minority: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """New users drawn from rows ``base`` of the tastes, with fresh noise; returns their indices."""
        lo, hi = self.scale
        t = self.tastes[base] + rng.normal(0.0, self.config.noise, (len(base), self.n_items))
        t = t + self.config.boost * (minority[:, None] & self.favourites[None, :])
        start = self.n_users
        self.truth = np.vstack([self.truth, np.clip(t, lo, hi).astype(np.float32)])
        self.minority = np.r_[self.minority, minority]
        self.alive = np.r_[self.alive, np.ones(len(base), dtype=bool)]
        self.seen = np.vstack([self.seen, np.zeros((len(base), self.n_items), dtype=bool)])
        return np.arange(start, self.n_users)

    def observe(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The ratings users give: their true rating rounded to the scale's whole stars."""
        lo, hi = self.scale
        return np.clip(np.round(self.truth[users, items]), lo, hi).astype(np.float32)

    def organic(
        self, users: np.ndarray, k: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each users[j] finds k[j] unseen items by themselves: P(item) ~ exp(truth / temperature).

        Sampling without replacement by Gumbel top-k; marks them seen; returns (users, items).
        """
        keep = k > 0
        users, k = users[keep], k[keep]
        if not len(users):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        logits = self.truth[users] / self.config.temperature
        keys = np.where(self.seen[users], -np.inf, logits + rng.gumbel(size=logits.shape))
        kmax = int(k.max())
        top = np.argsort(-keys, axis=1, kind="stable")[:, :kmax]  # (A, kmax)
        take = (np.arange(kmax)[None, :] < k[:, None]) & np.isfinite(
            np.take_along_axis(keys, top, 1)
        )
        u, i = np.repeat(users, kmax).reshape(-1, kmax)[take], top[take]
        self.seen[u, i] = True
        return u, i

    def choose(
        self, users: np.ndarray, lists: np.ndarray, k: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each users[j] consumes k[j] items of lists[j] (best first, -1 = empty slot).

        P(slot p) ~ 1 / log2(p + 1) * ((truth - low) / (high - low))^power: position bias times
        taste, without replacement (Gumbel top-k). Marks them seen; returns (users, items, positions).
        """
        lo, hi = self.scale
        n = lists.shape[1]
        valid = lists >= 0
        t = np.where(valid, self.truth[users[:, None], np.maximum(lists, 0)], lo)
        w = (1.0 / np.log2(np.arange(n) + 2.0))[None, :] * (
            (t - lo) / (hi - lo)
        ) ** self.config.choice_power
        with np.errstate(divide="ignore"):
            keys = np.where(valid & (w > 0), np.log(w) + rng.gumbel(size=w.shape), -np.inf)
        order = np.argsort(-keys, axis=1, kind="stable")
        take = (np.arange(n)[None, :] < k[:, None]) & np.isfinite(
            np.take_along_axis(keys, order, 1)
        )
        rows = np.repeat(np.arange(len(users)), n).reshape(-1, n)[take]
        pos = order[take]
        u, i = users[rows], lists[rows, pos]
        self.seen[u, i] = True
        return u, i, pos

    def update_population(
        self, served: pd.Series, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Majority users served below the threshold may leave; the minority recruits.

        ``served``: each served user's mean true rating this round (index: user). Recruits per
        round ~ Poisson(recruit_rate * live minority * clip((u_min - threshold) / (high -
        threshold), 0, 1)), u_min the minority's mean. Returns (users who left, recruits).
        """
        c, (_, hi) = self.config, self.scale
        users = served.index.to_numpy(dtype=np.int64)
        unhappy = (~self.minority[users]) & (served.to_numpy() < c.leave_threshold)
        leave = users[unhappy & (rng.random(len(users)) < c.leave_prob)]
        self.alive[leave] = False
        mins = self.minority[users]
        recruits = np.zeros(0, np.int64)
        if mins.any() and c.recruit_rate > 0:
            how_well = (served.to_numpy()[mins].mean() - c.leave_threshold) / (
                hi - c.leave_threshold
            )
            n_live = int((self.alive & self.minority).sum())
            n_new = rng.poisson(c.recruit_rate * n_live * float(np.clip(how_well, 0.0, 1.0)))
            founders = np.flatnonzero(self.minority[: len(self.tastes)])
            if n_new and len(founders):
                base = rng.choice(founders, n_new)
                recruits = self.add_users(base, np.ones(n_new, dtype=bool), rng)
        return leave, recruits


def genre_matrix(items: pd.DataFrame | None, n_items: int) -> tuple[np.ndarray, list[str]]:
    """(I, G) each item's genres as a distribution (pipe-separated ``genres`` column), and the names.

    Items without genres (or data without the column) get one genre, "(none)".
    """
    if items is None or "genres" not in items.columns:
        return np.ones((n_items, 1), dtype=np.float32), ["(none)"]
    dummies = items["genres"].fillna("").astype(str).str.get_dummies("|")
    names = list(dummies.columns)
    g = dummies.to_numpy(dtype=np.float32)
    empty = g.sum(1) == 0
    if empty.any():
        g = np.c_[g, empty.astype(np.float32)]
        names.append("(none)")
    return g / g.sum(1, keepdims=True), names


def build_world(
    tastes: np.ndarray,
    favourites: np.ndarray,
    genres: np.ndarray,
    scale: tuple[float, float],
    config: WorldConfig,
    seed: int = 0,
    item_ids: np.ndarray | None = None,
) -> World:
    """A world whose initial users are the rows of ``tastes`` (U0, I), the minority the ones fondest of the favourites.

    Fondness = mean taste of the favourites minus mean taste overall; the top ``minority_share``
    of users (rounded) form the minority.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items = tastes.shape
    favourites = np.asarray(favourites, dtype=bool)
    n_min = round(config.minority_share * n_users)
    minority = np.zeros(n_users, dtype=bool)
    if n_min and favourites.any():
        fondness = tastes[:, favourites].mean(1) - tastes.mean(1)
        minority[np.argsort(-fondness, kind="stable")[:n_min]] = True
    world = World(
        tastes=tastes.astype(np.float32),
        truth=np.zeros((0, n_items), dtype=np.float32),
        minority=np.zeros(0, dtype=bool),
        alive=np.zeros(0, dtype=bool),
        seen=np.zeros((0, n_items), dtype=bool),
        favourites=favourites,
        genres=genres.astype(np.float32),
        scale=scale,
        config=config,
        item_ids=np.arange(n_items) if item_ids is None else np.asarray(item_ids),
    )
    world.add_users(np.arange(n_users), minority, rng)
    return world


def fit_world(data: Ratings, config: WorldConfig | None = None, seed: int = 0) -> World:
    """A world fitted to real ratings: true tastes = ``config.taste_spec``'s predictions for every pair."""
    config = config or WorldConfig()
    model = build_model(config.taste_spec, data)[0]
    item_ids = model.items.ids
    n_items = len(item_ids)
    meta = data.items.reindex(item_ids) if data.items is not None else None
    genres, names = genre_matrix(meta, n_items)
    unknown = sorted(set(config.favourite_genres) - set(names))
    if config.minority_share > 0 and unknown:
        raise ValueError(
            f"{data.name}: no genre {', '.join(unknown)} in the item metadata; genres: {', '.join(names)}"
        )
    cols = [names.index(g) for g in config.favourite_genres if g in names]
    favourites = (genres[:, cols] > 0).any(1) if cols else np.zeros(n_items, dtype=bool)
    lo, hi = data.scale or (1.0, 5.0)
    with torch.no_grad():
        tastes = model.score_all_items(torch.arange(len(model.users))).numpy()
    tastes = np.clip(tastes, lo, hi)
    if config.niche is not None:  # a distinctive taste: only the favourites most users rate low
        appeal = tastes.mean(0)
        favourites &= appeal <= np.quantile(appeal, config.niche)
    return build_world(tastes, favourites, genres, (lo, hi), config, seed, item_ids)
