"""Blend weights fitted on a validation part: one weight per member, or one per support cell.

Constant blend (``nnls``): min_{w >= 0} ||P w - y||^2, P the (n, K) members' validation
predictions, y the ratings.

Support-aware blend (``fit_support``; feature-weighted linear stacking, Sill et al. 2009, with the
support cells' indicators as meta-features): each validation pair falls in a cell, (bin of the
user's training count) x (bin of the item's), the bins cut at ``models.ensemble.SUPPORT_EDGES``.
Each cell c gets its own non-negative weights, pulled by a ridge term towards a centre m_c:

    w_c = argmin_{w >= 0} ||P_c w - y_c||^2 + lam s ||w - m_c||^2

s is the mean squared prediction (so lam counts pseudo-rows) and m_c is whichever of the constant
blend w0 and the baseline-predictor members (w = e_b) errs least on the cell's rows. The solve is
coordinate descent started at m_c, and every coordinate step lowers the objective, so

    SSE_c(w_c) <= SSE_c(m_c) = min(SSE_c(w0), min_b SSE_c(e_b)).

Summed over cells: on the rows it is fitted on, the support-aware blend is never worse than the
constant blend, and in every cell -- so in every support bucket, a union of cells -- never worse
than a baseline member. lam is chosen by K-fold cross-validation over LAMBDAS. Pairs with an
unknown side (count 0) are left out: the ensemble scores them with its baseline predictor.

Refinement (``fit_refinement``, when the sides' rating means and deviations are given): the cells
see only counts, so a ridge regression of the cell blend's residual on the meta-features x
(members, 1) (``models.ensemble.meta_features``: counts, rating means and standard deviations of
the user and of the item; on Epinions the weights then follow how spread a user's ratings are)
corrects it. Its ridge strength is cross-validated over REFINE_LAMBDAS, and it is kept only in the
cells where it lowers both the out-of-fold and the fitted squared error of the cell blend, so the
guarantees above still hold on the fitted rows.

Form (``choose_form``): those guarantees are about the rows the blend is fitted on. On a small
validation part (a few thousand rows) the cells' weights fit its noise, and so, with many members,
does the constant blend. So the form the ensemble takes is the one that errs least out of fold:
the support cells, the constant blend, or the single best member (whose validation error involves
no fitting at all); on ties the simpler one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from collabkit.models.ensemble import SUPPORT_EDGES, meta_features, support_bins

#: the ridge strengths cross-validated (pseudo-rows per cell)
LAMBDAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
#: folds of the cross-validation of lam
FOLDS = 5
#: validation rows (with known sides) per member below which no weights are fitted: the forms are
#: then the single members alone (ten rows per fitted coefficient, the regression rule of thumb;
#: on 6 rows a blend of 11 members scored 0.82 out of fold and 1.64 on the test part)
ROWS_PER_WEIGHT = 10
#: coordinate-descent sweeps (each lowers the objective; small problems converge in far fewer)
SWEEPS = 300
#: the refinement's ridge strengths cross-validated (times each column's sum of squares)
REFINE_LAMBDAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
#: support buckets of the report and of the guarantee: training ratings 1, 2-5, 6-20, > 20
BUCKETS = ((1, 1), (2, 5), (6, 20), (21, None))


def nnls(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin_{w >= 0} ||P w - y||^2 for a few columns (<= 14), exactly.

    The optimum is the unconstrained least-squares solution on its support, with every weight
    positive there; so solve every support (2^m small systems of the Gram matrix) and keep the
    feasible one with the smallest residual.
    """
    m = P.shape[1]
    if m > 14:
        raise ValueError(f"nnls: {m} columns is too many for the exact subset search (<= 14)")
    G, b, yy = P.T @ P, P.T @ y, float(y @ y)
    best, best_err = np.zeros(m), yy
    for k in range(1, m + 1):
        for support in itertools.combinations(range(m), k):
            idx = list(support)
            try:
                w = np.linalg.solve(G[np.ix_(idx, idx)], b[idx])
            except np.linalg.LinAlgError:
                continue
            if (w <= 0).any():
                continue
            err = yy - 2 * w @ b[idx] + w @ G[np.ix_(idx, idx)] @ w
            if err < best_err - 1e-12:
                best = np.zeros(m)
                best[idx] = w
                best_err = err
    return best


