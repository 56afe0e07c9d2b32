"""What every sub-command shares: the app, option types, the data source, JSON output.

Commands that read ratings take one group of options (``@with_source``): where the ratings come
from (``--dataset`` or ``--ratings FILE`` with its columns) and how they are split. ``train``
records the whole description in the model folder, and every later command that is given a
model folder starts from that record, so the data is described once, at ``train``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from collabkit.data.interactions import Ratings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="collabkit: collaborative filtering you can train, explain and serve.")

MODELS = "mean, baseline, bias, dot, dot-bias, nn, hybrid, svdpp, bpmf, autorec, ordinal"
IMPLICIT_MODELS = "als, bpr, ease, most-popular"
SPLITS = "random, user, temporal, none, or u1..u5/ua/ub (ML-100k)"

Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Folder holding the dataset; default: $COLLABKIT_DATA, ../shared/data or the download cache.")]
ModelDir = Annotated[Path, typer.Argument(help="Folder written by `collabkit train --out`.")]


@dataclass(frozen=True)
class DataSource:
    """Where ratings come from and how they are split; None fields take the recorded or default value."""

    dataset: str | None = None
    data_dir: Path | None = None
    ratings: Path | None = None
    user_col: str | None = None
    item_col: str | None = None
    rating_col: str | None = None
    duplicates: str | None = None
    split: str | None = None
    valid_pct: float | None = None
    seed: int | None = None

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
        from collabkit.data.readers import read_ratings

        if (self.dataset is None) == (self.ratings is None):
            raise ValueError(
                "give exactly one of --dataset (MovieLens) or --ratings FILE "
                "(offline, --data-dir or $COLLABKIT_DATA says where the dataset folder is)"
            )
        if self.ratings is not None:
            rating_col = "rating" if self.rating_col is None else (self.rating_col or None)
            return read_ratings(
                self.ratings, self.user_col or "user", self.item_col or "item", rating_col,
                duplicates=self.duplicates or "error",
            )  # fmt: skip
        return load_movielens(self.dataset, data_dir=self.data_dir)

    def split_data(self, data: Ratings) -> tuple[Ratings, Ratings | None]:
        """(train, test) for the split: random, user, temporal, none, or canonical ML-100k u1..u5/ua/ub."""
        from collabkit.data import split as sp
        from collabkit.data.movielens import canonical_split

        split, pct, seed = self.split or "random", self.valid_pct or 0.2, 42 if self.seed is None else self.seed
        if split == "random":
            return sp.random_split(data, pct, seed)
        if split == "user":
            return sp.user_split(data, pct, seed)
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
        for name in ("data_dir", "ratings"):
            kw[name] = Path(kw[name]) if kw[name] else None
        return cls(**kw)


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
    "duplicates": Annotated[str | None, typer.Option(help="Repeated (user, item) rows: error (default), last, mean or sum.")],
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
    """(the source, train, test) split as ``model_dir`` was trained (``model_data``, then its split)."""
    full, data = model_data(model_dir, source)
    return full, *full.split_data(data)


def consoles(as_json: bool) -> tuple[Console, Console]:
    """(stdout console for results, console for tables/progress): stderr when --json."""
    err = Console(stderr=True)
    return (err if as_json else Console()), err if as_json else Console()


def fail(message: str) -> None:
    """Print ``message`` (taken literally, never as markup) on stderr and exit with status 2."""
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("error: ", "red"), message))
    raise typer.Exit(2)


def print_json(obj: dict[str, Any]) -> None:
    """One JSON object on stdout; non-finite numbers become null (with a warning on stderr)."""
    bad: list[str] = []

    def clean(v: Any, path: str) -> Any:
        if isinstance(v, dict):
            return {k: clean(x, f"{path}.{k}" if path else str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x, f"{path}[{n}]") for n, x in enumerate(v)]
        if hasattr(v, "item") and not isinstance(v, str | bytes):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            bad.append(path)
            return None
        return v

    out = clean(obj, "")
    if bad:
        warnings.warn(f"non-finite numbers written as null: {', '.join(bad[:5])}", stacklevel=2)
    sys.stdout.write(json.dumps(out, default=str) + "\n")


def metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    return table
