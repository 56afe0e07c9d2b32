"""The conformance suite: every registered model kind honours the same contract.

A new kind is tested by registering it and giving it a small recipe in ``RECIPES`` (a test
below fails until it has one). Each kind is trained once per module on generated data.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.data.implicit import to_implicit
from collabkit.models.base import FACTORS, FOLD_IN, RATINGS, CapabilityError, registry, supports
from collabkit.models.ensemble import Ensemble
from collabkit.train.build import build_model
from tests.conftest import make_ratings

#: kind -> a small recipe (a spec, or for the ensemble two member specs)
RECIPES: dict[str, str | tuple[str, ...]] = {
    "mean": "mean",
    "bias": "bias(epochs=20, lr_max=3e-2, wd=0.01)",
    "dot": "dot(n_factors=8, epochs=40, lr_max=1e-1, wd=0.01)",  # no biases: needs to work harder
    "dot-bias": "dot-bias(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
    "nn": "nn(n_factors=8, layers=(16,), epochs=20, lr_max=3e-2, wd=0.01)",
    "hybrid": "hybrid(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
    "svdpp": "svdpp(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
    "bpmf": "bpmf(n_factors=4, samples=20, burn_in=10)",
    "autorec": "autorec(n_factors=32, epochs=200, reg=5.0, lr=3e-2)",
    "ensemble": (
        "dot-bias(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
        "bpmf(n_factors=4, samples=20, burn_in=10)",
    ),
    "ordinal": "ordinal(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
    "baseline": "baseline",
    "most-popular": "most-popular",
    "ease": "ease(reg=10.0)",
    "als": "als(n_factors=8, iterations=10)",
    "bpr": "bpr(n_factors=8, epochs=20)",
}
KINDS = sorted(RECIPES)


def test_every_registered_kind_is_in_the_suite():
    assert set(RECIPES) == set(registry())


@pytest.fixture(scope="module")
def data():
    full = make_ratings(n_users=60, n_items=40, density=0.4, seed=3)
    return ck.random_split(full, 0.2, seed=0)


def _build(kind: str, train: ck.Ratings) -> ck.CollabModel:
    recipe = RECIPES[kind]
    if isinstance(recipe, tuple):
        members = [build_model(spec, train, seed=42 + k)[0] for k, spec in enumerate(recipe)]
        return Ensemble.of(members, [0.5, 0.5])
    cls = registry()[kind]
    threshold = None if RATINGS in cls.capabilities else 4.0
    return build_model(recipe, train, threshold=threshold)[0]


@pytest.fixture(scope="module")
def models(data):
    train, _ = data
    return {kind: _build(kind, train) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_learns_the_planted_signal(kind, models, data):
    """Rating kinds beat the global mean on held-out ratings; rankers put liked items above others."""
    train, test = data
    model = models[kind]
    if kind == "mean":
        pytest.skip("the mean is the floor the others are measured against")
    if supports(model, RATINGS):
        rmse = ck.evaluate_ratings(model, test)["rmse"]
        assert rmse < ck.evaluate_ratings(models["mean"], test)["rmse"]
    else:
        liked, positives = to_implicit(test, 4.0), to_implicit(train, 4.0)
        ours = ck.evaluate_ranking(model, positives, liked, 5, None)["hit_rate@5"]
        chance = ck.evaluate_ranking(models["mean"], positives, liked, 5, None)["hit_rate@5"]
        assert ours > chance


@pytest.mark.parametrize("kind", KINDS)
def test_batch_scoring_equals_pair_by_pair_and_all_items(kind, models, data):
    model = models[kind]
    f = data[0].frame.head(12)
    batch = model.predict(f["user"], f["item"])
    one = np.array([model.predict([u], [i])[0] for u, i in zip(f["user"], f["item"])])
    np.testing.assert_allclose(batch, one, rtol=1e-5, atol=1e-5)
    users = torch.tensor([0, 3, 7])
    full = model.score_all_items(users)
    n = len(model.items)
    pairs = model.predict_idx(users.repeat_interleave(n), torch.arange(n).repeat(3))
    torch.testing.assert_close(full, pairs.view(3, n), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_ids_get_the_documented_fallback(kind, models, data):
    model = models[kind]
    item = data[0].frame["item"].iloc[0]
    user = data[0].frame["user"].iloc[0]
    out = model.predict(["nobody", "nobody", user], [item, "no-such-item", "no-such-item"])
    assert np.isfinite(out).all()
    if supports(model, RATINGS):  # the baseline predictor, inside the rating scale
        u = torch.from_numpy(model.users.lookup(["nobody", "nobody", user], strict=False))
        i = torch.from_numpy(model.items.lookup([item, "no-such-item", "no-such-item"], strict=False))
        np.testing.assert_allclose(out, model.baseline(u, i).numpy(), rtol=1e-6)
        lo, hi = data[0].scale
        assert ((out >= lo) & (out <= hi)).all()
        assert out[1] == pytest.approx(model.meta["global_mean"])


@pytest.mark.parametrize("kind", KINDS)
def test_fold_in_works_or_refuses_clearly(kind, models, data):
    model = models[kind]
    train, _ = data
    answers = train.frame[train.frame["user"] == train.frame["user"].iloc[0]][["item", "rating"]]
    answers = dict(zip(answers["item"], answers["rating"]))
    if not supports(model, FOLD_IN):
        with pytest.raises(CapabilityError, match="kinds that do"):
            ck.recommend_new_users(model, answers, n=3)
        return
    recs = ck.recommend_new_users(model, answers, n=3)
    assert len(recs) == 3 and not set(recs["item"]) & set(answers)


@pytest.mark.parametrize("kind", KINDS)
def test_similar_items_and_pca_work_or_refuse_clearly(kind, models, data):
    from collabkit.interpret.pca import item_pca
    from collabkit.interpret.similar import similar_items

    model = models[kind]
    item = data[0].frame["item"].iloc[0]
    if not supports(model, FACTORS):
        with pytest.raises(CapabilityError, match="kinds that do"):
            similar_items(model, item, 3)
        return
    near = similar_items(model, item, 3)
    assert len(near) == 3 and item not in set(near["item"])
    if model.factors("item").shape[1] >= 2:
        assert len(item_pca(model, 2, data[0]).coords) > 0


def test_save_then_load_in_a_new_process_predicts_the_same(models, data, tmp_path):
    """Every kind: save, load in a fresh interpreter, identical predictions (no pickle involved)."""
    f = data[1].frame
    want = {}
    for kind, model in models.items():
        save_model(model, tmp_path / kind)
        want[kind] = model.predict(f["user"], f["item"]).tolist()
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({"user": f["user"].tolist(), "item": f["item"].tolist()}))
    script = (
        "import json, sys; from collabkit.checkpoint import load_model\n"
        "root, pairs = sys.argv[1], json.load(open(sys.argv[2]))\n"
        "print(json.dumps({k: load_model(f'{root}/{k}').predict(pairs['user'], pairs['item']).tolist()"
        f" for k in {KINDS!r}}}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(pairs)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    got = json.loads(proc.stdout)
    for kind in KINDS:
        np.testing.assert_array_equal(np.array(got[kind]), np.array(want[kind]), err_msg=kind)
    again = load_model(tmp_path / "dot-bias")
    assert again.capabilities == models["dot-bias"].capabilities
    assert pd.Series(again.users.ids).equals(pd.Series(models["dot-bias"].users.ids))
