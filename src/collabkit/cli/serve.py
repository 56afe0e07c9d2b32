"""`collabkit serve`, `db upgrade|import`, `keys create`, `retrain` and `models list|promote|rollback`.

Every command takes --db URL (default $COLLABKIT_DB, else sqlite:///collabkit.db): SQLite for one
machine, PostgreSQL (postgresql+psycopg://user:pass@host/db) for more. A running server notices
promotions and rollbacks made here within a few seconds (it polls the store).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collabkit.cli.common import Json, app, consoles, fail, metrics_table, print_json
from collabkit.cli.source import DataSource, model_data, training_data, with_source
from collabkit.files import clip_text

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DB = "sqlite:///collabkit.db"
#: seconds a worker may take to answer the supervisor's ping before it is restarted: loading a
#: version (imports, the engine's lists) on a busy machine took longer than uvicorn's 5 s
WORKER_HEALTHCHECK = 60
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

    url = db or os.environ.get("COLLABKIT_DB") or DEFAULT_DB
    scheme = url.split("://", 1)[0] if "://" in url else None
    if scheme is None or not (scheme == "sqlite" or scheme.startswith("postgresql")):
        what = f"a {clip_text(scheme, 30)!r} URL" if scheme else f"{clip_text(url, 60)!r}, not a URL"
        fail(f"--db: {what}; the store is SQLite (sqlite:///collabkit.db) or PostgreSQL (postgresql+psycopg://user:pass@host/db)")
    try:
        engine = make_engine(url)
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
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes (default: the number of cores); each notices promotions through the store.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the recommendation service (creates or migrates the store first)."""
    import tempfile

    import uvicorn

    from collabkit.serve import Settings, create_app
    from collabkit.serve.rollout import register

    url = db or os.environ.get("COLLABKIT_DB") or DEFAULT_DB
    if model is not None and not (model / "config.json").exists():
        fail(
            f"{model}: not a model folder (no config.json); train one with `collabkit train --out`"
        )
    engine = _engine(url, upgrade=True)
    if model is not None:  # once, here: every worker serves what the store says is live
        register(engine, model)
    engine.dispose()
    n = workers or os.cpu_count() or 1
    if n == 1:
        uvicorn.run(create_app(Settings(db=url)), host=host, port=port, log_level=log_level, access_log=False)
        return
    os.environ["COLLABKIT_DB"] = url  # the workers read their settings from the environment
    os.environ.pop("COLLABKIT_MODEL", None)
    with tempfile.TemporaryDirectory(prefix="collabkit-metrics-") as shared:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared  # /metrics adds up every worker's counters
        uvicorn.run(
            "collabkit.serve.app:create_app", factory=True, workers=n, host=host, port=port,
            log_level=log_level, access_log=False, timeout_worker_healthcheck=WORKER_HEALTHCHECK,
        )  # fmt: skip


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
        typer.Option(help="A model folder: the ratings it was trained on (its recorded data's training part, "
                          "not its test part; or the data options' ratings, all of them) and its item names."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Load ratings through the library's validated reader (repeats: the last one wins)."""
    from sqlalchemy.orm import Session

    from collabkit.checkpoint import load_items
    from collabkit.serve import store

    engine = _engine(db)
    source = replace(source, duplicates=source.duplicates or "last")
    held_out = 0  # the model's test ratings: not what it was trained on, so not what the store says it saw
    try:
        if model is not None and source.ratings is None and source.dataset is None:
            _, data, test = training_data(model, source)
            held_out = 0 if test is None else len(test)
        else:
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
        scale = _import_scale(session, rows["value"].to_numpy(), model, data, source.rating_col != "")
        _check_rows(rows, scale, source.ratings or source.dataset or model)
        store.record_scale(session, scale)
        n_items = store.upsert_items(session, items) if items is not None else 0
        for s in range(0, len(rows), 10_000):
            store.upsert_ratings(session, rows.iloc[s : s + 10_000].to_dict("records"))
        total = store.count_ratings(session)
    result = {"ratings_imported": len(rows), "items_imported": n_items, "ratings_in_store": total,
              "test_ratings_left_out": held_out, "scale": scale.describe()}  # fmt: skip
    print_json(result) if as_json else consoles(False)[0].print(metrics_table("import", result))


def _import_scale(session: Any, values: Any, model: Path | None, data: Any, ratings: bool) -> Any:
    """The store's recorded scale, else the model's (step from the data), else the data's
    (interaction counts when the data is a log of interactions)."""
    from collabkit.serve import store
    from collabkit.serve.rollout import model_scale
    from collabkit.serve.validation import UNRECORDED, scale_of

    recorded = store.scale(session)
    if recorded != UNRECORDED:
        return recorded
    if model is not None:
        return model_scale(model, values)
    low, high = data.scale or (float(values.min()), float(values.max()))
    return scale_of(low, high, values, ratings=ratings, source="data")


def _check_rows(rows: pd.DataFrame, scale: Any, where: Any) -> None:
    """Fail naming the first row that breaks the edge's rule (nothing is imported then)."""
    from collabkit.serve.validation import id_problem, usable, value_problem

    keep, _ = usable(rows.rename(columns={"value": "rating"}), scale)
    if keep.all():
        return
    k = int((~keep).argmax())
    user, item, value = rows["user"].iloc[k], rows["item"].iloc[k], float(rows["value"].iloc[k])
    problem = id_problem(user) or id_problem(item) or value_problem(scale, value)
    field = "user" if id_problem(user) else "item" if id_problem(item) else "rating"
    fail(f"{where}: {int((~keep).sum())} rating(s) break the store's rule, e.g. user {user!r}, "
         f"item {item!r}: {field}: {problem}; nothing was imported")  # fmt: skip


@db_app.command("scale")
def db_scale(
    db: Db = None,
    low: Annotated[float | None, typer.Option(help="Lowest rating.")] = None,
    high: Annotated[float | None, typer.Option(help="Highest rating.")] = None,
    step: Annotated[float | None, typer.Option(help="Ratings come in steps of this (e.g. 0.5).")] = None,
    interactions: Annotated[bool, typer.Option(help="Values are interaction counts (>= 0).")] = False,
) -> None:
    """Show the store's rating scale, or set it (--low/--high [--step], or --interactions).

    `db import` records it from the model or the data; writes off the scale are refused (422).
    """
    from sqlalchemy.orm import Session

    from collabkit.serve import store
    from collabkit.serve.validation import Scale

    with Session(_engine(db)) as session:
        if interactions or low is not None or high is not None:
            if not interactions and (low is None or high is None or not low < high):
                fail("give --low and --high (low < high), or --interactions")
            if step is not None and step <= 0:
                fail(f"--step must be positive, got {step}")
            new = Scale(0.0, None, None, "interactions", "set by hand") if interactions else Scale(low, high, step, "ratings", "set by hand")
            store.record_scale(session, new, replace=True)
        current = store.scale(session)
    typer.echo(f"values accepted: {current.describe()} ({current.source})")


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
    incremental: Annotated[bool, typer.Option("--incremental", help="Update the live model with the ratings since it was trained instead of training --spec from scratch.")] = False,
    as_json: Json = False,
) -> None:
    """Train a candidate from the store; promote it only if it is not worse than the live model.
    With --incremental the candidate is the live model updated (``collabkit update``), judged on
    the most recent of the ratings it has not seen."""
    from collabkit.serve.rollout import retrain

    try:
        result = retrain(_engine(db), out, spec, holdout, tolerance, incremental=incremental)
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
    """Make VERSION live once it loads and answers a recommendation (a running server switches
    within --reload seconds). Promoting a running canary's version promotes it to everyone."""
    from collabkit.serve import canary
    from collabkit.serve.rollout import NotServable, promote_version

    engine = _engine(db)
    try:
        promote_version(engine, version)
    except (LookupError, NotServable) as e:
        fail(f"{e}; the live version is unchanged" if isinstance(e, NotServable) else str(e))
    with _session(engine) as session:
        running = canary.running(session)
    if running is not None and running.version == version:
        canary.end(engine, "promoted", "by hand (collabkit models promote)")
    typer.echo(f"version {version} is live")


