"""The data source every command that reads ratings shares, as one group of options.

``@with_source`` gives a command the options that say where the ratings come from
(``--dataset`` or ``--ratings FILE`` with its columns) and how they are split. ``train`` records
the whole description in the model folder, and every later command given a model folder starts
from that record, so the data is described once, at ``train``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collabkit.cli.common import SPLITS, DataDir

if TYPE_CHECKING:
    import pandas as pd

    from collabkit.data.interactions import Ratings


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
    split: str | None = None
    valid_pct: float | None = None
    seed: int | None = None
    """How the ratings are split into train and test."""

    def resolved(self) -> DataSource:
        """This source with the defaults filled in: split random, valid_pct 0.2, seed 42."""
        return replace(
            self, split=self.split or "random", valid_pct=self.valid_pct or 0.2,
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
            rating_col = "rating" if self.rating_col is None else (self.rating_col or None)
            names = [n.strip() for n in self.names.split(",")] if self.names else None
            data = read_ratings(
                self.ratings, self.user_col or "user", self.item_col or "item", rating_col,
                self.timestamp_col, duplicates=self.duplicates or "error", names=() if self.no_header and not names else names,
            )  # fmt: skip
        else:
            data = load_movielens(self.dataset, data_dir=self.data_dir)
        if self.items is not None:
            data.items = _aligned(read_items(self.items), data)
        return data

    def split_data(self, data: Ratings, threshold: float | None = None) -> tuple[Ratings, Ratings | None]:
        """(train, test) for the split: random, user, temporal, none, or canonical ML-100k u1..u5/ua/ub.

        ``threshold`` (implicit models): positives are ratings >= threshold (0: every row); the
        row-level splits are drawn over the positives, the canonical ones converted after.
        """
        from collabkit.data.implicit import to_implicit

        if threshold is None:
            return self._split(data)
        keep = None if threshold <= 0 else threshold
        if self.resolved().split in ("random", "user", "temporal", "none"):
            return self._split(to_implicit(data, keep))
        train, test = self._split(data)
        return to_implicit(train, keep), to_implicit(test, keep)

    def _split(self, data: Ratings) -> tuple[Ratings, Ratings | None]:
        from collabkit.data import split as sp
        from collabkit.data.movielens import canonical_split

        source = self.resolved()
        split = source.split
        if split == "random":
            return sp.random_split(data, source.valid_pct, source.seed)
        if split == "user":
            return sp.user_split(data, source.valid_pct, source.seed)
        if split == "temporal":
            return sp.temporal_split(data, 1)
        if split == "none":
            return data, None
        if self.dataset is None:
            raise ValueError(f"--split {split} needs --dataset ml-100k (canonical splits ship with it)")
        return canonical_split(split, name=self.dataset, data_dir=self.data_dir)

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


def _aligned(items: pd.DataFrame, data: Ratings) -> pd.DataFrame:
    """``items`` indexed like ``data``'s item ids (text ids stay text, integer ids integers)."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(data.frame["item"].dtype):
        return items if pd.api.types.is_integer_dtype(items.index.dtype) else items.set_axis(
            pd.to_numeric(items.index, errors="coerce")
        )
    return items.set_axis(items.index.astype(str))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: the options every data-reading command takes, as (name, annotation): see ``with_source``
SOURCE_OPTIONS: dict[str, Any] = {
    "dataset": Annotated[str | None, typer.Option(help="MovieLens set: ml-100k, ml-1m, ... (see `collabkit datasets list`).")],
    "data_dir": DataDir,
    "ratings": Annotated[Path | None, typer.Option("--ratings", help="CSV/TSV/Parquet of ratings instead of --dataset.")],
    "user_col": Annotated[str | None, typer.Option(help="User column of --ratings (default user).")],
    "item_col": Annotated[str | None, typer.Option(help="Item column of --ratings (default item).")],
    "rating_col": Annotated[str | None, typer.Option(help="Rating column of --ratings (default rating; '' for a log without ratings).")],
    "timestamp_col": Annotated[str | None, typer.Option(help="Timestamp column of --ratings (epoch seconds or dates), for temporal splits.")],
    "duplicates": Annotated[str | None, typer.Option(help="Repeated (user, item) rows: error (default), last, mean or sum.")],
    "no_header": Annotated[bool | None, typer.Option("--no-header", help="--ratings has no header line: name columns by position (--user-col 0 ...).")],
    "names": Annotated[str | None, typer.Option(help="--ratings has no header line; its columns, in order, e.g. user,item,category,rating.")],
    "items": Annotated[Path | None, typer.Option("--items", help="Item names/metadata: CSV/TSV/Parquet, first column the item id, a title or name column.")],
    "split": Annotated[str | None, typer.Option(help=f"Split: {SPLITS}.")],
    "valid_pct": Annotated[float | None, typer.Option(help="Held-out fraction for random/user splits (default 0.2).")],
    "seed": Annotated[int | None, typer.Option(help="Seeds the split (and weights, when training; default 42).")],
}


def with_source(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` the shared data options; it receives them as one ``source: DataSource``."""
    sig = inspect.signature(command, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "source"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
        for name, ann in SOURCE_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        source = DataSource(**{name: kwargs.pop(name, None) for name in SOURCE_OPTIONS})
        return command(*args, source=source, **kwargs)

    params = [*own, *added]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must read the new signature, not the original's
    return wrapper


def model_data(model_dir: Path, source: DataSource) -> tuple[DataSource, Ratings]:
    """(the source, all its ratings) for ``model_dir``: its record, overridden by ``source``.

    A recorded ratings file that changed since training is refused (its sha256 differs).
    """
    from collabkit.checkpoint import read_config

    record = read_config(model_dir).get("data") or {}
    full = source.over(DataSource.from_json(record))
    if full.dataset is None and full.ratings is None:
        raise ValueError(
            f"{model_dir} does not record its training data (saved from Python?): pass --dataset or --ratings FILE"
        )
    same_file = full.ratings is not None and str(full.ratings.resolve()) == record.get("ratings")
    if same_file and record.get("sha256") and file_sha256(full.ratings) != record["sha256"]:
        raise ValueError(f"{full.ratings} changed since the model was trained on it (sha256 differs)")
    return full, full.load()


def training_data(model_dir: Path, source: DataSource) -> tuple[DataSource, Ratings, Ratings | None]:
    """(the source, train, test) split as ``model_dir`` was trained (``model_data``, then its split;
    an implicit model's parts are interactions, positives as at train)."""
    from collabkit.checkpoint import read_config

    full, data = model_data(model_dir, source)
    recipe = read_config(model_dir).get("train") or {}
    return full, *full.split_data(data, recipe.get("threshold") if recipe.get("implicit") else None)


