"""Ratings: one table of who rated what, plus optional user and item metadata."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass
class Ratings:
    """Ratings (or interactions) in the user's own ids, the common currency of collabkit.

    ``frame`` has columns user, item, rating and optionally timestamp, one row per (user, item).
    ``items``/``users`` are metadata tables indexed by the same raw ids (title, year, genres...;
    age, gender...). ``scale`` is the declared rating scale (low, high); ``step`` its resolution.
    ``origin`` (a JSON record of ``data.source.DataSource``, or None) describes where they came
    from and how they were split, so that a model trained on them records it.
    """

    frame: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    scale: tuple[float, float] | None = None
    name: str = "ratings"
    source: str = ""
    notes: list[str] = field(default_factory=list)
    origin: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        missing = [c for c in ("user", "item", "rating") if c not in self.frame.columns]
        if missing:
            raise ValueError(f"{self.name}: frame lacks column(s) {missing}")
        if self.scale is None and len(self.frame):
            r = self.frame["rating"]
            self.scale = (float(r.min()), float(r.max()))

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return (
            f"Ratings({self.name!r}: {len(self)} ratings, {self.n_users} users, "
            f"{self.n_items} items, scale={self.scale})"
        )

    @property
    def n_users(self) -> int:
        return int(self.frame["user"].nunique())

    @property
    def n_items(self) -> int:
        return int(self.frame["item"].nunique())

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.frame.columns

    @property
    def times(self) -> np.ndarray | None:
        """Each row's epoch seconds (int64), or None without a timestamp column."""
        return self.frame["timestamp"].to_numpy(np.int64) if self.has_timestamps else None

    def subset(self, rows: np.ndarray | pd.Series, name: str | None = None) -> Ratings:
        """A Ratings holding only the given rows (boolean mask or positions); metadata is shared."""
        rows = np.asarray(rows)
        frame = self.frame[rows] if rows.dtype == bool else self.frame.iloc[rows]
        return replace(self, frame=frame.reset_index(drop=True), name=name or self.name, notes=[])

    def with_frame(self, frame: pd.DataFrame, name: str | None = None) -> Ratings:
        return replace(self, frame=frame.reset_index(drop=True), name=name or self.name, notes=[])

    def titles(self, items: np.ndarray | list) -> list[str]:
        """Human-readable names for item ids: the title when metadata has one, else the id."""
        if self.items is not None and "title" in self.items.columns:
            t = self.items["title"].reindex(list(items))
            return [str(x) if isinstance(x, str) else str(i) for x, i in zip(t, items)]
        return [str(i) for i in items]

    def crosstab(self, n_users: int = 15, n_items: int = 15) -> pd.DataFrame:
        """The chapter's view: most active users x most rated items, NaN where the model must fill in."""
        top_u = self.frame["user"].value_counts().index[:n_users]
        top_i = self.frame["item"].value_counts().index[:n_items]
        sub = self.frame[self.frame["user"].isin(top_u) & self.frame["item"].isin(top_i)]
        table = sub.pivot_table(index="user", columns="item", values="rating", aggfunc="mean")
        return table.reindex(index=top_u, columns=top_i)


def pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """One int64 key a row, users * n_items + items: sorting it orders rows by (user, item) and
    puts a repeated pair side by side, at 8 bytes a row (a lexsort of two columns costs more)."""
    key = np.multiply(users, n_items, dtype=np.int64)
    key += items
    return key
