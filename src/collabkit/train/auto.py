"""The self-tuning preset: choose members, hyper-parameters and blend weights on the user's own data.

``build_auto(train, budget=...)`` (the spec ``"auto"`` of ``build_model``, ``--preset auto``):

1. carve a validation tenth out of ``train`` (random, seeded) -- nothing outside ``train`` is
   ever read, so a test set stays untouched;
2. fit candidate members on the rest, cheapest first, while the search's share of the time
   budget lasts; a member that cannot scale to the data's size is skipped (or shrunk) by a size
   rule, and the reason is recorded;
3. blend: non-negative least squares of the validation ratings on the candidates' validation
   predictions, min ||P w - r||^2 subject to w >= 0 (exact: the best unconstrained solution on
   each support whose weights are all positive);
4. refit the members with a positive weight on the whole of ``train`` and return their Ensemble
   (what it can do is what every member can: an ordinal member means no fold-in).

What it tried and chose (candidates, validation RMSE, seconds, weights, skipped members and why)
is kept in ``model.meta["auto"]``, so it is saved in config.json, and printed to ``console``.

The budget is kept by estimating each candidate's time before starting it (from its size and
this machine's measured speed, ``estimate``); a fit once started runs to its end, and the blend's
heaviest member is always refitted, so a wrong estimate can overrun the budget.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from collabkit.core.loop import History
from collabkit.data.interactions import Ratings
from collabkit.data.split import random_split
from collabkit.models.base import CollabModel, Sizes, get_model_class
from collabkit.models.ensemble import Ensemble
from collabkit.train.spec import ModelSpec, build_untrained

#: default time budget in seconds: the whole search and refit of <= 1 M ratings on 2 cores
DEFAULT_BUDGET = 600.0
#: share of the budget the search may use; the rest is for refitting the chosen members
SEARCH_SHARE = 0.55
#: the validation part carved out of the training data
VALID_PCT = 0.1
#: the size rule: a member whose estimated working memory exceeds this is shrunk or skipped
MEMORY_BYTES = 2.5e9
#: members with a smaller blend weight are dropped (they cost a refit and change nothing)
MIN_WEIGHT = 0.01

#: candidates in the order they are tried (cheap first); later ones are hyper-parameter variants
CANDIDATES = (
    "baseline",
    "baseline(reg_item=5.0, reg_user=5.0)",
    "bias",
    "dot-bias(n_factors=50)",
    "ordinal(n_factors=50)",
    "dot-bias(n_factors=20, epochs=10, wd=0.5)",
    "hybrid(n_factors=50)",
    "autorec(n_factors=500, reg=40.0, epochs=300, lr=4e-3)",
    "bpmf(n_factors=10, samples=130, burn_in=20)",
    "bpmf(n_factors=20, samples=130, burn_in=20)",
    "autorec(n_factors=500, reg=60.0, epochs=300, lr=4e-3)",
)


def estimate(kind: str, cfg: dict[str, Any], s: Sizes) -> tuple[float, float]:
    """(seconds, working bytes) a candidate is expected to need on data of sizes ``s``: the kind's
    own cost rule (``CollabModel.cost``), its work in dot-bias rating-epochs at ``s.speed``."""
    work, mem = get_model_class(kind).cost(cfg, s)
    return work / s.speed, mem


def fit_size(kind: str, cfg: dict[str, Any], s: Sizes) -> tuple[dict[str, Any] | None, str]:
    """The size rule: ``cfg`` as it is, shrunk to fit MEMORY_BYTES, or None; with the reason."""
    return get_model_class(kind).sized(cfg, s, MEMORY_BYTES)


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


def build_auto(
    train: Ratings,
    *,
    seed: int = 42,
    budget: float | None = None,
    candidates: tuple[str, ...] = CANDIDATES,
    console: Any = None,
    progress: bool = False,
) -> tuple[CollabModel, History]:
    """Search, blend and refit on ``train`` only (module docstring); returns (model, History)."""

    budget = DEFAULT_BUDGET if budget is None else float(budget)
    if budget <= 0:
        raise ValueError(f"auto: the budget must be positive seconds, got {budget}")
    t_start = time.perf_counter()
    fit_part, valid = random_split(train, VALID_PCT, seed=seed)
    y = valid.frame["rating"].to_numpy(np.float64)
    sizes = Sizes(len(fit_part), train.n_users, train.n_items)
    say = console.print if console is not None else (lambda *a, **k: None)
    say(f"auto: {len(fit_part)} ratings to fit, {len(valid)} to validate (carved from the "
        f"training data), budget {budget:.0f} s")  # fmt: skip
    tried: list[dict[str, Any]] = []
    preds: list[np.ndarray] = []
    for k, text in enumerate(candidates):
        spec = ModelSpec.parse(text)
        cfg, note = fit_size(spec.kind, dict(spec.config), sizes)
        row: dict[str, Any] = {"spec": spec.name}
        if cfg is None:
            tried.append({**row, "status": note})
            say(f"  {spec.name}: {note}")
            continue
        spec = ModelSpec.of(spec.kind, **cfg)
        row["spec"] = spec.name
        seconds, _ = estimate(spec.kind, cfg, sizes)
        left = budget * SEARCH_SHARE - (time.perf_counter() - t_start)
        if seconds > left:
            tried.append({**row, "status": f"skipped: ~{seconds:.0f} s estimated, {left:.0f} s left"})
            say(f"  {spec.name}: {tried[-1]['status']}")
            continue
        t0 = time.perf_counter()
        model = build_untrained(spec, fit_part, seed + k)
        model.fit(fit_part, progress=progress)
        took = time.perf_counter() - t0
        p = model.predict(valid.frame["user"], valid.frame["item"]).astype(np.float64)
        if spec.kind == "dot-bias" and "epochs" not in cfg:  # calibrate this machine's speed
            sizes.speed = len(fit_part) * 5 / max(took, 1e-3)
        rmse = float(np.sqrt(np.mean((p - y) ** 2)))
        tried.append({**row, "status": note or "fitted", "valid_rmse": rmse, "seconds": took,
                      "estimated_seconds": seconds})  # fmt: skip
        preds.append(p)
        say(f"  {spec.name}: validation RMSE {rmse:.4f} in {took:.1f} s")
    fitted = [r for r in tried if "valid_rmse" in r]
    if not fitted:
        raise ValueError(f"auto: no candidate fits a budget of {budget:.0f} s; give a larger --budget")
    weights = nnls(np.stack(preds, 1), y)
    # refit only what the blend uses and the remaining budget allows (by validation-fit time)
    scale = len(train) / max(1, len(fit_part))
    order = np.argsort(-weights)
    chosen, spent = [], 0.0
    left = budget - (time.perf_counter() - t_start)
    for j in order:  # heaviest first; the heaviest is always refitted
        cost = fitted[j]["seconds"] * scale
        if weights[j] >= MIN_WEIGHT and (not chosen or spent + cost <= left):
            chosen.append(int(j))
            spent += cost
    P = np.stack([preds[j] for j in chosen], 1)
    w = nnls(P, y)  # re-fit the weights on the members kept
    keep = [j for j, wj in zip(chosen, w) if wj > 0]
    w = w[w > 0]
    blend_rmse = float(np.sqrt(np.mean((np.stack([preds[j] for j in keep], 1) @ w - y) ** 2)))
    blend = " + ".join(f"{wj:.3f} {fitted[j]['spec']}" for j, wj in zip(keep, w))
    say(f"  blend: {blend} (validation RMSE {blend_rmse:.4f}); refitting on all {len(train)} ratings")
    t_search = time.perf_counter() - t_start
    history = History()
    members = []
    for n, j in enumerate(keep):
        member = build_untrained(fitted[j]["spec"], train, seed + n)
        h = member.fit(train, progress=progress)
        members.append(member)
        history.rows.append({"epoch": n, "train_loss": h.final.get("train_loss", float("nan")),
                             "time": h.fit_seconds})  # fmt: skip
    model = Ensemble.of(members, list(w))  # even of one member: its fitted weight scales it
    history.fit_seconds = time.perf_counter() - t_start
    model.meta["auto"] = {
        "budget_seconds": budget,
        "n_fit": len(fit_part),
        "n_valid": len(valid),
        "candidates": tried,
        "chosen": [{"spec": fitted[j]["spec"], "weight": float(wj)} for j, wj in zip(keep, w)],
        "blend_valid_rmse": blend_rmse,
        "search_seconds": t_search,
        "refit_seconds": history.fit_seconds - t_search,
        "total_seconds": history.fit_seconds,
    }
    say(f"auto: done in {history.fit_seconds:.0f} s (search {t_search:.0f} s)")
    return model, history
