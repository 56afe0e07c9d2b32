"""Blend weights: the exact NNLS, and the support-aware blend's guarantees on synthetic data."""

from __future__ import annotations

import numpy as np

from collabkit.train.blend import BUCKETS, fit_support, nnls


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validation-like rows whose members err by support: (P, y, user counts, item counts).

    Member 0 is a baseline predictor: the same moderate error everywhere. Member 1 is a factor
    model: very good where user and item have many ratings, far worse than the baseline where
    either has few (what an under-regularised factor model does with a handful of ratings).
    Member 2 is another baseline-like predictor whose errors mostly repeat member 0's. One weight
    per member is then worse than the baseline alone where support is thin.
    """
    rng = np.random.default_rng(seed)
    cu = np.exp(rng.uniform(0, np.log(400), n)).round()  # 1 .. 400 ratings, log-uniform
    ci = np.exp(rng.uniform(0, np.log(400), n)).round()
    y = rng.integers(1, 6, n).astype(float)
    thin = np.minimum(cu, ci)
    factor_err = 3.0 / thin + 0.4  # large for thin support, small for rich
    base_err = rng.normal(0, 0.9, n)
    P = np.stack([
        y + base_err,
        y + rng.normal(0, 1, n) * factor_err,
        y + base_err + rng.normal(0, 0.5, n),
    ], 1)  # fmt: skip
    return P, y, cu, ci


def rmse(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((p - y) ** 2)))


def cell_predictions(blend, P: np.ndarray, cu: np.ndarray, ci: np.ndarray) -> np.ndarray:
    from collabkit.models.ensemble import support_bins

    bins = len(blend.edges) + 1
    w = blend.cells.reshape(bins * bins, -1)[support_bins(cu, blend.edges) * bins + support_bins(ci, blend.edges)]
    return np.einsum("nk,nk->n", P, w)


def test_the_support_aware_blend_beats_the_constant_blend_and_never_loses_to_the_baseline_where_thin():
    P, y, cu, ci = synthetic(40_000, seed=0)
    blend = fit_support(P, y, cu, ci, baselines=[0], names=["baseline", "factors", "noise"])
    # on the rows it was fitted on: the guarantees (module docstring), by construction
    assert blend.rmse < blend.constant_rmse
    thin_users = next(r for r in blend.buckets if r["side"] == "user" and r["ratings"] == "1")
    assert thin_users["constant_rmse"] > thin_users["baseline_rmse"]  # the problem it solves
    for row in blend.buckets:
        assert row["rmse"] <= row["baseline_rmse"] + 1e-12, row
    thin_items = next(r for r in blend.buckets if r["side"] == "item" and r["ratings"] == "1")
    rich_items = next(r for r in blend.buckets if r["side"] == "item" and r["ratings"] == "> 20")
    assert thin_items["weights"]["baseline"] > rich_items["weights"]["baseline"]  # leans on the baseline where thin
    assert rich_items["weights"]["factors"] > thin_items["weights"]["factors"]
    # on fresh rows of the same kind (what a test part is to the validation part)
    P2, y2, cu2, ci2 = synthetic(40_000, seed=1)
    support, constant = cell_predictions(blend, P2, cu2, ci2), P2 @ blend.constant
    assert rmse(support, y2) < rmse(constant, y2) - 0.01
    for side, count in (("user", cu2), ("item", ci2)):
        lo, hi = BUCKETS[0]
        thin = (count >= lo) & (count <= hi)
        assert rmse(support[thin], y2[thin]) <= rmse(P2[thin, 0], y2[thin]) + 0.01, side


def test_the_guarantee_holds_whatever_the_members():
    rng = np.random.default_rng(3)
    for trial in range(5):
        n = 3000
        cu, ci = rng.integers(1, 60, n).astype(float), rng.integers(1, 60, n).astype(float)
        y = rng.integers(1, 6, n).astype(float)
        P = np.stack([y + rng.normal(0, s, n) for s in rng.uniform(0.5, 2.0, 4)], 1)
        blend = fit_support(P, y, cu, ci, baselines=[1, 2], names=list("abcd"), seed=trial)
        assert blend.rmse <= blend.constant_rmse + 1e-12
        assert all(r["rmse"] <= r["baseline_rmse"] + 1e-12 for r in blend.buckets)
        assert (blend.cells >= 0).all()


def test_rows_with_an_unknown_side_are_left_to_the_baseline_fallback():
    P, y, cu, ci = synthetic(5000, seed=2)
    cu[:100] = 0  # users the fit part never saw: the ensemble scores them with its baseline
    blend = fit_support(P, y, cu, ci, baselines=[0], names=["a", "b", "c"])
    assert sum(r["pairs"] for r in blend.buckets if r["side"] == "user") == 4900


def test_nnls_is_exact_on_small_problems():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(200, 3))
    y = P @ np.array([0.3, 0.7, 0.0]) - 0.5 * P[:, 2]  # the best free weight of column 3 is < 0
    w = nnls(P, y)
    assert w[2] == 0 and (w >= 0).all()
    free = np.linalg.lstsq(P[:, :2], y, rcond=None)[0]
    np.testing.assert_allclose(w[:2], free, atol=1e-9)


def spread_by_user(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Rows where the factor model's error grows with the user's rating deviation, not with any
    count: (P, y, user counts, item counts, user moments, item moments). The cells cannot see it."""
    rng = np.random.default_rng(seed)
    cu, ci = rng.integers(21, 200, n).astype(float), rng.integers(21, 200, n).astype(float)  # one cell
    std_u, std_i = rng.uniform(0.2, 1.6, n), rng.uniform(0.5, 1.2, n)
    mean_u, mean_i = rng.uniform(3, 4.5, n), rng.uniform(3, 4.5, n)
    y = rng.integers(1, 6, n).astype(float)
    base_err = rng.normal(0, 0.9, n)
    P = np.stack([y + base_err, y + rng.normal(0, 1, n) * (0.1 + std_u**2)], 1)
    return P, y, cu, ci, np.column_stack([mean_u, std_u]), np.column_stack([mean_i, std_i])


