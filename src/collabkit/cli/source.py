"""The data options every command that reads ratings shares, as one group: ``@with_source``.

They say where the ratings come from (``--dataset`` or ``--ratings FILE`` with its columns) and
how they are split, and arrive as one ``data.source.DataSource``. The model folder records the
description of its training data (``data.source``), so every later command given a model folder
starts from that record and the data is described once, at ``train``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collabkit.cli.common import SPLITS, DataDir
from collabkit.data.source import DataSource, file_sha256

if TYPE_CHECKING:
    from collabkit.data.interactions import Ratings

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
    "item_columns": Annotated[str | None, typer.Option(help="Columns of --ratings that describe the item (e.g. category), kept as its metadata for hybrid and auto; an item given several values keeps them all (a|b).")],
    "split": Annotated[str | None, typer.Option(help=f"Split: {SPLITS}.")],
    "valid_pct": Annotated[float | None, typer.Option(help="Held-out fraction for random/user/timecut splits (default 0.2).")],
    "seed": Annotated[int | None, typer.Option(min=0, help="Seeds the split (and weights, when training; default 42).")],
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


def source_args(source: DataSource) -> list[str]:
    """The command-line options that give ``source`` again (for the torchrun lines)."""
    args: list[str] = []
    for name in SOURCE_OPTIONS:
        value = getattr(source, name)
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def recorded_data(config: dict[str, Any]) -> dict[str, Any]:
    """The description of the data a model folder's ``config`` says it was trained on ({}: none)."""
    return config.get("data") or config.get("meta", {}).get("data") or {}


def model_data(model_dir: Path, source: DataSource) -> tuple[DataSource, Ratings]:
    """(the source, all its ratings) for ``model_dir``: its record, overridden by ``source``.

    A recorded ratings file that changed since training is refused (its sha256 differs).
    """
    from collabkit.checkpoint import read_config

    config = read_config(model_dir)
    record = recorded_data(config)
    full = source.over(DataSource.from_json(record))
    if full.dataset is None and full.ratings is None:
        raise ValueError(
            f"{model_dir} does not record its training data (trained on a DataFrame?): pass --dataset or --ratings FILE"
        )
    same_file = full.ratings is not None and str(full.ratings.resolve()) == record.get("ratings")
    if same_file and not full.ratings.exists():
        raise ValueError(
            f"{full.ratings}: the ratings {model_dir} was trained on are no longer there; "
            "pass --ratings FILE (or --dataset) to read them from elsewhere"
        )
    if same_file and record.get("sha256") and file_sha256(full.ratings) != record["sha256"]:
        raise ValueError(f"{full.ratings} changed since the model was trained on it (sha256 differs)")
    return full, full.load()


def training_data(model_dir: Path, source: DataSource) -> tuple[DataSource, Ratings, Ratings | None]:
    """(the source, train, test) split as ``model_dir`` was trained (``model_data``, then its split;
    an implicit model's parts are interactions, positives as at train)."""
    from collabkit.checkpoint import read_config

    full, data = model_data(model_dir, source)
    config = read_config(model_dir)
    recipe = config.get("train") or config.get("meta", {}).get("train") or {}
    return full, *full.split_data(data, recipe.get("threshold") if recipe.get("implicit") else None)


