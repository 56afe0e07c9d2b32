"""What every sub-command shares: the app, option types, data loading, JSON output."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from collabkit.data.interactions import Ratings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="collabkit: collaborative filtering you can train, explain and serve.")

MODELS = "mean, bias, dot, dot-bias, nn, hybrid"
IMPLICIT_MODELS = "als, bpr, ease, most-popular"

# --- shared options --------------------------------------------------------------------------
Dataset = Annotated[str | None, typer.Option(help="MovieLens set: ml-100k, ml-1m, ... (see `collabkit datasets list`).")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Folder holding the dataset (or the dataset folder itself); default: $COLLABKIT_DATA or the cache.")]
RatingsFile = Annotated[Path | None, typer.Option("--ratings", help="CSV/TSV/Parquet of ratings instead of --dataset.")]
UserCol = Annotated[str, typer.Option(help="User column of --ratings.")]
ItemCol = Annotated[str, typer.Option(help="Item column of --ratings.")]
RatingCol = Annotated[str, typer.Option(help="Rating column of --ratings.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]


def consoles(as_json: bool) -> tuple[Console, Console]:
    """(stdout console for results, console for tables/progress): stderr when --json."""
    err = Console(stderr=True)
    return (err if as_json else Console()), err if as_json else Console()


def fail(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def load_source(
    dataset: str | None,
    data_dir: Path | None,
    ratings: Path | None,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str = "rating",
    duplicates: str = "error",
    item_name: str = "item",
) -> Ratings:
    """Ratings from --dataset or --ratings (exactly one)."""
    from collabkit.data.movielens import load_movielens
    from collabkit.data.readers import read_ratings

    if (dataset is None) == (ratings is None):
        fail("give exactly one of --dataset (MovieLens) or --ratings FILE")
    if ratings is not None:
        return read_ratings(ratings, user_col, item_col, rating_col, duplicates=duplicates)
    return load_movielens(dataset, data_dir=data_dir, item_name=item_name)


def split_source(
    data: Ratings, split: str, dataset: str | None, data_dir: Path | None, valid_pct: float, seed: int, item_name: str = "item"
) -> tuple[Ratings, Ratings | None]:
    """(train, test) for --split: random, user, temporal, none, or a canonical ML-100k u1..u5/ua/ub."""
    from collabkit.data import split as sp
    from collabkit.data.movielens import canonical_split

    if split == "random":
        return sp.random_split(data, valid_pct, seed)
    if split == "user":
        return sp.user_split(data, valid_pct, seed)
    if split == "temporal":
        return sp.temporal_split(data, 1)
    if split == "none":
        return data, None
    if dataset is None:
        fail(f"--split {split} needs --dataset ml-100k (canonical splits ship with it)")
    return canonical_split(split, name=dataset, data_dir=data_dir, item_name=item_name)


def print_json(obj: dict[str, Any]) -> None:
    """One JSON object on stdout; NaN/inf (not JSON) become null, named in a warning on stderr."""
    bad: list[str] = []

    def clean(v: Any, where: str) -> Any:
        if isinstance(v, dict):
            return {k: clean(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x, f"{where}[{n}]") for n, x in enumerate(v)]
        is_float = isinstance(v, float) or (getattr(v, "ndim", 1) == 0 and getattr(v, "dtype", None) is not None and v.dtype.kind == "f")
        if is_float and not math.isfinite(v):
            bad.append(where)
            return None
        return v

    text = json.dumps(clean(obj, ""), default=float, allow_nan=False)
    if bad:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] not finite, printed as null: {', '.join(bad)}")
    sys.stdout.write(text + "\n")


def metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    return table


