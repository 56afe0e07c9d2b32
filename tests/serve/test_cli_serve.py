"""The service's commands: db upgrade/import, keys create, retrain, models list/promote/rollback."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.serve import store
from collabkit.serve.security import key_role
from tests.conftest import make_ratings

runner = CliRunner()


def run(*args: object, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_store_commands_end_to_end(tmp_path, tiny_model):
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run("db", "upgrade", "--db", db)
    data = make_ratings(n_users=100, n_items=60, density=0.3, seed=5)
    csv = tmp_path / "ratings.csv"
    data.frame.to_csv(csv, index=False)
    out = run(
        "db",
        "import",
        "--ratings",
        csv,
        "--db",
        db,
        "--model",
        tiny_model,
        "--timestamp-col",
        "timestamp",
        "--json",
    )
    result = json.loads(out.stdout)
    assert result["ratings_imported"] == len(data) == result["ratings_in_store"]
    assert result["items_imported"] > 0

    key = run("keys", "create", "--role", "admin", "--db", db).stdout.strip()
    engine = store.make_engine(db)
    with Session(engine) as s:
        assert key_role(s, key) == "admin"
    run("keys", "create", "--role", "root", "--db", db, ok=False)

    models = tmp_path / "models"
    spec = "dot-bias(n_factors=4, epochs=6, lr_max=2e-2)"
    first = json.loads(run("retrain", "--db", db, "--out", models, "--spec", spec, "--json").stdout)
    assert first["promoted"] and (models / f"v{first['version']}" / "config.json").exists()
    second = json.loads(
        run("retrain", "--db", db, "--out", models, "--spec", spec, "--json").stdout
    )
    listed = json.loads(run("models", "list", "--db", db, "--json").stdout)["versions"]
    assert [v["id"] for v in listed] == [first["version"], second["version"]]
    run("models", "promote", first["version"], "--db", db)
    run("models", "promote", 99, "--db", db, ok=False)
    with Session(engine) as s:
        assert store.live_version(s).id == first["version"]
    rolled = run("models", "rollback", "--db", db)
    assert "is live again" in rolled.stdout
    engine.dispose()


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    db = f"sqlite:///{tmp_path / 'd.db'}"
    result = run("keys", "create", "--role", "writer", "--db", db, ok=False)  # no schema yet
    assert "db upgrade" in result.output and "Traceback" not in result.output
    run("db", "upgrade", "--db", db)
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,three\n")
    result = run("db", "import", "--ratings", bad, "--db", db, ok=False)
    assert "rating" in result.output and "Traceback" not in result.output
    result = run("serve", "--db", db, "--model", tmp_path, ok=False)
    assert "not a" in result.output and "config.json" in result.output
