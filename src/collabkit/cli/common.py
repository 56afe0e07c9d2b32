"""What every sub-command shares: the app, common option types, messages and JSON output."""

from __future__ import annotations

import json
import math
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(add_completion=False, no_args_is_help=True, help="collabkit: collaborative filtering you can train, explain and serve.")


def _print_version(given: bool) -> None:
    if given:
        from importlib.metadata import version

        typer.echo(f"collabkit {version('collabkit')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print collabkit's version and exit.")] = False,
) -> None:
    """Every command imports only what it needs (torch, pandas, numba, fastapi): --help is quick."""

MODELS = "mean, baseline, bias, dot, dot-bias, nn, hybrid, svdpp, bpmf, autorec, ordinal"
IMPLICIT_MODELS = "als, bpr, ease, most-popular"
SPLITS = "random, user, temporal, none, or u1..u5/ua/ub (ML-100k)"

Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Folder holding the dataset (offline); default: $COLLABKIT_DATA, else ~/.cache/collabkit, where it is downloaded once.")]
ModelDir = Annotated[Path, typer.Argument(help="Folder written by `collabkit train --out`.")]
Device = Annotated[str, typer.Option("--device", help="Where training and top-N scoring run: cpu, cuda, cuda:N, or auto (a GPU when PyTorch sees one, else the CPU). ALS and EASE always fit on the CPU.")]


#: width of tables written to a pipe or file (a terminal's own width is used otherwise)
PIPE_WIDTH = 200


def consoles(as_json: bool) -> tuple[Console, Console]:
    """(stdout console for results, console for tables/progress): stderr when --json."""
    err = Console(stderr=True)
    out = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
    return (err if as_json else out), err if as_json else out


def fail(message: str) -> None:
    """Print ``message`` (taken literally, never as markup) on stderr and exit with status 2."""
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("error: ", "red"), message))
    raise typer.Exit(2)


def on_device(name: str) -> AbstractContextManager:
    """``core.device.use`` for a --device value; a clean exit with the reason when there is no such device."""
    from collabkit.core import device

    try:
        return device.use(device.resolve(name))
    except ValueError as e:
        fail(str(e))


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
