"""The conformance suite: every registered model kind honours the same contract.

A new kind is tested by registering it and giving it a small recipe in ``RECIPES`` (a test
below fails until it has one). Each kind is trained once per module on generated data; the
checks themselves are in ``conformance.py``. Two ensembles a user gets from a preset run the same
checks: ``--preset auto`` (a support-aware blend, small candidates) and ``--preset best``.
"""

from __future__ import annotations

import pytest

import collabkit as ck
from collabkit.models.base import RATINGS, registry
from collabkit.models.ensemble import Ensemble
from collabkit.train.auto import build_auto
from collabkit.train.build import build_model
from tests.conftest import make_ratings
from tests.models import conformance

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
    "knn": "knn(shrink=10.0)",
    "most-popular": "most-popular",
    "ease": "ease(reg=10.0)",
    "als": "als(n_factors=8, iterations=10)",
    "bpr": "bpr(n_factors=8, epochs=20)",
}
#: the presets' ensembles, checked like the kinds: auto on small candidates, best as it is
PRESETS = {
    "auto": (
        "baseline",
        "dot-bias(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
        "ordinal(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
    ),
    "best": "best",
}
#: ``check_fold_in``'s bound for the best preset: its members are full size (20-factor BPMF, 500
#: AutoRec units) on the suite's 60 users, where the MAP fold-in shrinks more (0.77-0.80 each)
BEST_FOLD_IN = 0.75
KINDS = sorted(RECIPES) + sorted(PRESETS)


def test_every_registered_kind_is_in_the_suite():
    assert set(RECIPES) == set(registry())


def test_the_presets_are_ensembles_that_show_themselves_by_a_member(models):
    for name in PRESETS:
        assert models[name].kind == "ensemble" and len(models[name].components()) > 1, name
        assert models[name].meta["representation"].startswith("member "), name
    assert models["auto"].meta["auto"]["support"]["buckets"]  # weights by support bucket


@pytest.fixture(scope="module")
def data():
    full = make_ratings(n_users=60, n_items=40, density=0.4, seed=3)
    return ck.random_split(full, 0.2, seed=0)


def _build(kind: str, train: ck.Ratings) -> ck.CollabModel:
    if kind == "auto":
        return build_auto(train, candidates=PRESETS["auto"], budget=300)[0]
    if kind == "best":
        return build_model("best", train)[0]
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
    if kind == "mean":
        pytest.skip("the mean is the floor the others are measured against")
    conformance.check_learns(models[kind], data, models["mean"])


@pytest.mark.parametrize("kind", KINDS)
def test_batch_scoring_equals_pair_by_pair_and_all_items(kind, models, data):
    conformance.check_batch_scoring(models[kind], data)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_ids_get_the_documented_fallback(kind, models, data):
    conformance.check_unknown_ids(models[kind], data)


@pytest.mark.parametrize("kind", KINDS)
def test_fold_in_works_or_refuses_clearly(kind, models, data):
    conformance.check_fold_in(models[kind], data, BEST_FOLD_IN if kind == "best" else None)


@pytest.mark.parametrize("kind", KINDS)
def test_recommend_with_reasons(kind, models, data):
    conformance.check_recommend_with_reasons(models[kind], data)


@pytest.mark.parametrize("kind", KINDS)
def test_similar_items_and_pca_work_or_refuse_clearly(kind, models, data):
    conformance.check_similar_and_pca(models[kind], data)


@pytest.mark.parametrize("kind", KINDS)
def test_biases_work_or_refuse_clearly(kind, models, data):
    conformance.check_biases(models[kind], data)


@pytest.mark.parametrize("kind", KINDS)
def test_new_items_fold_in_or_refuse_clearly(kind, models, data):
    conformance.check_item_fold_in(models[kind], data)


@pytest.mark.parametrize("kind", KINDS)
def test_update_grows_and_learns_or_refuses_clearly(kind, models, data):
    conformance.check_update(models[kind], data)


@pytest.mark.parametrize("kind", KINDS)
def test_the_serving_engine_answers_what_recommend_answers(kind, models, data):
    conformance.check_engine(models[kind], data)


def test_save_then_load_in_a_new_process_predicts_the_same(models, data, tmp_path):
    conformance.check_save_load_in_a_new_process(models, data, tmp_path)
