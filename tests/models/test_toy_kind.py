"""A kind defined only in the tests (``toy.py``) passes the whole conformance suite: train,
save/load in a new process, recommend with reasons, fold-in of users and items, updates, similar
items, biases, and serving through the engine. The registry finds it; nothing in ``src/`` names it."""

from __future__ import annotations

import pytest

import collabkit as ck
from collabkit.models.base import CAPABILITIES, CollabModel, registry
from collabkit.train.build import build_model
from tests.conftest import make_ratings
from tests.models import conformance


@pytest.fixture(scope="module")
def toy():
    from tests.models.toy import Toy

    yield Toy
    CollabModel.registry.pop(Toy.kind)  # the rest of the session sees the package's kinds only


@pytest.fixture(scope="module")
def data():
    full = make_ratings(n_users=60, n_items=40, density=0.4, seed=3)
    return ck.random_split(full, 0.2, seed=0)


@pytest.fixture(scope="module")
def models(toy, data):
    train, _ = data
    return {
        "toy": build_model("toy(epochs=20, lr_max=3e-2, wd=0.01)", train)[0],  # a spec, like any kind
        "mean": build_model("mean", train)[0],
    }


def test_the_toy_is_a_registered_kind_with_every_capability(toy):
    assert registry()["toy"] is toy and set(toy.capabilities) == set(CAPABILITIES)


@pytest.mark.parametrize(
    "check",
    ["learns", "batch_scoring", "unknown_ids", "fold_in", "item_fold_in", "update", "recommend_with_reasons", "similar_and_pca", "biases", "engine"],
)
def test_the_toy_passes(check, models, data):
    model = models["toy"]
    if check == "learns":
        conformance.check_learns(model, data, models["mean"])
    else:
        getattr(conformance, f"check_{check}")(model, data)


def test_the_toy_saves_and_loads_in_a_new_process(models, data, tmp_path):
    conformance.check_save_load_in_a_new_process({"toy": models["toy"]}, data, tmp_path, imports="import tests.models.toy")