@dataclass
class SupportBlend:
    """A fitted support-aware blend: its cells' weights and what it achieves on validation."""

    edges: tuple[int, ...]
    cells: np.ndarray  # (bins, bins, K) weights per (user bin, item bin)
    constant: np.ndarray  # (K,) the constant blend w0
    mean_weights: np.ndarray  # (K,) the cells' weights averaged over the fitted rows
    lam: float  # the cross-validated ridge strength
    rmse: float  # validation RMSE over the rows with known sides
    constant_rmse: float  # the constant blend's on the same rows
    cells_rmse: float = float("nan")  # the cells' blend's, before the refinement
    # the same rows scored out of fold (fitted on the other FOLDS - 1 folds): the figures above are
    # of blends fitted on the rows they score, so they are optimistic
    cells_oof_rmse: float = float("nan")  # the cells' blend at the chosen lam, refined as the final one is
    constant_oof_rmse: float = float("nan")  # the constant blend
    single_rmse: float = float("nan")  # the best single member (no weights fitted: out of fold as it is)
    form: str = "cells"  # what the ensemble uses (``choose_form``): cells, constant or single
    refine: np.ndarray | None = None  # (meta-features, K + 1) the refinement, or None
    refine_cells: np.ndarray | None = None  # (bins, bins) 1.0 where the refinement applies
    buckets: list[dict[str, Any]] = field(default_factory=list)  # by side and bucket (``bucket_table``)
    note: str = ""  # why the form is what it is, when that is not simply the lowest error

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges), "lam": self.lam, "valid_rmse": self.rmse,
            "constant_valid_rmse": self.constant_rmse, "cells_valid_rmse": self.cells_rmse,
            "cells_oof_rmse": self.cells_oof_rmse, "constant_oof_rmse": self.constant_oof_rmse,
            "single_rmse": self.single_rmse, "form": self.form, "note": self.note,
            "refined_cells": 0 if self.refine_cells is None else int(self.refine_cells.sum()),
            "buckets": self.buckets,
        }  # fmt: skip


def fit_support(
    P: np.ndarray,
    y: np.ndarray,
    user_count: np.ndarray,
    item_count: np.ndarray,
    baselines: list[int],
    names: list[str],
    edges: tuple[int, ...] = SUPPORT_EDGES,
    seed: int = 0,
    moments: tuple[np.ndarray, np.ndarray] | None = None,
) -> SupportBlend:
    """The support-aware blend of the members' validation predictions ``P`` (n, K) of ratings ``y``
    (module docstring). ``user_count``/``item_count``: each row's user's and item's training
    ratings (as the members were fitted); ``baselines``: the columns that are baseline-predictor
    members; ``names``: the members', for the bucket table. ``moments``: each row's user's and
    item's training rating (mean, std), (n, 2) each, to fit the refinement."""
    known = (user_count > 0) & (item_count > 0)
    P, y = P[known].astype(np.float64), y[known].astype(np.float64)
    cell = _cells(user_count[known], item_count[known], edges)
    n_cells = (len(edges) + 1) ** 2
    scale = float(np.mean(P**2)) if len(P) else 1.0
    folds = np.random.default_rng(seed).integers(0, FOLDS, len(y))
    held, held_constant, scored, fold_weights = {lam: 0.0 for lam in LAMBDAS}, 0.0, 0, {}
    for f in range(FOLDS):
        fit, out = folds != f, folds == f
        if not fit.any() or not out.any():
            continue
        w = fold_weights[f] = _solve(P[fit], y[fit], cell[fit], n_cells, baselines, LAMBDAS, scale)
        for lam, weights in w.items():
            held[lam] += float(np.sum((np.einsum("nk,nk->n", P[out], weights[cell[out]]) - y[out]) ** 2))
        held_constant += float(np.sum((P[out] @ nnls(P[fit], y[fit]) - y[out]) ** 2))
        scored += int(out.sum())
    lam = min(LAMBDAS, key=lambda x: (held[x], -x))  # ties: the stronger pull
    M = None
    if moments is not None and len(y):
        M = _meta(user_count[known], item_count[known], moments[0][known], moments[1][known])
        held[lam] = _refined_oof(P, y, M, cell, n_cells, folds, {f: w[lam] for f, w in fold_weights.items()}, seed)
    w0 = nnls(P, y) if len(y) else np.zeros(P.shape[1])
    weights = _solve(P, y, cell, n_cells, baselines, (lam,), scale)[lam]
    bins = len(edges) + 1
    blend = np.einsum("nk,nk->n", P, weights[cell])
    counts = np.bincount(cell, minlength=n_cells)
    mean_w = (weights * counts[:, None]).sum(0) / max(1, counts.sum())
    result = SupportBlend(
        tuple(edges), weights.reshape(bins, bins, -1), w0, mean_w, lam,
        rmse_of(blend, y), rmse_of(P @ w0, y), rmse_of(blend, y),
    )  # fmt: skip
    if scored:
        result.cells_oof_rmse = float(np.sqrt(held[lam] / scored))
        result.constant_oof_rmse = float(np.sqrt(held_constant / scored))
    if M is not None:
        coef, gate = fit_refinement(P, y, blend, M, cell, n_cells, seed)
        blend = blend + gate[cell] * (_design(M, P) @ coef.ravel())
        result.refine, result.refine_cells, result.rmse = coef, gate.reshape(bins, bins), rmse_of(blend, y)
    result.buckets = bucket_table(
        P, y, blend, user_count[known], item_count[known], weights[cell], w0, baselines, names
    )
    return result