def test_the_refinement_follows_what_the_cells_cannot_see_and_keeps_the_guarantees():
    P, y, cu, ci, mu, mi = spread_by_user(30_000, seed=0)
    plain = fit_support(P, y, cu, ci, baselines=[0], names=["baseline", "factors"])
    refined = fit_support(P, y, cu, ci, baselines=[0], names=["baseline", "factors"], moments=(mu, mi))
    assert plain.refine is None and refined.refine is not None and refined.refine_cells.sum() >= 1
    assert refined.cells_rmse == plain.rmse
    assert refined.rmse < plain.rmse - 0.01
    for row in refined.buckets:
        assert row["rmse"] <= row["baseline_rmse"] + 1e-12, row
    # on fresh rows, scored as the ensemble does (models.ensemble.meta_features)
    from collabkit.train.blend import _design, _meta

    P2, y2, cu2, ci2, mu2, mi2 = spread_by_user(30_000, seed=1)
    cells = cell_predictions(plain, P2, cu2, ci2)
    more = cell_predictions(refined, P2, cu2, ci2) + _design(_meta(cu2, ci2, mu2, mi2), P2) @ refined.refine.ravel()
    assert rmse(more, y2) < rmse(cells, y2) - 0.01


def test_the_refinement_is_left_out_of_cells_where_it_does_not_help():
    rng = np.random.default_rng(5)
    n = 4000
    cu, ci = rng.integers(1, 60, n).astype(float), rng.integers(1, 60, n).astype(float)
    y = rng.integers(1, 6, n).astype(float)
    P = np.stack([y + rng.normal(0, 1, n), y + rng.normal(0, 1, n)], 1)  # nothing for it to learn
    moments = (rng.uniform(0, 5, (n, 2)), rng.uniform(0, 5, (n, 2)))
    blend = fit_support(P, y, cu, ci, baselines=[0], names=["a", "b"], moments=moments)
    assert blend.rmse <= blend.cells_rmse + 1e-12
    assert all(r["rmse"] <= r["baseline_rmse"] + 1e-12 for r in blend.buckets)


def test_out_of_fold_figures_score_each_fold_with_blends_fitted_without_it():
    """The fitted figures score a blend on its own rows; the out-of-fold ones are what a user can
    expect: on support-driven data the cells win out of fold too, on pure noise they do not."""
    from collabkit.train.blend import FOLDS

    P, y, cu, ci = synthetic(20_000, seed=4)
    blend = fit_support(P, y, cu, ci, baselines=[0], names=["baseline", "factors", "noise"])
    folds = np.random.default_rng(0).integers(0, FOLDS, len(y))
    sse = sum(float(np.sum((P[folds == f] @ nnls(P[folds != f], y[folds != f]) - y[folds == f]) ** 2)) for f in range(FOLDS))
    assert abs(blend.constant_oof_rmse - np.sqrt(sse / len(y))) < 1e-12
    assert blend.cells_oof_rmse < blend.constant_oof_rmse - 0.01
    assert blend.to_json()["cells_oof_rmse"] == blend.cells_oof_rmse
    rng = np.random.default_rng(5)  # members that are noise around the truth, whatever the support
    noise = y[:, None] + rng.normal(0, 1, (len(y), 3))
    flat = fit_support(noise, y, cu, ci, baselines=[0], names=["a", "b", "c"])
    assert flat.cells_rmse < flat.constant_rmse  # fitted on its own rows, the cells always look better
    assert flat.cells_oof_rmse > flat.constant_oof_rmse  # out of fold they are not


