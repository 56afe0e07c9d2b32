"""`collabkit serve`, `db upgrade|import`, `keys create`, `retrain` and `models list|promote|rollback`.

Every command takes --db URL (default $COLLABKIT_DB, else sqlite:///collabkit.db): SQLite for one
machine, PostgreSQL (postgresql+psycopg://user:pass@host/db) for more. A running server notices
promotions and rollbacks made here within a few seconds (it polls the store).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from collabkit.cli.common import Json, app, consoles, fail, metrics_table, print_json
from collabkit.cli.source import DataSource, model_data, with_source

DEFAULT_DB = "sqlite:///collabkit.db"
Db = Annotated[
    str | None,
    typer.Option("--db", help="Store URL (default $COLLABKIT_DB or sqlite:///collabkit.db)."),
]
db_app = typer.Typer(no_args_is_help=True, help="Create or migrate the store; import ratings.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys for write and admin endpoints.")
models_app = typer.Typer(no_args_is_help=True, help="Model versions: list, promote, roll back.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")


def _engine(db: str | None, upgrade: bool = False) -> Any:
    from collabkit.serve import migrate
    from collabkit.serve.store import make_engine

    engine = make_engine(db or os.environ.get("COLLABKIT_DB") or DEFAULT_DB)
    try:
        migrate.upgrade(engine) if upgrade else migrate.check(engine)
    except migrate.SchemaError as e:
        fail(str(e))
    except Exception as e:  # noqa: BLE001 -- unreachable server, bad URL: one line, no traceback
        fail(f"cannot open the store: {e.__class__.__name__}: {str(e).splitlines()[0]}")
    return engine


@app.command("serve")
def serve_cmd(
    model: Annotated[
        Path | None, typer.Option(help="Model folder to register and make live.")
    ] = None,
    db: Db = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the recommendation service (creates or migrates the store first)."""
    import uvicorn

    from collabkit.serve import Settings, create_app

    url = db or os.environ.get("COLLABKIT_DB") or DEFAULT_DB
    _engine(url, upgrade=True).dispose()
    if model is not None and not (model / "config.json").exists():
        fail(
            f"{model}: not a model folder (no config.json); train one with `collabkit train --out`"
        )
    settings = Settings(db=url, **({"model": str(model)} if model else {}))
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)


@db_app.command("upgrade")
def db_upgrade(db: Db = None) -> None:
    """Create the schema in an empty store or migrate it to this version (never downgrades)."""
    from collabkit.serve import migrate

    engine = _engine(db, upgrade=True)
    typer.echo(f"store at schema {migrate.current(engine)}")


@db_app.command("import")
@with_source
def db_import(
    source: DataSource,
    db: Db = None,
    model: Annotated[
        Path | None,
        typer.Option(help="A model folder: its recorded training data (unless data options are given) and its item names."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Load ratings through the library's validated reader (repeats: the last one wins)."""
    from sqlalchemy.orm import Session

    from collabkit.checkpoint import load_items
    from collabkit.serve import store

    engine = _engine(db)
    source = replace(source, duplicates=source.duplicates or "last")
    try:
        data = model_data(model, source)[1] if model is not None else source.load()
        items = load_items(model) if model is not None else data.items
    except (FileNotFoundError, ValueError, OSError) as e:
        fail(str(e))
    import pandas as pd

    frame = data.frame
    rows = pd.DataFrame({
        "user": frame["user"].astype(str), "item": frame["item"].astype(str),
        "value": frame["rating"].astype(float),
        "timestamp": frame["timestamp"].astype(float) if "timestamp" in frame else None,
    })  # fmt: skip
    with Session(engine) as session:
        n_items = store.upsert_items(session, items) if items is not None else 0
        for s in range(0, len(rows), 10_000):
            store.upsert_ratings(session, rows.iloc[s : s + 10_000].to_dict("records"))
        total = store.count_ratings(session)
    result = {"ratings_imported": len(rows), "items_imported": n_items, "ratings_in_store": total}
    print_json(result) if as_json else consoles(False)[0].print(metrics_table("import", result))


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str, typer.Option(help="writer (post ratings) or admin (also promote/rollback).")
    ],
    db: Db = None,
) -> None:
    """Create an API key and print it: it is shown once, only its hash is stored."""
    from sqlalchemy.orm import Session

    from collabkit.serve.security import create_key

    with Session(_engine(db)) as session:
        try:
            key = create_key(session, role)
        except ValueError as e:
            fail(str(e))
    typer.echo(key)


@app.command("retrain")
def retrain_cmd(
    db: Db = None,
    out: Annotated[Path, typer.Option(help="Folder for model versions (one subfolder each).")] = Path("models"),
    spec: Annotated[str, typer.Option(help="Model spec, e.g. dot-bias(n_factors=50).")] = "dot-bias(n_factors=50)",
    holdout: Annotated[float, typer.Option(help="Share of the most recent ratings held out to score.")] = 0.1,
    tolerance: Annotated[float, typer.Option(help="Promote if RMSE <= live RMSE + this.")] = 0.01,
    as_json: Json = False,
) -> None:
    """Train a candidate from the store; promote it only if it is not worse than the live model."""
    from collabkit.serve.rollout import retrain

    try:
        result = retrain(_engine(db), out, spec, holdout, tolerance)
    except ValueError as e:
        fail(str(e))
    print_json(result) if as_json else consoles(False)[0].print(metrics_table("retrain", result))


@models_app.command("list")
def models_list(db: Db = None, as_json: Json = False) -> None:
    """Every model version with its status and metrics."""
    from rich.table import Table
    from sqlalchemy.orm import Session

    from collabkit.serve import store

    with Session(_engine(db)) as session:
        rows = [
            {"id": v.id, "status": v.status, "spec": v.spec, "path": v.path,
             "rmse": v.metrics.get("rmse_candidate"), "promoted_at": store.iso(v.promoted_at)}
            for v in store.versions(session)
        ]  # fmt: skip
    if as_json:
        print_json({"versions": rows})
        return
    table = Table(title="model versions")
    for col in ("id", "status", "spec", "rmse", "promoted_at", "path"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("id", "status", "spec", "rmse", "promoted_at", "path")))
    consoles(False)[0].print(table)


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="Version id.")], db: Db = None
) -> None:
    """Make VERSION live (a running server switches within --reload seconds)."""
    from sqlalchemy.orm import Session

    from collabkit.serve import store

    with Session(_engine(db)) as session:
        try:
            store.set_live(session, version)
        except LookupError as e:
            fail(str(e))
    typer.echo(f"version {version} is live")


@models_app.command("rollback")
def models_rollback(db: Db = None) -> None:
    """Make the previously live version live again."""
    from collabkit.serve.rollout import rollback

    try:
        version = rollback(_engine(db))
    except LookupError as e:
        fail(str(e))
    typer.echo(f"version {version} is live again")