#: the forms, simplest first (``choose_form`` keeps the simpler on ties), as auto and report name them
FORMS = {"single": "the best single member", "constant": "the constant-weight blend", "cells": "the support-aware blend"}


def choose_form(
    blend: SupportBlend, P: np.ndarray, y: np.ndarray, user_count: np.ndarray, item_count: np.ndarray,
    baselines: list[int], names: list[str],
) -> SupportBlend:  # fmt: skip
    """``blend`` in the form that errs least out of fold on the rows with known sides (module
    docstring): itself (the support cells), or every cell given the constant weights, or every
    cell given the best member alone; the fitted figures and bucket table are then the form's.
    Below ROWS_PER_WEIGHT rows per member only the single members compete. A form that does not beat the best baseline member by one standard error is not evidence
    enough on these rows (``_beats_baseline``): the ensemble is then that baseline member."""
    known = (user_count > 0) & (item_count > 0)
    P, y = P[known].astype(np.float64), y[known].astype(np.float64)
    single = [rmse_of(P[:, j], y) for j in range(P.shape[1])]
    best = int(np.nanargmin(single)) if len(y) else 0
    errs = {"single": single[best], "constant": blend.constant_oof_rmse, "cells": blend.cells_oof_rmse}
    if len(y) < ROWS_PER_WEIGHT * P.shape[1]:  # too few rows to fit a weight per member
        errs["constant"] = errs["cells"] = float("nan")
    form = min(FORMS, key=lambda f: (np.isnan(errs[f]), round(errs[f], 12)))  # the simplest of equals
    pick, note = best, ""
    if baselines and P.shape[1] > 1:
        b = min(baselines, key=lambda j: single[j]) if len(y) else baselines[0]
        if not _beats_baseline(errs[form], P, y, best, b):
            form, pick = "single", b
            note = (f"nothing beat the baseline member {names[b]} by one standard error on the "
                    f"{len(y)} validation ratings with known sides, so it is the model")  # fmt: skip
    if form == "cells":
        return replace(blend, single_rmse=single[best])
    w = blend.constant if form == "constant" else np.eye(P.shape[1])[pick]
    rows = np.broadcast_to(w, P.shape)
    return replace(
        blend, form=form, single_rmse=single[best], cells=np.broadcast_to(w, blend.cells.shape).copy(),
        mean_weights=w.copy(), rmse=rmse_of(P @ w, y), refine=None, refine_cells=None, note=note,
        buckets=bucket_table(P, y, P @ w, user_count[known], item_count[known], rows, blend.constant, baselines, names),
    )  # fmt: skip


