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


def test_import_records_the_scale_and_refuses_rows_off_it(tmp_path, tiny_model):
    db = f"sqlite:///{tmp_path / 's.db'}"
    run("db", "upgrade", "--db", db)
    data = make_ratings(n_users=50, n_items=40, density=0.3, seed=6)
    csv = tmp_path / "ratings.csv"
    data.frame.to_csv(csv, index=False)
    out = json.loads(run("db", "import", "--ratings", csv, "--db", db, "--model", tiny_model, "--json").stdout)
    assert out["scale"] == "from 1 to 5 in steps of 1"  # the model's range, the data's steps
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,101,4\n2,102,7\n")
    result = run("db", "import", "--ratings", bad, "--db", db, ok=False)
    assert "item '102'" in result.output and "from 1 to 5" in result.output and "nothing was imported" in result.output
    long = tmp_path / "long.csv"
    long.write_text(f"user,item,rating\n{'u' * 65},101,4\n")
    assert "at most 64" in run("db", "import", "--ratings", long, "--db", db, ok=False).output
    engine = store.make_engine(db)
    with Session(engine) as s:
        assert store.count_ratings(s) == len(data)
    engine.dispose()
    assert "from 1 to 5 in steps of 1 (model)" in run("db", "scale", "--db", db).stdout
    assert "in steps of 0.5 (set by hand)" in run("db", "scale", "--db", db, "--low", 0.5, "--high", 5, "--step", 0.5).stdout
    assert "low < high" in run("db", "scale", "--db", db, "--low", 5, "--high", 1, ok=False).output
    assert "count >= 0" in run("db", "scale", "--db", db, "--interactions").stdout


def test_canary_from_the_command_line(tmp_path, tiny_data, tiny_model):
    from collabkit.serve import rollout
    from tests.serve.conftest import load_store

    db = f"sqlite:///{tmp_path / 'k.db'}"
    run("db", "upgrade", "--db", db)
    load_store(db, tiny_data)
    engine = store.make_engine(db)
    live = rollout.register(engine, tiny_model)
    with Session(engine) as s:
        other = store.add_version(s, str(tiny_model), "again").id
    engine.dispose()
    assert "serves 30% of the users" in run("models", "canary", other, "--fraction", 0.3, "--db", db).stdout
    assert "already a canary" in run("models", "canary", other, "--db", db, ok=False).output
    assert "rolled back" in run("models", "canary", "--stop", "--db", db).stdout
    assert "no canary" in run("models", "canary", "--stop", "--db", db, ok=False).output
    assert "live already" in run("models", "canary", live, "--db", db, ok=False).output
    assert "0 < --fraction < 1" in run("models", "canary", other, "--fraction", 1.5, "--db", db, ok=False).output


def test_import_of_a_models_data_takes_what_it_was_trained_on_not_its_test_part(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    run("db", "upgrade", "--db", db)
    csv = tmp_path / "ratings.csv"
    make_ratings(n_users=50, n_items=40, density=0.3, seed=6).frame.to_csv(csv, index=False)
    trained = json.loads(run("train", "--ratings", csv, "--model", "baseline", "--out", tmp_path / "m", "--json").stdout)
    out = json.loads(run("db", "import", "--db", db, "--model", tmp_path / "m", "--json").stdout)
    assert trained["n_test"] > 0
    assert (out["ratings_imported"], out["test_ratings_left_out"]) == (trained["n_train"], trained["n_test"])
