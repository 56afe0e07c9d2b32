"""Your own data end to end: a header-less file with repeated pairs, described once at `train`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from collabkit.data.readers import RatingsFormatError, read_items, read_ratings
from tests.conftest import make_ratings
from tests.conftest import run_cli as run


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """ratings.tsv: no header, columns user, item, category, rating, some pairs repeated; items.csv: names."""
    root = tmp_path_factory.mktemp("own")
    frame = make_ratings(n_users=70, n_items=45, density=0.4, seed=2).frame
    frame = frame.assign(category=frame["item"] % 3)[["user", "item", "category", "rating"]]
    frame = pd.concat([frame, frame.iloc[::17].assign(rating=1.0)])  # repeated pairs, later wins
    frame.to_csv(root / "ratings.tsv", sep="\t", header=False, index=False)
    names = pd.DataFrame({"id": sorted(frame["item"].unique())})
    names["name"] = [f"Gadget {i}" for i in names["id"]]
    names.to_csv(root / "items.csv", index=False)
    return root


def test_header_less_files_are_read_by_names_or_position(files):
    by_name = read_ratings(files / "ratings.tsv", names=["user", "item", "category", "rating"], duplicates="last")
    by_pos = read_ratings(files / "ratings.tsv", "0", "1", "3", names=(), duplicates="last")
    assert len(by_name) == len(by_pos) and by_name.frame["rating"].equals(by_pos.frame["rating"])
    with pytest.raises(RatingsFormatError, match="at lines 1, "):  # no header: data starts on line 1
        read_ratings(files / "ratings.tsv", names=["user", "item", "category", "rating"])


def test_item_names_from_a_file(files):
    items = read_items(files / "items.csv")
    assert items.loc[105, "title"] == "Gadget 105"
    (files / "dup.csv").write_text("id,name\n1,a\n1,b\n")
    with pytest.raises(RatingsFormatError, match="more than once"):
        read_items(files / "dup.csv")


def test_described_once_at_train_then_every_command_needs_only_the_model(files, tmp_path):
    model = tmp_path / "model"
    describe = [
        "--ratings", files / "ratings.tsv", "--names", "user,item,category,rating",
        "--duplicates", "last", "--items", files / "items.csv",
    ]  # fmt: skip
    trained = json.loads(run("train", *describe, "--epochs", "3", "--lr", "0.03", "--out", model, "--json"))
    scored = json.loads(run("evaluate", model, "--json"))
    assert scored["rmse"] == pytest.approx(trained["rmse"]) and scored["n_test"] == trained["n_test"]
    recs = json.loads(run("recommend", model, "3", "-n", "3", "--json"))["recommendations"]
    assert len(recs) == 3 and all(r["title"].startswith("Gadget") for r in recs)
    assert all("Gadget" in r["because"] for r in recs if r["because"])
    near = json.loads(run("similar", model, "Gadget 105", "-k", "3", "--json"))["similar"]
    assert len(near) == 3 and all(s["title"].startswith("Gadget") for s in near)
    out = json.loads(run("report", model, "--out", tmp_path / "report", "--baselines", "mean", "--json"))
    assert (tmp_path / "report" / "index.html").exists() and out["sections"]


def test_item_columns_of_the_ratings_file_reach_the_hybrid_and_are_read_again(files, tmp_path):
    model = tmp_path / "hybrid"
    describe = [
        "--ratings", files / "ratings.tsv", "--names", "user,item,category,rating", "--duplicates", "last",
        "--item-columns", "category", "--items", files / "items.csv",
    ]  # fmt: skip
    trained = json.loads(run("train", *describe, "--model", "hybrid", "--epochs", "2", "--out", model, "--json"))
    config = json.loads((model / "config.json").read_text())
    assert [f["column"] for f in config["config"]["item_features"]] == ["category"]
    assert config["meta"]["data"]["item_columns"] == "category"
    assert json.loads(run("evaluate", model, "--json"))["rmse"] == pytest.approx(trained["rmse"])
    recs = json.loads(run("recommend", model, "3", "-n", "3", "--json"))["recommendations"]
    assert all(r["title"].startswith("Gadget") for r in recs)  # --items joined to the columns' table
    failed = run("train", *describe[:-4], "--item-columns", "brand", "--out", tmp_path / "x", code=2)
    assert "no column(s) ['brand']" in failed and "Traceback" not in failed
    pd.DataFrame({"id": [1], "category": ["x"]}).to_csv(tmp_path / "meta.csv", index=False)
    twice = run("train", *describe[:-2], "--items", tmp_path / "meta.csv", "--out", tmp_path / "y", code=2)
    assert "both give column(s) ['category']" in twice


def test_similar_leaves_out_items_and_users_without_enough_ratings_and_says_how_many(files, tmp_path):
    from collabkit.data.split import random_split
    from collabkit.interpret.similar import default_min_ratings

    model = tmp_path / "m"
    run("train", "--ratings", files / "ratings.tsv", "--names", "user,item,category,rating",
        "--duplicates", "last", "--epochs", "1", "--out", model, "--json")  # fmt: skip
    data = read_ratings(files / "ratings.tsv", names=["user", "item", "category", "rating"], duplicates="last")
    train, _ = random_split(data, 0.2, seed=42)  # the recorded split: counts are training ratings
    for side, query, flag in (("item", "105", []), ("user", "3", ["--user"])):
        counts = train.frame[side].value_counts()
        every = json.loads(run("similar", model, query, *flag, "-k", "100", "--min-ratings", "0", "--json"))
        at = int(counts.quantile(0.6))  # leaves some out
        kept = json.loads(run("similar", model, query, *flag, "-k", "100", "--min-ratings", at, "--json"))
        assert all(counts[s[side]] >= at and s["n_ratings"] == counts[s[side]] for s in kept["similar"])
        assert kept["min_ratings"] == at and kept["left_out"] == int((counts < at).sum()) > 0
        assert len(kept["similar"]) < len(every["similar"]) and every["left_out"] == 0
        default = json.loads(run("similar", model, query, *flag, "-k", "5", "--json"))
        assert default["min_ratings"] == default_min_ratings(counts)  # stated in the output
    human = run("similar", model, "105", "-k", "3")
    assert "left out" in human and "--min-ratings" in human


def test_the_default_support_of_a_neighbour_is_scaled_to_the_data():
    from collabkit.interpret.similar import default_min_ratings

    assert default_min_ratings(pd.Series([27] * 10)) == 20  # ML-100k-like: a median of 27 a film
    assert default_min_ratings(pd.Series([1] * 10 + [5] * 3)) == 5  # Epinions-like: most rated once
    assert default_min_ratings(pd.Series([9, 10, 11])) == 10


def readme_walkthrough() -> list[list[str]]:
    """The commands of the README's own-data walk-through (its first bash block), split as a shell would."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("### Your own data") :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)[1].replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """Verbatim, in a folder whose ratings.tsv is the shared Epinions log (header line, repeated
    pairs); without the shared data, a small generated file of the same shape."""
    import os
    from pathlib import Path

    from typer.testing import CliRunner

    from collabkit.cli import app

    root = os.environ.get("COLLABKIT_TEST_DATA")
    shared = Path(root) / "epinions" / "ratings.tsv" if root else None
    if shared is not None and shared.exists():
        (tmp_path / "ratings.tsv").symlink_to(shared.resolve())
    else:  # the same columns and header; ids 42 and 122 exist
        frame = make_ratings(n_users=150, n_items=130, density=0.2, seed=4).frame
        frame = frame.assign(category=frame["item"] % 5)[["user", "item", "category", "rating"]]
        pd.concat([frame, frame.iloc[::50]]).to_csv(tmp_path / "ratings.tsv", sep="\t", index=False)
    monkeypatch.chdir(tmp_path)
    commands = readme_walkthrough()
    assert [c[:2] for c in commands] == [["collabkit", v] for v in ("train", "evaluate", "recommend", "similar", "report")]
    outputs = []
    for argv in commands:
        result = CliRunner().invoke(app, argv[1:])
        assert result.exit_code == 0, (argv, result.output[-2000:])
        outputs.append(result.output)
    assert "because you rated" in outputs[2]
    assert "left out" in outputs[3]
    assert (tmp_path / "report" / "index.html").exists()
