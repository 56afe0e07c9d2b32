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
from typer._click.exceptions import NoArgsIsHelpError  # typer (pinned) vendors click
from typer.core import TyperGroup


class OneLineErrors(TyperGroup):
    """The root command: a usage error (a bad option value, a missing argument, an option given
    twice) is one line on stderr and exit status 2, like every other error (``fail``); help still
    shows when asked for."""

    def main(self, args: Any = None, *rest: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(args, *rest, standalone_mode=False, **kwargs)
        twice = _repeated_option(self, list(sys.argv[1:] if args is None else args))
        if twice:
            error_line(f"{twice} is given twice; give it once")
            sys.exit(2)
        try:
            # not standalone: click hands back the exit code of typer.Exit, or the command's return
            # value (always None here), and raises usage errors instead of printing a help panel
            rv = super().main(args, *rest, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except typer.TyperException as e:  # click's usage errors, as typer vendors them
            where = getattr(e, "ctx", None)
            error_line(e.format_message() + (f" (see {where.command_path} --help)" if where is not None else ""))
            sys.exit(e.exit_code)
        except typer.Abort:
            Console(stderr=True).print("Aborted.")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _repeated_option(group: Any, args: list[str]) -> str | None:
    """The first --option given twice to the command ``args`` name (click keeps the last value
    silently), unless that option is declared repeatable."""
    command = group
    words = [a for a in args if not a.startswith("-")]
    for word in words:  # the sub-command (db upgrade...) whose options these are
        found = getattr(command, "commands", {}).get(word)
        if found is None:
            break
        command = found
    repeatable = {o for p in getattr(command, "params", []) if getattr(p, "multiple", False) for o in p.opts}
    seen: set[str] = set()
    for arg in args:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if arg.startswith("--") and len(name) > 2 and name not in repeatable:
            if name in seen:
                return name
            seen.add(name)
    return None


app = typer.Typer(
    cls=OneLineErrors, add_completion=False, no_args_is_help=True,
    help="collabkit: collaborative filtering you can train, explain and serve.",
)  # fmt: skip

#: every kind is listed, with its options, by `collabkit kinds` (read from the registry)
SPEC_HELP = "a spec such as dot-bias or dot-bias(n_factors=20, epochs=10); `collabkit kinds` lists the kinds"
SPLITS = "random, user, temporal (each user's last), timecut (one moment for everyone: never trains on the future), none, or u1..u5/ua/ub (ML-100k)"

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


#: the longest error message printed (values quoted in messages are cut shorter where they are quoted)
MAX_MESSAGE = 2000


def fail(message: str) -> None:
    """Print ``message`` as one error line (``error_line``) and exit with status 2."""
    error_line(message)
    raise typer.Exit(2)


def error_line(message: str) -> None:
    """Print ``message`` (taken literally, never as markup) on stderr as one line of at most
    MAX_MESSAGE characters."""
    from collabkit.files import clip_text

    line = clip_text(" ".join(part.strip() for part in str(message).splitlines()), MAX_MESSAGE)
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("error: ", "red"), line))


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


def metrics_table(title: str, metrics: dict[str, Any], intervals: dict[str, Any] | None = None) -> Table:
    """One row per metric; with ``intervals`` ({metric: (low, high)}) a column for them."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if intervals is not None:
        table.add_column("95% interval", justify="right")
    for k, v in metrics.items():
        row = [k, f"{v:.4f}" if isinstance(v, float) else str(v)]
        if intervals is not None:
            low, high = intervals.get(k, (None, None))
            row.append("" if low is None or math.isnan(low) else f"[{low:.4f}, {high:.4f}]")
        table.add_row(*map(Text, row))
    return table
