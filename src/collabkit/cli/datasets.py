"""`collabkit datasets list|download|where`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from collabkit.cli.common import DataDir, Json, app, consoles, fail, print_json

datasets_app = typer.Typer(no_args_is_help=True, help="List, download and locate MovieLens datasets.")
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def datasets_list(data_dir: DataDir = None, as_json: Json = False) -> None:
    """Known datasets, their URLs and where (if anywhere) they are on disk."""
    from collabkit.data.movielens import dataset_status

    rows = dataset_status(data_dir)
    if as_json:
        print_json({"datasets": rows})
        return
    table = Table(title="MovieLens datasets")
    for col in ("name", "present", "path", "url"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], "yes" if r["present"] else "no", str(r.get("path") or ""), r["url"])
    consoles(False)[0].print(table)


@datasets_app.command("download")
def datasets_download(
    name: str,
    data_dir: DataDir = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Extract even when the published checksum cannot be fetched.")] = False,
) -> None:
    """Download, verify and extract a dataset (once; later calls find it)."""
    from collabkit.data.movielens import fetch_movielens

    try:
        path = fetch_movielens(name, data_dir=data_dir, verify=not no_verify)
    except (ValueError, OSError) as e:
        fail(str(e))
    consoles(False)[0].print(f"{name}: {path}")


@datasets_app.command("where")
def datasets_where(name: str, data_dir: DataDir = None) -> None:
    """Print the folder of a dataset, or where it would be downloaded."""
    from collabkit.data.movielens import cache_dir, find_dataset_dir

    path = find_dataset_dir(name, data_dir)
    consoles(False)[0].print(str(path) if path else f"not present; would download under {data_dir or cache_dir()}")