@models_app.command("rollback")
def models_rollback(db: Db = None) -> None:
    """Make the previously live version live again."""
    from collabkit.serve.rollout import NotServable, rollback

    try:
        version = rollback(_engine(db))
    except (LookupError, NotServable) as e:
        fail(str(e))
    typer.echo(f"version {version} is live again")


@models_app.command("canary")
def models_canary(
    version: Annotated[int | None, typer.Argument(help="Version to serve as a canary.")] = None,
    db: Db = None,
    fraction: Annotated[float, typer.Option(help="Share of the users it serves (by user id).")] = 0.2,
    tolerance: Annotated[float, typer.Option(help="Roll back when its mean rating is lower than live's by more.")] = 0.1,
    min_rated: Annotated[int, typer.Option(help="Rated recommendations each arm needs before the rule decides.")] = 50,
    stop: Annotated[bool, typer.Option("--stop", help="Roll the running canary back (by hand).")] = False,
) -> None:
    """Serve VERSION to a fraction of the users beside the live version; a running server's rule
    rolls it back when it does worse (or promotes it). --stop rolls it back now."""
    from collabkit.serve import canary
    from collabkit.serve.rollout import NotServable, load_served

    engine = _engine(db)
    if stop:
        row = canary.end(engine, "rolled back", "by hand (collabkit models canary --stop)")
        fail("no canary is running") if row is None else typer.echo(f"canary of version {row.version} rolled back")
        return
    if version is None or not 0 < fraction < 1 or tolerance < 0 or min_rated < 1:
        fail("give a VERSION, 0 < --fraction < 1, --tolerance >= 0 and --min-rated >= 1 (or --stop)")
    try:
        row = canary.start(engine, version, fraction, tolerance, min_rated, lambda v: load_served(engine, v))
    except (LookupError, ValueError) as e:
        fail(f"{e}; nothing changed" if isinstance(e, NotServable) else str(e))
    typer.echo(f"version {row.version} serves {row.fraction:.0%} of the users beside version {row.live_version}")


def _session(engine: Any) -> Any:
    from sqlalchemy.orm import Session

    return Session(engine)
