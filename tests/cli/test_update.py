"""`collabkit update`: a saved model learns from a file of new ratings, records its lineage, and a
second update reads back everything the first was trained on."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from collabkit.checkpoint import load_model, read_config
from collabkit.models.incremental import EPOCHS
from tests.conftest import make_ratings, run_cli


@pytest.fixture
def files(tmp_path):
    """(old.csv, new.csv, more.csv): the same users and items in three parts, plus newcomers."""
    f = make_ratings(n_users=60, n_items=40, density=0.4, seed=2).frame.sample(frac=1.0, random_state=0)
    old, new, more = f.iloc[: len(f) // 2], f.iloc[len(f) // 2 : 3 * len(f) // 4], f.iloc[3 * len(f) // 4 :]
    newcomers = pd.DataFrame({"user": [900, 900, 901], "item": [101, 999, 999], "rating": [5.0, 4.0, 2.0], "timestamp": 0})
    paths = []
    for name, part in (("old", old), ("new", pd.concat([new, newcomers])), ("more", more)):
        paths.append(tmp_path / f"{name}.csv")
        part.to_csv(paths[-1], index=False)
    return paths


def test_update_grows_the_model_and_records_its_lineage(files, tmp_path):
    old, new, more = files
    run_cli("train", "--ratings", old, "--split", "none", "--epochs", "3", "--out", tmp_path / "m1")
    out = json.loads(run_cli("update", tmp_path / "m1", "--ratings", new, "--out", tmp_path / "m2", "--json"))
    assert (out["new_users"], out["new_items"], out["ratings"]) == (2, 1, len(pd.read_csv(new)))
    assert out["replay"] == out["ratings"] and out["epochs"] == EPOCHS
    parent, child = load_model(tmp_path / "m1"), load_model(tmp_path / "m2")
    assert list(child.users.ids[: len(parent.users)]) == list(parent.users.ids)  # no known id moved
    assert child.users.ids[-2:].tolist() == [900, 901] and child.items.ids[-1] == 999
    step = read_config(tmp_path / "m2")["meta"]["lineage"][-1]
    assert step["parent"]["path"] == str((tmp_path / "m1").resolve())
    assert step["parent"]["weights_sha256"] == read_config(tmp_path / "m1")["files"]["model.safetensors"]["sha256"]
    assert step["added"]["origin"]["ratings"] == str(new.resolve())
    again = json.loads(run_cli("update", tmp_path / "m2", "--ratings", more, "--out", tmp_path / "m3", "--epochs", "1", "--json"))
    assert again["ratings"] == len(pd.read_csv(more))
    lineage = read_config(tmp_path / "m3")["meta"]["lineage"]
    assert len(lineage) == 2 and lineage[1]["mix"]["old"] == len(pd.read_csv(old)) + len(pd.read_csv(new))


def test_update_refuses_ratings_off_the_scale_and_kinds_that_cannot(files, tmp_path):
    old, new, _ = files
    run_cli("train", "--ratings", old, "--split", "none", "--epochs", "2", "--out", tmp_path / "m1")
    bad = tmp_path / "bad.csv"
    pd.read_csv(new).assign(rating=7.0).to_csv(bad, index=False)
    assert "off the model's scale 1-5" in run_cli("update", tmp_path / "m1", "--ratings", bad, "--out", tmp_path / "m2", code=2)
    run_cli("train", "--ratings", old, "--split", "none", "--model", "bpmf(n_factors=2, samples=5, burn_in=2)", "--out", tmp_path / "b")
    message = run_cli("update", tmp_path / "b", "--ratings", new, "--out", tmp_path / "b2", code=2)
    assert "no 'update' capability" in message and "dot-bias" in message
    assert not (tmp_path / "m2").exists() and not (tmp_path / "b2").exists()
