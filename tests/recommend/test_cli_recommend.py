"""`collabkit recommend | recommend-all | onboard` on a model trained from a CSV (and on ML-100k)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from collabkit.cli import app
from tests.conftest import make_ratings

runner = CliRunner()
COLS = ["--user-col", "who", "--item-col", "movie", "--rating-col", "stars"]


def run(*args, input: str | None = None, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by `collabkit train --out` from a CSV with string user ids."""
    tmp = tmp_path_factory.mktemp("cli")
    path = tmp / "ratings.csv"
    r = make_ratings()
    frame = r.frame.assign(user=[f"u{x}" for x in r.frame.user]).rename(
        columns={"user": "who", "item": "movie", "rating": "stars"}
    )
    frame.to_csv(path, index=False)
    run(
        "train",
        "--ratings",
        path,
        *COLS,
        "--split",
        "none",
        "--epochs",
        "3",
        "--out",
        tmp / "model",
        "--json",
        "--no-progress",
    )
    return tmp / "model", path, frame


def test_recommend_json_leaves_out_rated_items(trained):
    model, path, frame = trained
    out = json.loads(
        run("recommend", model, "u3", "-n", "5", "--ratings", path, *COLS, "--json").stdout
    )
    items = [r["item"] for r in out["recommendations"]]
    assert out["user"] == "u3" and len(items) == 5
    assert not set(items) & set(frame.loc[frame.who == "u3", "movie"])
    assert all(r["because"].startswith("because you rated") for r in out["recommendations"])


def test_recommend_needs_the_ratings_unless_seen_items_are_allowed(trained, tmp_path):
    """The model folder remembers its data; one that does not record it (trained on a DataFrame)
    needs it given, or --include-seen."""
    from collabkit.checkpoint import load_items, load_model, save_model

    model, _, _ = trained
    assert "Top 3 for user u3" in run("recommend", model, "u3", "-n", "3").stdout
    unrecorded = load_model(model)
    del unrecorded.meta["data"]
    bare = save_model(unrecorded, tmp_path / "bare", items=load_items(model))
    result = run("recommend", bare, "u3", code=2)
    assert "cannot tell what users have already rated" in result.output
    assert "--ratings" in result.output and "--include-seen" in result.output
    table = run("recommend", bare, "u3", "-n", "3", "--include-seen").stdout
    assert "Top 3 for user u3" in table


def test_unknown_user_fails_clearly_or_falls_back(trained):
    model, path, _ = trained
    result = run("recommend", model, "stranger", "--ratings", path, *COLS, code=2)
    assert "unknown user 'stranger'" in result.output and "--fallback" in result.output
    out = json.loads(
        run("recommend", model, "stranger", "--ratings", path, *COLS, "--fallback", "--json").stdout
    )
    assert (
        len(out["recommendations"]) == 10
        and "average-taste" in out["recommendations"][0]["because"]
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_recommend_all_writes_every_user(trained, tmp_path, suffix):
    model, path, frame = trained
    out = tmp_path / f"recs{suffix}"
    summary = json.loads(
        run(
            "recommend-all", model, "--out", out, "-n", "4", "--ratings", path, *COLS, "--json"
        ).stdout
    )
    recs = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert summary["n_rows"] == len(recs) == 4 * frame.who.nunique()
    assert list(recs.columns) == [
        "user",
        "rank",
        "item",
        "score",
        "because",
    ]  # no titles in the CSV
    rated = set(zip(frame.who, frame.movie))
    assert not set(zip(recs.user, recs.item)) & rated
    run("recommend-all", model, "--out", tmp_path / "recs.txt", "--include-seen", code=2)


def test_onboard_reads_answers_from_the_terminal(trained):
    model, path, _ = trained
    # rate, skip, not-a-rating (asked again), rate, then quit
    result = run(
        "onboard", model, "--ratings", path, *COLS, "-n", "5", "--json", input="4\n\nwhat\n2\nq\n"
    )
    out = json.loads(result.stdout.splitlines()[-1])  # CliRunner echoes the typed input to stdout
    assert [a["rating"] for a in out["answers"]] == [4.0, 2.0]
    answered = {a["item"] for a in out["answers"]}
    assert len(out["recommendations"]) == 5 and not answered & {
        r["item"] for r in out["recommendations"]
    }
    assert "please type a rating" in result.stderr


def test_onboard_stops_after_the_asked_number_of_answers(trained):
    model, path, _ = trained
    result = run(
        "onboard",
        model,
        "--ratings",
        path,
        *COLS,
        "--questions",
        "3",
        "-n",
        "3",
        input="5\n4\n1\n5\n5\n",
    )
    assert "Top 3 from your 3 answers" in result.stdout


def test_recommend_on_movielens(data_root, tmp_path):
    out = tmp_path / "model"
    run(
        "train",
        "--dataset",
        "ml-100k",
        "--data-dir",
        data_root,
        "--split",
        "u1",
        "--epochs",
        "1",
        "--out",
        out,
        "--json",
        "--no-progress",
    )
    recs = json.loads(
        run(
            "recommend",
            out,
            "42",
            "-n",
            "10",
            "--data-dir",
            data_root,
            "--genre",
            "Comedy",
            "--json",
        ).stdout
    )
    titles = [r["title"] for r in recs["recommendations"]]
    assert len(titles) == 10 and all(t.endswith(")") for t in titles)
    data = pd.read_csv(
        data_root / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "ts"]
    )
    assert not {r["item"] for r in recs["recommendations"]} & set(data.loc[data.user == 42, "item"])