def _beats_baseline(rmse: float, P: np.ndarray, y: np.ndarray, best: int, b: int) -> bool:
    """Whether an out-of-fold ``rmse`` beats baseline member ``b`` by more than one standard
    error of the mean difference in squared error between the best member and ``b`` (the
    one-standard-error rule, Hastie et al. 2009, 7.10: the simplest model within one standard
    error of the best). On a few validation rows the best of many members is best by luck: a
    Bayesian MF chosen on 4 ratings and a dot-bias model on 8 were worse than the baseline on
    the test part."""
    if len(y) < 2 or np.isnan(rmse):
        return False
    diff = (P[:, best] - y) ** 2 - (P[:, b] - y) ** 2
    return rmse**2 < float(np.mean((P[:, b] - y) ** 2)) - standard_error(diff)


def standard_error(diff: np.ndarray) -> float:
    """The standard error of the mean of per-row differences ``diff`` (the one-standard-error
    rule's yardstick: ``_beats_baseline``, and auto's time offsets); needs two rows."""
    return float(diff.std(ddof=1)) / np.sqrt(len(diff))


def fit_refinement(
    P: np.ndarray, y: np.ndarray, base: np.ndarray, M: np.ndarray, cell: np.ndarray, n_cells: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(A (F, K + 1), gate (cells,)): the ridge correction of the cell blend ``base`` from the
    meta-features ``M`` (n, F) x (members ``P``, 1), and the cells it is kept in (module docstring)."""
    X, r = _design(M, P), y - base
    folds = np.random.default_rng(seed + 1).integers(0, FOLDS, len(y))
    out = {lam: np.zeros(len(y)) for lam in REFINE_LAMBDAS}
    for f in range(FOLDS):
        fit, held = folds != f, folds == f
        if fit.any() and held.any():
            for lam, coef in _ridge(X[fit], r[fit], REFINE_LAMBDAS).items():
                out[lam][held] = X[held] @ coef
    lam = min(REFINE_LAMBDAS, key=lambda x: float(np.sum((r - out[x]) ** 2)))
    coef = _ridge(X, r, (lam,))[lam]
    sse = lambda e: np.bincount(cell, e * e, n_cells)
    before = sse(r)
    gate = ((sse(r - out[lam]) < before) & (sse(r - X @ coef) < before)).astype(np.float64)
    return coef.reshape(M.shape[1], P.shape[1] + 1), gate


def _refined_oof(
    P: np.ndarray, y: np.ndarray, M: np.ndarray, cell: np.ndarray, n_cells: int, folds: np.ndarray,
    fold_weights: dict[int, np.ndarray], seed: int,
) -> float:  # fmt: skip
    """Squared error of the cells' blend out of fold with its refinement, as the final blend is
    built: each fold scored by the cells and the refinement fitted without it."""
    sse = 0.0
    for f, weights in fold_weights.items():
        fit, out = folds != f, folds == f
        base = np.einsum("nk,nk->n", P, weights[cell])
        coef, gate = fit_refinement(P[fit], y[fit], base[fit], M[fit], cell[fit], n_cells, seed)
        pred = base[out] + gate[cell[out]] * (_design(M[out], P[out]) @ coef.ravel())
        sse += float(np.sum((pred - y[out]) ** 2))
    return sse


def _meta(user_count: np.ndarray, item_count: np.ndarray, user_moments: np.ndarray, item_moments: np.ndarray) -> np.ndarray:
    """(n, F) meta-features of the rows, as the ensemble computes them (``meta_features``)."""
    side = lambda c, m: torch.from_numpy(np.column_stack([c, m]).astype(np.float64))
    return meta_features(side(user_count, user_moments), side(item_count, item_moments)).numpy()


def _design(M: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(n, F (K + 1)) the refinement's columns: each meta-feature times each member and times 1."""
    P1 = np.column_stack([P, np.ones(len(P))])
    return (M[:, :, None] * P1[:, None, :]).reshape(len(P), -1)


def _ridge(X: np.ndarray, r: np.ndarray, lams: tuple[float, ...]) -> dict[float, np.ndarray]:
    """lam -> argmin ||X c - r||^2 + lam sum_j ||X_j||^2 c_j^2 (each column penalised by its scale)."""
    G, b = X.T @ X, X.T @ r
    d = np.maximum(np.diag(G), 1e-3 * max(1, len(r)))
    return {lam: np.linalg.solve(G + lam * np.diag(d), b) for lam in lams}


def _cells(user_count: np.ndarray, item_count: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    """Each row's cell: user bin * bins + item bin."""
    return support_bins(user_count, edges) * (len(edges) + 1) + support_bins(item_count, edges)


def _solve(
    P: np.ndarray, y: np.ndarray, cell: np.ndarray, n_cells: int, baselines: list[int],
    lams: tuple[float, ...], scale: float,
) -> dict[float, np.ndarray]:  # fmt: skip
    """lam -> (cells, K) weights fitted on these rows (module docstring), every cell at once."""
    K = P.shape[1]
    G, b = np.zeros((n_cells, K, K)), np.zeros((n_cells, K))
    for c in np.unique(cell):
        rows = cell == c
        G[c], b[c] = P[rows].T @ P[rows], P[rows].T @ y[rows]
    yy = np.bincount(cell, y * y, n_cells)
    w0 = nnls(P, y) if len(y) else np.full(K, 1.0 / K)
    centres = [w0, *(np.eye(K)[j] for j in baselines)]
    sse = np.stack([yy - 2 * b @ c + np.einsum("ckl,k,l->c", G, c, c) for c in centres])  # (M, cells)
    centre = np.stack(centres)[np.argmin(sse, 0)]  # (cells, K): the least-erring centre (w0 on ties)
    return {lam: _descend(G + lam * scale * np.eye(K), b + lam * scale * centre, centre) for lam in lams}


def _descend(A: np.ndarray, b: np.ndarray, start: np.ndarray) -> np.ndarray:
    """argmin_{w >= 0} w^T A w - 2 b^T w for every cell (A (C, K, K) positive definite), by
    coordinate descent from ``start``: each step solves one coordinate exactly, so never rises."""
    w = start.copy()
    for _ in range(SWEEPS):
        before = w.copy()
        for j in range(w.shape[1]):
            grad = np.einsum("ck,ck->c", A[:, j, :], w) - b[:, j]
            w[:, j] = np.maximum(0.0, w[:, j] - grad / A[:, j, j])
        if np.abs(w - before).max() < 1e-10:
            break
    return w


def bucket_table(
    P: np.ndarray, y: np.ndarray, blend: np.ndarray, user_count: np.ndarray, item_count: np.ndarray,
    row_weights: np.ndarray, w0: np.ndarray, baselines: list[int], names: list[str],
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per side and support bucket (BUCKETS): validation pairs, RMSE of the support-aware
    blend (its predictions ``blend``), of the constant blend and of the best baseline member, and
    each member's mean weight in the cells."""
    rows = []
    constant = P @ w0
    for side, count in (("user", user_count), ("item", item_count)):
        for lo, hi in BUCKETS:
            mask = (count >= lo) & (count <= (np.inf if hi is None else hi))
            if not mask.any():
                continue
            row: dict[str, Any] = {
                "side": side, "ratings": f"{lo}" if lo == hi else (f"{lo}-{hi}" if hi else f"> {lo - 1}"),
                "pairs": int(mask.sum()), "rmse": rmse_of(blend[mask], y[mask]),
                "constant_rmse": rmse_of(constant[mask], y[mask]),
            }  # fmt: skip
            if baselines:
                row["baseline_rmse"] = min(rmse_of(P[mask, j], y[mask]) for j in baselines)
            row["weights"] = dict(zip(names, row_weights[mask].mean(0).tolist()))
            rows.append(row)
    return rows


def rmse_of(p: np.ndarray, y: np.ndarray) -> float:
    """RMSE of predictions ``p`` against ``y``; NaN when there are none."""
    return float(np.sqrt(np.mean((p - y) ** 2))) if len(y) else float("nan")