def test_the_ensemble_takes_the_form_that_errs_least_out_of_fold():
    """choose_form: the support cells where support drives the errors; the constant blend where
    members err independently whatever the support; the best member alone where the others only
    add noise to it; each form's weights in every cell and its figures in the bucket table."""
    from collabkit.train.blend import choose_form

    names = ["a", "b", "c"]
    P, y, cu, ci = synthetic(20_000, seed=4)
    cells = fit_support(P, y, cu, ci, baselines=[0], names=names)
    assert choose_form(cells, P, y, cu, ci, [0], names).form == "cells"

    rng = np.random.default_rng(6)
    independent = y[:, None] + rng.normal(0, 1, (len(y), 3))  # averaging them halves the error
    flat = choose_form(fit_support(independent, y, cu, ci, baselines=[0], names=names), independent, y, cu, ci, [0], names)
    assert flat.form == "constant" and flat.refine is None
    np.testing.assert_allclose(flat.cells, np.broadcast_to(flat.constant, flat.cells.shape))
    assert flat.rmse == rmse(independent @ flat.constant, y) < flat.single_rmse

    n, rng = 150, np.random.default_rng(7)  # few validation rows: a weight fitted to them fits their noise
    good = y[:n] + rng.normal(0, 0.3, n)
    copies = np.stack([good, good + rng.normal(0, 1, n), good + rng.normal(0, 1, n)], 1)
    args = (copies, y[:n], cu[:n], ci[:n], [1], names)
    blend = fit_support(*args)
    alone = choose_form(blend, *args)
    assert blend.constant_rmse < rmse(good, y[:n])  # fitted on these rows a blend looks better...
    assert alone.form == "single" and alone.single_rmse < min(blend.constant_oof_rmse, blend.cells_oof_rmse)  # ...not out of fold
    np.testing.assert_array_equal(alone.mean_weights, [1.0, 0.0, 0.0])
    assert alone.rmse == rmse(good, y[:n]) and all(r["weights"]["a"] == 1.0 for r in alone.buckets)


def test_on_a_few_rows_a_member_must_beat_the_baseline_by_a_standard_error():
    """The best of many members on a handful of validation rows is best by luck: unless it (or a
    blend) beats the best baseline member by one standard error, the baseline member is the model."""
    from collabkit.train.blend import choose_form

    n, rng = 12, np.random.default_rng(3)
    y = rng.integers(1, 6, n).astype(float)
    base = y + rng.normal(0, 1, n)
    P = base[:, None] + rng.normal(0, 0.5, (n, 8)) * (np.arange(8) > 0)  # the baseline plus noise
    names = [f"m{k}" for k in range(8)]
    args = (P, y, np.full(n, 30.0), np.full(n, 30.0), [0], names)
    errors = [rmse(P[:, k], y) for k in range(8)]
    assert int(np.argmin(errors)) != 0  # by luck a noisier member looks best on these rows
    chosen = choose_form(fit_support(*args), *args)
    assert chosen.form == "single" and chosen.mean_weights.tolist() == [1.0] + [0.0] * 7
    assert "nothing beat the baseline member m0 by one standard error on the 12" in chosen.note

    P[:, 3] = y + rng.normal(0, 0.2, n)  # one member far better: the evidence is there
    chosen = choose_form(fit_support(*args), *args)
    assert chosen.mean_weights[0] < 1.0 and not chosen.note


def test_with_no_validation_rows_the_baseline_member_is_the_model():
    from collabkit.train.blend import choose_form

    P, y, c = np.zeros((0, 3)), np.zeros(0), np.zeros(0)
    args = (P, y, c, c, [1], ["a", "b", "c"])
    chosen = choose_form(fit_support(*args), *args)
    assert chosen.form == "single" and chosen.mean_weights.tolist() == [0.0, 1.0, 0.0]


def test_below_ten_rows_a_member_no_weights_are_fitted():
    """Eight members with independent errors: averaging them helps, which 400 rows show; 40 rows
    (five a member) are too few to fit eight weights on, so only the single members compete."""
    from collabkit.train.blend import ROWS_PER_WEIGHT, choose_form

    rng, names = np.random.default_rng(5), [f"m{k}" for k in range(8)]
    y = rng.integers(1, 6, 400).astype(float)
    P = y[:, None] + rng.normal(0, 1, (400, 8))
    for n, form in ((400, "constant"), (40, "single")):
        args = (P[:n], y[:n], np.full(n, 30.0), np.full(n, 30.0), [], names)
        assert (n >= ROWS_PER_WEIGHT * 8) == (form == "constant")
        assert choose_form(fit_support(*args), *args).form == form, n
