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


def test_similar_prefers_items_with_enough_ratings(files, tmp_path):
    from collabkit.cli.interpret import MIN_RATINGS

    model = tmp_path / "m"
    run("train", "--ratings", files / "ratings.tsv", "--names", "user,item,category,rating",
        "--duplicates", "last", "--epochs", "1", "--out", model, "--json")  # fmt: skip
    counts = read_ratings(files / "ratings.tsv", names=["user", "item", "category", "rating"], duplicates="last")
    counts = counts.frame["item"].value_counts()
    every = json.loads(run("similar", model, "105", "-k", "44", "--min-ratings", "0", "--json"))["similar"]
    kept = json.loads(run("similar", model, "105", "-k", "44", "--json"))["similar"]
    assert all(counts[s["item"]] >= MIN_RATINGS for s in kept)
    assert len(kept) <= len(every)
