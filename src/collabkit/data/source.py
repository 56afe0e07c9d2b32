"""The data description: where ratings come from and how they were split, recorded with a model.

Whatever trains a model records the description of its training ratings in the model folder
(``Ratings.origin``, a JSON record kept by ``CollabModel.fit`` in ``meta["data"]``): the source
(a MovieLens set, or a file with its sha256 and columns), the duplicate policy and the split
recipe. Later commands given only the folder (``evaluate``, ``report``, ``recommend``...) read the
same data again and split it the same way, whether the model was trained from the CLI, from
Python, by torchrun or by the service. The loaders and splits write the record
(``load_movielens``, ``read_ratings``, ``random_split``...); ``DataSource`` is its typed form, and
``load`` and ``split_data`` are the way back from a record to the ratings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collabkit.files import file_sha256

if TYPE_CHECKING:  # the CLI builds a DataSource before it needs pandas: --help stays quick
    import pandas as pd

    from collabkit.data.interactions import Ratings

#: the ways a record can split its data (besides the canonical ML-100k u1..u5, ua, ub)
ROW_SPLITS = ("random", "user", "temporal", "timecut", "none")


def _distinct_roles(options: dict[str, Any]) -> None:
    """One column, one role: ``--rating-col user`` would train on user ids as ratings."""
    roles = [(f"--{k.replace('_', '-')}", options[k]) for k in ("user_col", "item_col", "rating_col", "timestamp_col")]
    roles += [("--item-columns", c) for c in options["item_columns"]]
    seen: dict[str, str] = {}
    for flag, column in roles:
        if column is None:
            continue
        if str(column) in seen:
            raise ValueError(f"{flag} {column!r} is also {seen[str(column)]}'s column: each column has one role")
        seen[str(column)] = flag


@dataclass(frozen=True)
class DataSource:
    """Where ratings come from and how they are split; None fields take the recorded or default value."""

    dataset: str | None = None
    data_dir: Path | None = None
    """A MovieLens set, and the folder it is in."""
    ratings: Path | None = None
    user_col: str | None = None
    item_col: str | None = None
    """Or a file of your own, and its columns (a rating column of '' reads a log of interactions)."""
    rating_col: str | None = None
    timestamp_col: str | None = None
    duplicates: str | None = None
    """Repeated (user, item) rows: error, last, mean or sum."""
    no_header: bool | None = None
    names: str | None = None
    """A header-less file: its columns by position, or named in order ("user,item,rating")."""
    items: Path | None = None
    """Item names and metadata, one row per item id."""
    item_columns: str | None = None
    """Columns of the ratings file that describe the item ("category" or "category,brand")."""
    split: str | None = None
    valid_pct: float | None = None
    seed: int | None = None
    """How the ratings are split into train and test."""

    def resolved(self) -> DataSource:
        """This source with the defaults filled in: split random, valid_pct 0.2, seed 42."""
        return replace(
            self, split=self.split or "random", valid_pct=0.2 if self.valid_pct is None else self.valid_pct,
            seed=42 if self.seed is None else self.seed,
        )  # fmt: skip

    def over(self, recorded: DataSource) -> DataSource:
        """This source with its unset fields taken from ``recorded`` (a file or dataset given here replaces the recorded one)."""
        base = recorded
        if self.dataset is not None or self.ratings is not None:
            base = replace(recorded, dataset=None, ratings=None, data_dir=recorded.data_dir)
        given = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return replace(base, **given)

    def load(self) -> Ratings:
        """The ratings (exactly one of --dataset or --ratings)."""
        from collabkit.data.movielens import load_movielens
        from collabkit.data.readers import read_items, read_ratings

        if (self.dataset is None) == (self.ratings is None):
            raise ValueError(
                "give exactly one of --dataset (MovieLens) or --ratings FILE "
                "(offline, --data-dir or $COLLABKIT_DATA says where the dataset folder is)"
            )
        if self.ratings is not None:
            data = read_ratings(self.ratings, **self.read_options())
        else:
            data = load_movielens(self.dataset, data_dir=self.data_dir)
        if self.items is not None:
            table = aligned_items(read_items(self.items), data.frame["item"])
            if data.items is not None:  # --item-columns too: one table, no column given twice
                both = sorted(set(table.columns) & set(data.items.columns))
                if both:
                    raise ValueError(f"--items {self.items} and --item-columns both give column(s) {both}")
                table = data.items.join(table, how="outer")
            data.items = table
        data.origin = self.to_json()
        return data

    def read_options(self) -> dict[str, Any]:
        """How ``read_ratings`` reads this source's files (the ratings, and ``test``)."""
        names = [n.strip() for n in self.names.split(",")] if self.names else None
        options = {
            "user_col": self.user_col or "user", "item_col": self.item_col or "item",
            "rating_col": "rating" if self.rating_col is None else (self.rating_col or None),
            "timestamp_col": self.timestamp_col, "duplicates": self.duplicates or "error",
            "names": () if self.no_header and not names else names,
            "item_columns": tuple(c.strip() for c in (self.item_columns or "").split(",") if c.strip()),
        }  # fmt: skip
        _distinct_roles(options)
        return options

    def split_data(self, data: Ratings, threshold: float | None = None) -> tuple[Ratings, Ratings | None]:
        """(train, test) for the split: random, user, temporal, timecut, none, or canonical ML-100k u1..u5/ua/ub.

        ``threshold`` (implicit models): positives are ratings >= threshold (0: every row); the
        row-level splits are drawn over the positives, the canonical ones converted after.
        """
        from collabkit.data.implicit import to_implicit

        if threshold is None:
            return self._recorded(*self._split(data))
        keep = None if threshold <= 0 else threshold
        if self.resolved().split in ROW_SPLITS:
            return self._recorded(*self._split(to_implicit(data, keep)))
        train, test = self._split(data)
        return self._recorded(to_implicit(train, keep), to_implicit(test, keep) if test is not None else None)

    def _recorded(self, train: Ratings, test: Ratings | None) -> tuple[Ratings, Ratings | None]:
        """Both parts described by this whole record (source, columns, split recipe)."""
        record = self.resolved().to_json()
        for part in (train, test):
            if part is not None:
                part.origin = record
        return train, test

    def _split(self, data: Ratings) -> tuple[Ratings, Ratings | None]:
        """The split's (train, test); a part left empty (too few ratings) is an error, not a run
        that trains on nothing or scores nothing."""
        from collabkit.data import split as sp
        from collabkit.data.movielens import SPLITS, canonical_split

        source = self.resolved()
        split = source.split
        if split in ("random", "user", "timecut") and not 0 < source.valid_pct < 1:
            raise ValueError(
                f"--valid-pct must be between 0 and 1 (exclusive), got {source.valid_pct:g}; "
                "--split none trains on every rating"
            )
        if split == "random":
            parts = sp.random_split(data, source.valid_pct, source.seed)
        elif split == "user":
            parts = sp.user_split(data, source.valid_pct, source.seed)
        elif split == "temporal":
            parts = sp.temporal_split(data, 1)
        elif split == "timecut":
            parts = sp.time_cut(data, source.valid_pct)
        elif split == "none":
            return data, None
        elif split not in SPLITS:
            raise ValueError(f"--split {split!r} is not a split: choose one of {', '.join(ROW_SPLITS)}, "
                             f"or {', '.join(SPLITS)} (ML-100k's canonical splits)")  # fmt: skip
        elif self.dataset is None:
            raise ValueError(f"--split {split} needs --dataset ml-100k (canonical splits ship with it)")
        else:
            parts = canonical_split(split, name=self.dataset, data_dir=self.data_dir)
        for part in parts:
            if len(part) == 0:
                raise ValueError(
                    f"{data.name}: the {split} split of {len(data)} rating(s) leaves the {part.name} part empty; "
                    "--split none trains on every rating (and tests on none)"
                )
        return parts

    def to_json(self) -> dict[str, Any]:
        """The record saved with a model: paths absolute, and the ratings file's sha256."""
        obj = {k: (str(Path(v).resolve()) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        if self.ratings is not None and Path(self.ratings).is_file():
            obj["sha256"] = file_sha256(Path(self.ratings))
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DataSource:
        kw = {f.name: obj.get(f.name) for f in fields(cls)}
        for name in ("data_dir", "ratings", "items"):
            kw[name] = Path(kw[name]) if kw[name] else None
        return cls(**kw)


def aligned_items(items: pd.DataFrame, ids: Any) -> pd.DataFrame:
    """``items`` indexed like the item ids ``ids`` (a data's or a model's: text ids stay text,
    integer ids integers)."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(ids.dtype):
        return items if pd.api.types.is_integer_dtype(items.index.dtype) else items.set_axis(
            pd.to_numeric(items.index, errors="coerce")
        )
    return items.set_axis(items.index.astype(str))
