"""Ensemble: a weighted average of its members, through every scoring path, and after load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.interpret.similar import similar_items
from collabkit.models.autorec import AutoRec
from collabkit.models.ensemble import Ensemble


@pytest.fixture
def members(tiny):
    a = ck.DotProductBias.from_data(tiny, n_factors=3, seed=0)
    ck.fit_one_cycle(a, tiny, epochs=2, progress=False)
    b = AutoRec.from_data(tiny, n_factors=8, epochs=5)
    b.fit(tiny)
    return a, b


def test_predictions_are_the_weighted_average(tiny, members):
    model = Ensemble.of(list(members), [0.3, 0.7])
    f = tiny.frame.head(30)
    want = 0.3 * members[0].predict(f["user"], f["item"]) + 0.7 * members[1].predict(
        f["user"], f["item"]
    )
    np.testing.assert_allclose(model.predict(f["user"], f["item"]), want, rtol=1e-6)
    u, i = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 0])
    torch.testing.assert_close(
        model.head(model.user_repr(u), model.item_repr(i)), model.score(u, i)
    )
    torch.testing.assert_close(
        model.score_all_items(u)[:, 3], model.score(u, torch.tensor([3, 3, 3]))
    )


def test_round_trip_and_unknown_ids(tiny, members, tmp_path):
    model = Ensemble.of(list(members), [0.5, 0.5])
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    f = tiny.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )
    out = again.predict(["nobody", "nobody"], [f["item"].iloc[0], "no item"])
    assert np.isfinite(out).all()


def test_members_must_share_ids(tiny, members):
    other = ck.DotProductBias.from_data(
        tiny.subset(tiny.frame["user"] != tiny.frame["user"].iloc[0]), n_factors=3
    )
    with pytest.raises(ValueError, match="same training data"):
        Ensemble.of([members[0], other], [0.5, 0.5])


@pytest.fixture
def supported(tiny, members):
    """A support-aware ensemble: user bins x item bins of the counts (1 | 2-5 | > 5), weights by cell."""
    edges = (1, 5)
    cells = np.random.default_rng(0).uniform(0, 1, (3, 3, 2))
    thin = tiny.with_frame(tiny.frame.iloc[::3])  # counts of 1 to ~5: every bin is used
    return Ensemble.of(list(members), [0.5, 0.5], support=(edges, cells), train=thin), cells, thin


def test_support_aware_weights_go_by_the_users_and_items_counts(tiny, members, supported):
    model, cells, thin = supported
    f = tiny.frame
    cu = thin.frame["user"].value_counts().reindex(f["user"]).fillna(0).to_numpy()
    ci = thin.frame["item"].value_counts().reindex(f["item"]).fillna(0).to_numpy()
    bins = lambda c: np.searchsorted([1, 5], c)
    w = cells[bins(cu), bins(ci)]  # (n, 2)
    want = w[:, 0] * members[0].predict(f["user"], f["item"]) + w[:, 1] * members[1].predict(f["user"], f["item"])
    np.testing.assert_allclose(model.predict(f["user"], f["item"]), want, rtol=1e-5)
    assert len({tuple(r) for r in w}) > 3  # several cells in play


def test_support_aware_scoring_paths_agree_and_survive_a_round_trip(tiny, supported, tmp_path):
    model, _, _ = supported
    u, i = torch.tensor([0, 1, 2, 5]), torch.tensor([3, 3, 0, 7])
    torch.testing.assert_close(model.head(model.user_repr(u), model.item_repr(i)), model.score(u, i))
    n = len(model.items)
    pairs = model.predict_idx(u.repeat_interleave(n), torch.arange(n).repeat(len(u)))
    torch.testing.assert_close(model.score_all_items(u), pairs.view(len(u), n), rtol=1e-5, atol=1e-5)
    save_model(model, tmp_path / "s")
    again = load_model(tmp_path / "s")
    f = tiny.frame
    np.testing.assert_array_equal(model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"]))
    assert again.meta["representation"] == model.meta["representation"]


def test_a_folded_in_users_support_is_their_number_of_answers(tiny, supported):
    model, _, _ = supported
    items = torch.tensor([[0, 3, 5, -1, -1]])
    x = model.fold_in(items, torch.tensor([[4.0, 2.0, 5.0, 0.0, 0.0]], dtype=torch.float64))
    assert x.shape == (1, model.user_repr(torch.zeros(1, dtype=torch.int64)).shape[1]) and float(x[0, -1]) == 3.0
    assert float(model.user_prior().mean[-1]) == 0.0  # the average-taste user has no ratings


def test_the_representation_member_shows_the_ensemble(tiny, members):
    from collabkit.models.base import BIASES, FACTORS, supports

    a, b = members  # dot-bias (factors and biases), autorec (factors only)
    model = Ensemble.of([a, b], [0.2, 0.8])
    assert model.representative() == 0  # the largest weight among members with factors AND biases
    torch.testing.assert_close(model.factors("item"), a.factors("item"))
    torch.testing.assert_close(model.biases("item"), a.biases("item"))
    assert "member 1 of 2, dot-bias(n_factors=3" in model.meta["representation"]
    chosen = Ensemble.of([a, b], [0.2, 0.8], represent=1)  # the user's choice: no biases then
    torch.testing.assert_close(chosen.factors("item"), b.factors("item"))
    assert supports(chosen, FACTORS) and not supports(chosen, BIASES) and "chosen" in chosen.meta["representation"]
    with pytest.raises(ValueError, match="represent"):
        Ensemble.of([a, b], [0.2, 0.8], represent=2)


def test_an_ensemble_of_bias_models_is_shown_and_explained_by_its_biases(tiny):
    from collabkit.models.base import BIASES, FACTORS, supports

    base = ck.build_model("baseline", tiny)[0]  # auto's single form when a baseline errs least
    model = Ensemble.of([base], [1.0])
    assert supports(model, BIASES) and not supports(model, FACTORS)
    assert model.meta["representation"] == "member 1 of 1, baseline (weight 1.00; the bias model with the largest weight)"
    torch.testing.assert_close(model.biases("item"), base.biases("item"))
    user = tiny.frame["user"].iloc[0]
    recs = ck.recommend(model, tiny, [user], n=3)
    assert recs["because"].tolist() == ck.recommend(base, tiny, [user], n=3)["because"].tolist()
    assert recs["because"].str.match(r"rated (above|below) average overall \(item bias [+-]\d\.\d\d\)").all()
    with pytest.raises(TypeError) as e:  # not "an ensemble has no factors; kinds that do: ..., ensemble"
        similar_items(model, tiny.frame["item"].iloc[0])
    assert str(e.value).startswith("this ensemble has no 'factors' capability, which it takes from its members (baseline); kinds that do: ")
    assert "ensemble" not in str(e.value).split("kinds that do:")[1]


def test_the_fallback_models_baseline_scores_unknown_ids(tiny, members):
    fallback = ck.build_model("baseline(reg_item=100.0, reg_user=0.5)", tiny)[0]
    model = Ensemble.of(list(members), [0.5, 0.5], fallback=fallback)
    f = tiny.frame
    unknown = (["nobody", "nobody", f["user"].iloc[0]], [f["item"].iloc[0], "no item", "no item"])
    np.testing.assert_allclose(model.predict(*unknown), fallback.predict(*unknown), rtol=1e-6)
    assert not np.allclose(Ensemble.of(list(members), [0.5, 0.5]).predict(*unknown), fallback.predict(*unknown))
    known = (f["user"].head(20), f["item"].head(20))
    np.testing.assert_array_equal(model.predict(*known), Ensemble.of(list(members), [0.5, 0.5]).predict(*known))


@pytest.fixture
def refined(tiny, members):
    """A refined support-aware ensemble (random correction, gated on in 5 of the 9 cells)."""
    from collabkit.models.ensemble import N_META

    rng = np.random.default_rng(1)
    cells = rng.uniform(0, 1, (3, 3, 2))
    coef, gate = rng.normal(0, 0.05, (N_META, 3)), (rng.uniform(0, 1, (3, 3)) < 0.6).astype(float)
    thin = tiny.with_frame(tiny.frame.iloc[::3])
    model = Ensemble.of(list(members), [0.5, 0.5], support=((1, 5), cells), train=thin, refine=(coef, gate))
    return model, cells, coef, gate, thin


def test_a_refined_ensemble_adds_its_correction_by_the_sides_moments(tiny, members, refined):
    model, cells, coef, gate, thin = refined
    f = tiny.frame
    side = {}
    for name in ("user", "item"):
        g = thin.frame.groupby(name)["rating"]
        stats = pd.DataFrame({"count": g.size(), "mean": g.mean(), "std": g.std(ddof=0)})
        side[name] = stats.reindex(f[name]).fillna(0).to_numpy()
    cu, ci = side["user"][:, 0], side["item"][:, 0]
    bins = lambda c: np.searchsorted([1, 5], c)
    m = np.column_stack([np.ones(len(f)), np.log1p(cu), side["user"][:, 1], side["user"][:, 2],
                         np.log1p(ci), side["item"][:, 1], side["item"][:, 2]])  # fmt: skip
    on = gate[bins(cu), bins(ci)] * ((cu > 0) & (ci > 0))
    corr = (m @ coef) * on[:, None]
    w = cells[bins(cu), bins(ci)] + corr[:, :2]
    s = np.column_stack([members[0].predict(f["user"], f["item"]), members[1].predict(f["user"], f["item"])])
    want = (w * s).sum(1) + corr[:, 2]
    np.testing.assert_allclose(model.predict(f["user"], f["item"]), want, rtol=1e-5, atol=1e-5)
    assert on.any() and not on.all() and np.abs(corr).max() > 1e-3


def test_a_refined_ensembles_scoring_paths_agree_and_survive_a_round_trip(tiny, refined, tmp_path):
    model = refined[0]
    u, i = torch.tensor([0, 1, 2, 5]), torch.tensor([3, 3, 0, 7])
    torch.testing.assert_close(model.head(model.user_repr(u), model.item_repr(i)), model.score(u, i))
    n = len(model.items)
    pairs = model.predict_idx(u.repeat_interleave(n), torch.arange(n).repeat(len(u)))
    torch.testing.assert_close(model.score_all_items(u), pairs.view(len(u), n), rtol=1e-5, atol=1e-5)
    save_model(model, tmp_path / "r")
    again = load_model(tmp_path / "r")
    f = tiny.frame
    np.testing.assert_array_equal(model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"]))


def test_a_folded_in_users_moments_are_those_of_their_answers(tiny, refined):
    model = refined[0]
    items = torch.tensor([[0, 3, 5, -1, -1]])
    x = model.fold_in(items, torch.tensor([[4.0, 2.0, 5.0, 0.0, 0.0]], dtype=torch.float64))
    assert x.shape == (1, model.user_repr(torch.zeros(1, dtype=torch.int64)).shape[1])
    torch.testing.assert_close(x[0, -3:].double(), torch.tensor([3.0, 11 / 3, np.std([4.0, 2.0, 5.0])], dtype=torch.float64))
    assert model.user_prior().mean[-3:].abs().sum() == 0  # the average-taste user has no ratings


def test_the_serving_engine_answers_for_a_refined_ensemble_what_recommend_answers(tiny, refined):
    from tests.models import conformance

    conformance.check_engine(refined[0], (tiny, tiny))


def test_time_offsets_shift_predictions_given_times_and_survive_saving(tiny, members, tmp_path):
    from collabkit.models import timeshift

    model = Ensemble.of(list(members), [0.5, 0.5])
    f = tiny.frame
    plain = model.predict(f["user"], f["item"])
    model.set_time_offsets(*timeshift.residual_points(model, tiny), 3600.0, 1.0)
    assert model.config.time_points == len(f.groupby(["user", "timestamp"]))
    np.testing.assert_array_equal(model.predict(f["user"], f["item"]), plain)  # no times: the blend alone
    timed = model.predict(f["user"], f["item"], timestamps=f["timestamp"])
    shift = timeshift.offsets(model.time_keys.numpy(), model.time_sums.numpy(), model.time_counts.numpy(),
                              model.config.time_origin, 3600.0, 1.0, model.users.lookup(f["user"]), f["timestamp"].to_numpy())  # fmt: skip
    np.testing.assert_allclose(timed, np.clip(plain + shift, 1, 5), rtol=1e-6)
    assert np.abs(shift).max() > 0.1  # each user's few ratings leave residuals to shift by
    later = f["timestamp"] + 10**8  # years after every training rating: no shift
    np.testing.assert_allclose(model.predict(f["user"], f["item"], timestamps=later), plain, rtol=1e-6)
    assert ck.evaluate_ratings(model, tiny)["rmse"] < ck.evaluate_ratings(model, tiny.with_frame(f.drop(columns="timestamp")))["rmse"]
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert (again.config.time_scale, again.config.time_reg) == (3600.0, 1.0)
    np.testing.assert_array_equal(again.predict(f["user"], f["item"], timestamps=f["timestamp"]), timed)


def test_time_offsets_survive_growing_for_new_users_and_items(tiny, members):
    from collabkit.models import timeshift

    model = Ensemble.of(list(members), [0.5, 0.5])
    model.set_time_offsets(*timeshift.residual_points(model, tiny), 600.0, 1.0)
    f = tiny.frame
    grown = model.grown(model.users.extended([10**6]), model.items.extended([10**6]))
    assert grown.config.time_points == model.config.time_points
    np.testing.assert_array_equal(grown.predict(f["user"], f["item"], timestamps=f["timestamp"]),
                                  model.predict(f["user"], f["item"], timestamps=f["timestamp"]))  # fmt: skip
    assert grown.time_offsets(torch.from_numpy(grown.users.lookup([10**6])), f["timestamp"].to_numpy()[:1]).tolist() == [0.0]


def test_a_model_saved_with_day_offsets_is_named_as_such_when_loaded(tiny, members, tmp_path):
    import json

    save_model(Ensemble.of(list(members), [0.5, 0.5]), tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    saved = json.loads(path.read_text())
    for name in ("time_points", "time_scale", "time_reg", "time_origin"):
        saved["config"].pop(name)
    saved["config"].update(day_offsets=0, day_reg=3.0)  # as collabkit wrote it before time offsets
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="saved by an earlier collabkit: its day offsets became time offsets .* retrain it"):
        load_model(tmp_path / "m")


def test_an_ensemble_given_a_time_kernel_fits_offsets_whenever_it_is_fitted_on_timed_ratings(tiny, tmp_path):
    def fresh(times):
        return Ensemble.of([ck.DotProductBias.from_data(tiny, n_factors=3), AutoRec.from_data(tiny, n_factors=8, epochs=5)],
                           [0.5, 0.5], times=times)  # fmt: skip

    model = fresh((600.0, 2.0))
    assert model.config.time_points == 0  # untrained: nothing to fit them on yet
    model.fit(tiny)
    assert model.config.time_points == len(tiny.frame.groupby(["user", "timestamp"]))
    assert (model.config.time_scale, model.config.time_reg) == (600.0, 2.0)
    untimed = fresh((600.0, 2.0))
    untimed.fit(tiny.with_frame(tiny.frame.drop(columns="timestamp")))
    assert untimed.config.time_points == 0
    model.fit(tiny.with_frame(tiny.frame.drop(columns="timestamp")))  # refitted without times: no stale points
    assert model.config.time_points == 0 and model.time_offsets(torch.zeros(1, dtype=torch.int64), np.zeros(1)) is None
    save_model(model, tmp_path / "m")  # and it saves and loads as a model without points
    assert load_model(tmp_path / "m").config.time_points == 0
    plain = fresh((0.0, 0.0))
    plain.fit(tiny)
    assert plain.config.time_points == 0
