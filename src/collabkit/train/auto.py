"""The self-tuning preset: choose members, hyper-parameters and blend weights on the user's own data.

``build_auto(train, budget=..., memory=...)`` (the spec ``"auto"`` of ``build_model``, ``--preset auto``):

1. carve a validation tenth out of ``train`` (random, seeded) -- nothing outside ``train`` is
   ever read, so a test set stays untouched;
2. fit candidate members on the rest, cheapest first. Before each fit its time and peak memory
   are estimated (the kind's cost rule, ``estimate``, its speed calibrated on this machine by the
   fits so far) and it is skipped, with the reason, when this process's resident memory plus its
   working memory would pass ``memory``, or when it and the refit it may need would not fit in
   the time left after reserving the refit of the blend so far. A kind that cannot scale is
   shrunk or skipped by its size rule (``sized``);
3. blend: a support-aware blend of the candidates' validation predictions (``train.blend``): one
   weight per member in each cell of (user support) x (item support), refined by the users' and
   items' rating means and deviations, never worse on the rows it is fitted on than the constant
   blend, nor in any support bucket than a baseline member. Those rows are few on small data,
   so the ensemble takes whichever errs least out of fold: these cells, the constant blend or
   the best single member (``choose_form``);
4. refit the members the blend uses on the whole of ``train``, dropping (smallest mean weight
   first, weights refitted) any whose refit would break the time or memory budget, and return
   their support-aware Ensemble. Pairs with an unknown user or item get the baseline predictor of
   the baseline-kind candidate that erred least on such validation pairs (on every validation
   pair when they are few: ``_fallback``);
5. with timestamps, add time offsets (``models.timeshift``: each user's shift near a rating's
   time, fitted on the blend's residuals on its training ratings) when, fitted so on the fit
   part, they beat the blend on the validation part by one standard error, with the kernel width
   and shrinkage that do best there.

What it tried and chose (candidates with their estimates, validation RMSE, seconds, peak memory,
why any was skipped; the members with their weights; the weights by support bucket) is kept in
``model.meta["auto"]``, so it is saved in config.json, printed to ``console`` and shown by
``report``. A fit once started runs to its end: the budget holds as well as the estimates do.
"""

from __future__ import annotations

import gc
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Self

import numpy as np
import pandas as pd

from collabkit.core.loop import History
from collabkit.data.interactions import Ratings
from collabkit.data.split import random_split
from collabkit.models import timeshift
from collabkit.models.base import CollabModel, Sizes, get_model_class
from collabkit.models.ensemble import Ensemble, moments_of
from collabkit.train.blend import (
    FORMS,
    SupportBlend,
    choose_form,
    fit_support,
    nnls,
    rmse_of,
    standard_error,
)
from collabkit.train.spec import ModelSpec, build_untrained

__all__ = ["Sizes", "build_auto", "default_memory", "estimate", "fit_size", "nnls"]

#: default time budget in seconds: search, blend and refit of a ~1 M-rating set on 2 cores,
#: leaving the command (reading, scoring the test part, saving) within 3 minutes
DEFAULT_BUDGET = 150.0
#: default memory limit: the smaller of this and half the machine's RAM
DEFAULT_MEMORY = 1.5e9
#: share of the free memory a candidate is sized to (its refit on ~11% more ratings must fit too)
MEMORY_SHARE = 0.9
#: the validation part carved out of the training data
VALID_PCT = 0.1
#: members whose weight is below this in every support cell are dropped (a refit for nothing)
MIN_WEIGHT = 0.01
#: a command given the saved blend peaks at about this many times its weights: loading holds two
#: copies (the tensors read from the file, the model they are copied into) and scoring prepares a
#: third (each member's item side): the blend must load and score within the limit too
LOAD_FACTOR = 3.0
#: seconds kept back for the blend, counting support and assembling the ensemble
SLACK_SECONDS = 3.0
#: fits shorter than this do not calibrate the speed (start-up costs dominate them)
CALIBRATE_SECONDS = 1.0
#: the fallback is chosen on the validation pairs with an unknown side when there are at least
#: this many (on fewer, RMSE differences of a few thousandths are noise): else on every pair
MIN_FALLBACK_PAIRS = 100

#: candidates in the order they are tried (cheap first); later ones are hyper-parameter variants
CANDIDATES = (
    "baseline",
    "baseline(reg_item=5.0, reg_user=5.0)",
    "baseline(reg_item=2.0, reg_user=10.0)",
    "dot-bias(n_factors=50)",
    "dot-bias(n_factors=20, epochs=10, wd=0.5)",
    "ordinal(n_factors=50)",
    "hybrid(n_factors=50)",
    "bpmf(n_factors=10, samples=130, burn_in=20)",
    "autorec(n_factors=500, reg=40.0, epochs=300, lr=4e-3)",
    "bpmf(n_factors=20, samples=130, burn_in=20)",
    "autorec(n_factors=500, reg=60.0, epochs=300, lr=4e-3)",
)


def estimate(kind: str, cfg: dict[str, Any], s: Sizes) -> tuple[float, float]:
    """(seconds, working bytes) a candidate is expected to need on data of sizes ``s``: the kind's
    own cost rule (``CollabModel.cost``), its work in dot-bias rating-epochs at ``s.speed``."""
    work, mem = get_model_class(kind).cost(cfg, s)
    return work / s.speed, mem


def fit_size(kind: str, cfg: dict[str, Any], s: Sizes, limit: float) -> tuple[dict[str, Any] | None, str]:
    """The size rule: ``cfg`` as it is, shrunk to ``limit`` working bytes, or None; with the reason."""
    return get_model_class(kind).sized(cfg, s, limit)


def default_memory() -> float:
    """DEFAULT_MEMORY or half the machine's RAM, whichever is smaller (bytes)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return DEFAULT_MEMORY
    return min(DEFAULT_MEMORY, ram / 2)


def resident_bytes() -> float:
    """This process's resident memory now (Linux); elsewhere its peak so far (an upper bound)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        scale = 1 if os.uname().sysname == "Darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def state_bytes(model: CollabModel) -> int:
    """Bytes of a fitted model's parameters and buffers: what it keeps once trained."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


class PeakMemory:
    """``with PeakMemory() as peak: ...``: ``peak.bytes``, the most resident memory seen inside
    (sampled every 20 ms by a thread; torch's kernels release the GIL, so it sees their peaks)."""

    def __enter__(self) -> Self:
        self.bytes = resident_bytes()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(0.02):
            self.bytes = max(self.bytes, resident_bytes())

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.bytes = max(self.bytes, resident_bytes())


@dataclass
class Run:
    """What one search reads and keeps: the parts of the data, the budgets, the fits so far."""

    fit_part: Ratings
    valid: Ratings
    budget: float  # seconds
    limit: float  # bytes the process may hold
    say: Callable[..., Any]
    seed: int = 42
    progress: bool = False
    t_start: float = field(default_factory=time.perf_counter)
    tried: list[dict[str, Any]] = field(default_factory=list)  # every candidate's row
    fitted: list[dict[str, Any]] = field(default_factory=list)  # the fitted ones' rows
    preds: list[np.ndarray] = field(default_factory=list)  # and their validation predictions
    point_sums: list[np.ndarray] = field(default_factory=list)  # and their fit-part predictions' time-point sums
    speeds: list[float] = field(default_factory=list)  # work per second of the fits so far

    def __post_init__(self) -> None:
        self.y = self.valid.frame["rating"].to_numpy(np.float64)
        n = len(self.fit_part) + len(self.valid)
        cols = ["user", "item", "rating"]  # distinct users, items and rating values of the whole
        distinct = pd.concat([self.fit_part.frame[cols], self.valid.frame[cols]]).nunique()
        self.sizes = Sizes(len(self.fit_part), int(distinct["user"]), int(distinct["item"]), levels=int(distinct["rating"]))
        self.scale = n / max(1, len(self.fit_part))  # a refit's work, against the search fit's
        self.times = TimePoints.of(self.fit_part, self.valid) if self.fit_part.has_timestamps else None
        _warm_up(self.fit_part)
        self.base = resident_bytes()  # the data and libraries: what every fit starts from

    def clock(self) -> float:
        return time.perf_counter() - self.t_start

    def try_candidate(self, k: int, text: str) -> None:
        """Fit candidate ``text`` on the fit part unless its size, time or memory rule says no;
        its row in ``tried`` says what happened and why."""
        spec = ModelSpec.parse(text)
        row: dict[str, Any] = {"spec": spec.name}
        self.tried.append(row)
        free = MEMORY_SHARE * (self.limit - self.base) / self.scale  # its refit must fit too
        cfg, note = fit_size(spec.kind, dict(spec.config), self.sizes, free)
        if cfg is None:
            return self._skip(row, note)
        spec = ModelSpec.of(spec.kind, **cfg)
        if any(r.get("spec") == spec.name for r in self.tried[:-1]):
            return self._skip(row, f"skipped: {note}, which makes it the same as an earlier candidate, {spec.name}")
        seconds, mem = estimate(spec.kind, cfg, self.sizes)
        row.update(spec=spec.name, estimated_seconds=seconds, estimated_mb=mem / 1e6)
        reserve = _refit_seconds(self.fitted, self.preds, self.y, self.scale) + SLACK_SECONDS
        left = self.budget - self.clock() - reserve
        if seconds * (1 + self.scale) > left:
            return self._skip(row, f"skipped: estimated ~{seconds:.0f} s to fit and ~{seconds * self.scale:.0f} s "
                              f"to refit, {max(left, 0):.0f} s left ({reserve:.0f} s kept for the refit so far)")  # fmt: skip
        t0 = time.perf_counter()
        with PeakMemory() as peak:
            model = build_untrained(spec, self.fit_part, self.seed + k)
            model.fit(self.fit_part, progress=self.progress)
            p = model.predict(self.valid.frame["user"], self.valid.frame["item"]).astype(np.float64)
            if self.times is not None:  # in-sample, as the refit's offsets will be fitted
                self.point_sums.append(self.times.sums(model.predict(self.fit_part.frame["user"], self.fit_part.frame["item"])))
        took = time.perf_counter() - t0
        if took >= CALIBRATE_SECONDS:  # this machine's speed, as the kinds' cost rules count work
            self.speeds.append(get_model_class(spec.kind).cost(cfg, self.sizes)[0] / took)
            self.sizes.speed = float(np.median(self.speeds))
        row.update(status=note or "fitted", valid_rmse=rmse_of(p, self.y), seconds=took,
                   mb=(peak.bytes - self.base) / 1e6, kept_mb=state_bytes(model) / 1e6)  # fmt: skip
        self.fitted.append(row)
        self.preds.append(p)
        self.say(f"  {spec.name}: validation RMSE {row['valid_rmse']:.4f} in {took:.1f} s")
        del model
        gc.collect()

    def _skip(self, row: dict[str, Any], why: str) -> None:
        row["status"] = why
        self.say(f"  {row['spec']}: {why}")


def build_auto(
    train: Ratings,
    *,
    seed: int = 42,
    budget: float | None = None,
    memory: float | None = None,
    candidates: tuple[str, ...] = CANDIDATES,
    console: Any = None,
    progress: bool = False,
) -> tuple[CollabModel, History]:
    """Search, blend and refit on ``train`` only (module docstring); returns (model, History).

    ``budget``: seconds (DEFAULT_BUDGET); ``memory``: the process's peak in GB (``default_memory``).
    """
    budget = DEFAULT_BUDGET if budget is None else float(budget)
    if not budget > 0:
        raise ValueError(f"auto: the budget must be positive seconds, got {budget}")
    limit = default_memory() if memory is None else float(memory) * 1e9
    if not limit > 0:
        raise ValueError(f"auto: the memory limit must be positive GB, got {memory}")
    say = console.print if console is not None else (lambda *a, **k: None)
    fit_part, valid = random_split(train, VALID_PCT, seed=seed)
    say(f"auto: {len(fit_part)} ratings to fit, {len(valid)} to validate (carved from the training "
        f"data); budget {budget:.0f} s, memory {limit / 1e9:.2f} GB")  # fmt: skip
    run = Run(fit_part, valid, budget, limit, say, seed, progress)
    say(f"  {run.base / 1e9:.2f} GB in use for the data and libraries: {(limit - run.base) / 1e9:.2f} GB free for fitting")
    for k, text in enumerate(candidates):
        run.try_candidate(k, text)
    if not run.fitted:
        raise ValueError(f"auto: no candidate fits a budget of {budget:.0f} s and {limit / 1e9:.2f} GB; "
                         "give a larger --budget or --memory")  # fmt: skip
    seconds = budget - run.clock() - SLACK_SECONDS
    counts, moments = _counts(fit_part, valid), _moments(fit_part, valid)
    chosen, blend = _choose(run.fitted, run.preds, run.y, counts, moments, seconds, limit - run.base, run.scale, say)
    names = [run.fitted[j]["spec"] for j in chosen]
    shift = None if run.times is None else run.times.choose(run, chosen, blend.mean_weights, say)
    fallback = _fallback(run.fitted, run.preds, run.y, counts)
    if fallback is not None:
        say(f"  unknown ids: the baseline of {run.fitted[fallback[0]]['spec']} (validation RMSE "
            f"{fallback[1]:.4f} on {fallback[2]} pairs)")  # fmt: skip
    say(f"  blend: out of fold, support cells {blend.cells_oof_rmse:.4f}, constant weights "
        f"{blend.constant_oof_rmse:.4f}, best single member {blend.single_rmse:.4f} (fitted on the "
        f"validation rows: cells {blend.cells_rmse:.4f}, constant {blend.constant_rmse:.4f})")
    what = FORMS[blend.form] + (f" of {len(chosen)} members" if len(chosen) > 1 else f", {names[0]}")
    if blend.note:
        say(f"  {blend.note}")
        what = f"the baseline member alone, {names[0]}"
    say(f"  using {what}: validation RMSE {blend.rmse:.4f}; refitting on all {len(train)} ratings")
    t_search = run.clock()
    history, members = History(), [None] * len(chosen)
    for n in _refit_order(run.fitted, chosen):  # the most working memory first, while little is kept
        members[n] = build_untrained(names[n], train, seed + n)
        h = members[n].fit(train, progress=progress)
        history.rows.extend({"member": names[n], **r} for r in h.rows or [{"time": h.fit_seconds}])
    refine = None if blend.refine is None else (blend.refine, blend.refine_cells)
    model = Ensemble.of(members, list(blend.mean_weights), support=(blend.edges, blend.cells), train=train,
                        fallback=_fallback_model(run.fitted, chosen, members, fallback, train, seed),
                        refine=refine, times=(0.0, 0.0) if shift is None else (shift["scale"], shift["reg"]))  # fmt: skip
    if shift is not None:
        shift["points"] = model.config.time_points
    history.fit_seconds = run.clock()
    model.meta["auto"] = {
        "budget_seconds": budget, "memory_gb": limit / 1e9, "n_fit": len(fit_part), "n_valid": len(valid),
        "candidates": run.tried,
        "chosen": [
            {"spec": names[n], "weight": float(blend.mean_weights[n]),
             "constant_weight": float(blend.constant[n]), "valid_rmse": run.fitted[j]["valid_rmse"]}
            for n, j in enumerate(chosen)
        ],
        "blend_valid_rmse": blend.rmse, "constant_blend_valid_rmse": blend.constant_rmse,
        "blend_oof_rmse": blend.cells_oof_rmse, "constant_blend_oof_rmse": blend.constant_oof_rmse,
        "single_rmse": blend.single_rmse, "blend_form": blend.form, "blend_note": blend.note,
        "fallback": None if fallback is None else {
            "spec": run.fitted[fallback[0]]["spec"], "valid_rmse": fallback[1], "pairs": fallback[2]},
        "support": blend.to_json(), "time_offsets": shift, "search_seconds": t_search,
        "refit_seconds": history.fit_seconds - t_search, "total_seconds": history.fit_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip
    say(f"auto: done in {history.fit_seconds:.0f} s (search {t_search:.0f} s); the ensemble is "
        f"shown by {model.meta['representation'] or 'no factor or bias model'}")  # fmt: skip
    return model, history


def _warm_up(data: Ratings) -> None:
    """One small untimed fit of the compiled training step: the first fit in a process ran it
    ~25x slower on Epinions (~28 s for an epoch of ~1 s), which would have made every estimate
    calibrated on it far too slow."""
    build_untrained("dot-bias(n_factors=2, epochs=1)", data.with_frame(data.frame.head(2000))).fit(
        data.with_frame(data.frame.head(2000))
    )


def _counts(fit_part: Ratings, valid: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Each validation row's user's and item's number of ratings in the fit part."""
    cu = fit_part.frame["user"].value_counts().reindex(valid.frame["user"]).fillna(0).to_numpy()
    ci = fit_part.frame["item"].value_counts().reindex(valid.frame["item"]).fillna(0).to_numpy()
    return cu, ci


def _moments(fit_part: Ratings, valid: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Each validation row's user's and item's rating (mean, population std) in the fit part,
    (n, 2) each (0, 0 for a side without ratings), as ``Ensemble`` counts them on its training data."""
    r, out = fit_part.frame["rating"].to_numpy(np.float64), []
    for side in ("user", "item"):
        keys = pd.Index(fit_part.frame[side].unique())
        stats = moments_of(keys.get_indexer(fit_part.frame[side]), r, len(keys)).astype(np.float64)
        at = keys.get_indexer(valid.frame[side])
        out.append(np.where((at >= 0)[:, None], stats[np.maximum(at, 0)], 0.0))
    return out[0], out[1]


@dataclass
class TimePoints:
    """The fit part's (user, second) points, to choose the time offsets' kernel width and
    shrinkage (``models.timeshift``) on the validation part: each point's count and rating sum,
    the point of each fit row, and each validation row's user index and time."""

    keys: np.ndarray
    origin: int
    inverse: np.ndarray
    counts: np.ndarray
    rating_sums: np.ndarray
    valid_users: np.ndarray
    valid_times: np.ndarray

    @classmethod
    def of(cls, fit_part: Ratings, valid: Ratings) -> TimePoints:
        users = pd.Index(fit_part.frame["user"].unique())
        r = fit_part.frame["rating"].to_numpy(np.float64)
        keys, rating_sums, counts, origin, inverse = timeshift.group(users.get_indexer(fit_part.frame["user"]), fit_part.times, r)
        return cls(keys, origin, inverse, counts, rating_sums, users.get_indexer(valid.frame["user"]), valid.times)

    def sums(self, pred: np.ndarray) -> np.ndarray:
        """Each point's sum of a member's in-sample predictions ``pred`` (one per fit row)."""
        return np.bincount(self.inverse, pred.astype(np.float64), len(self.counts)).astype(np.float32)

    def choose(self, run: Run, chosen: list[int], weights: np.ndarray, say: Callable[..., Any]) -> dict[str, Any] | None:
        """The kernel width in ``timeshift.SCALES`` and shrinkage in ``timeshift.REGS`` whose
        offsets, fitted on the in-sample residuals of the blend (at its mean ``weights``) on the fit
        part, err least on the validation part, as a record for ``meta["auto"]``; None unless they
        beat no offsets there by one standard error."""
        seen = self.valid_users >= 0
        if seen.sum() < 2:
            say("  time offsets: not used (no validation ratings of users with timed fit ratings)")
            return None
        resid = self.rating_sums - sum(w * run.point_sums[j] for w, j in zip(weights, chosen))
        e = run.y - np.stack([run.preds[j] for j in chosen], 1) @ weights
        num, den = timeshift.weighed(self.keys, resid, self.counts, self.origin, timeshift.SCALES,
                                     self.valid_users, self.valid_times)  # fmt: skip
        grid = [(k, reg) for k in range(len(timeshift.SCALES)) for reg in timeshift.REGS]
        k, reg = min(grid, key=lambda g: float(np.mean((e - num[g[0]] / (den[g[0]] + g[1])) ** 2)))
        errors = e - num[k] / (den[k] + reg)
        diff = errors**2 - e**2
        without, within = (float(np.sqrt(np.mean(x**2))) for x in (e, errors))
        if not diff.mean() < -standard_error(diff):
            say(f"  time offsets: not used (validation RMSE {without:.4f}, with them {within:.4f}: "
                "not better by one standard error)")  # fmt: skip
            return None
        scale = timeshift.SCALES[k]
        say(f"  time offsets: validation RMSE {without:.4f} -> {within:.4f} (each user's shift near a rating's "
            f"time: kernel width {scale:g} s, shrinkage {reg:g})")  # fmt: skip
        return {"scale": scale, "reg": reg, "valid_rmse_without": without, "valid_rmse_with": within}


def _fallback(
    fitted: list[dict[str, Any]], preds: list[np.ndarray], y: np.ndarray, counts: tuple[np.ndarray, np.ndarray]
) -> tuple[int, float, int] | None:
    """(index, RMSE, pairs) of the fitted baseline-kind candidate that errs least on the validation
    pairs with an unknown side (every pair when they are fewer than MIN_FALLBACK_PAIRS): the
    ensemble scores those with its baseline predictor alone, and the shrinkage best for them need
    not be the blend's (None: no baseline-kind candidate was fitted)."""
    unknown = (counts[0] == 0) | (counts[1] == 0)
    kinds = [j for j, f in enumerate(fitted) if ModelSpec.parse(f["spec"]).kind == "baseline"]
    if not kinds:
        return None
    rows = unknown if unknown.sum() >= MIN_FALLBACK_PAIRS else np.ones_like(unknown)
    errs = {j: rmse_of(preds[j][rows], y[rows]) for j in kinds}
    best = min(kinds, key=lambda j: errs[j])
    return best, errs[best], int(rows.sum())


def _fallback_model(
    fitted: list[dict[str, Any]], chosen: list[int], members: list[CollabModel],
    fallback: tuple[int, float, int] | None, train: Ratings, seed: int,
) -> CollabModel | None:  # fmt: skip
    """The ensemble's fallback: the chosen baseline, a member already or refitted on ``train``
    (a few sweeps over it), or None for the first member's."""
    if fallback is None:
        return None
    j = fallback[0]
    if j in chosen:
        return members[chosen.index(j)]
    model = build_untrained(fitted[j]["spec"], train, seed)
    model.fit(train)
    return model


def _refit_seconds(fitted: list[dict[str, Any]], preds: list[np.ndarray], y: np.ndarray, scale: float) -> float:
    """Seconds to refit the members the constant blend of the fits so far uses."""
    if not fitted:
        return 0.0
    w = nnls(np.stack(preds, 1), y)
    return sum(f["seconds"] * scale for f, wj in zip(fitted, w) if wj >= MIN_WEIGHT)


def _choose(
    fitted: list[dict[str, Any]], preds: list[np.ndarray], y: np.ndarray, counts: tuple[np.ndarray, np.ndarray],
    moments: tuple[np.ndarray, np.ndarray], seconds: float, limit: float, scale: float, say: Callable[..., Any],
) -> tuple[list[int], Any]:  # fmt: skip
    """(indices of the members to refit, their support-aware blend): the members the blend uses,
    without those whose refit would not fit the time or memory left (smallest weight first)."""
    chosen, note = list(range(len(fitted))), ""
    while True:
        blend = _blend(fitted, preds, chosen, y, counts, moments)
        note = blend.note or note  # a baseline chosen for want of evidence: refitted alone next
        used = blend.cells.reshape(-1, len(chosen)).max(0) >= MIN_WEIGHT
        if not used.all():  # unused members: refit the blend without them
            for j in [c for c, u in zip(chosen, used) if not u]:
                fitted[j]["status"] = "fitted; not in the blend (weight < 0.01 in every support cell)"
            chosen = [c for c, u in zip(chosen, used) if u] or chosen[:1]
            continue
        need_s = sum(fitted[j]["seconds"] * scale for j in chosen)
        need_b = _refit_bytes(fitted, chosen, scale)
        if len(chosen) == 1 or (need_s <= seconds and need_b <= limit):
            return chosen, replace(blend, note=note)
        # drop, among the members whose refit costs at least a tenth of the excess (dropping a
        # cheap one would not help), the one that gives least weight for what it costs
        slow = need_s > seconds
        cost = np.array([fitted[j]["seconds"] if slow else (LOAD_FACTOR * fitted[j]["kept_mb"] + fitted[j]["mb"]) * 1e6
                         for j in chosen])  # fmt: skip
        excess = need_s - seconds if slow else need_b - limit
        value = np.where(cost >= 0.1 * min(excess, cost.max()), blend.mean_weights / np.maximum(cost, 1e-9), np.inf)
        drop = chosen[int(np.argmin(value))]
        too_big = [j for j in chosen if fitted[j]["mb"] * 1e6 * scale > limit]
        if not slow and too_big:  # a member that cannot be refitted at all goes first
            drop = max(too_big, key=lambda j: fitted[j]["mb"])
        why = (f"~{need_s:.0f} s to refit the blend, {max(seconds, 0):.0f} s left" if slow
               else f"~{need_b / 1e9:.2f} GB to refit the blend, {limit / 1e9:.2f} GB free")  # fmt: skip
        fitted[drop]["status"] = f"fitted; dropped from the blend: {why}"
        say(f"  {fitted[drop]['spec']}: {fitted[drop]['status']}")
        chosen.remove(drop)


def _refit_order(fitted: list[dict[str, Any]], chosen: list[int]) -> list[int]:
    """Positions in ``chosen``, the member with the most working memory first."""
    return sorted(range(len(chosen)), key=lambda n: -fitted[chosen[n]]["mb"])


def _refit_bytes(fitted: list[dict[str, Any]], chosen: list[int], scale: float) -> float:
    """Peak bytes above the data while refitting ``chosen`` in ``_refit_order`` (each fit's
    working memory on top of what the members refitted before it keep, both grown by ``scale``),
    or while loading the saved blend (LOAD_FACTOR times its weights), whichever is larger."""
    kept, peak = 0.0, 0.0
    for n in _refit_order(fitted, chosen):
        row = fitted[chosen[n]]
        peak = max(peak, kept + row["mb"] * 1e6 * scale)
        kept += row["kept_mb"] * 1e6 * scale
    return max(peak, LOAD_FACTOR * kept)


def _blend(
    fitted: list[dict[str, Any]], preds: list[np.ndarray], chosen: list[int], y: np.ndarray,
    counts: tuple[np.ndarray, np.ndarray], moments: tuple[np.ndarray, np.ndarray] | None = None,
) -> SupportBlend:  # fmt: skip
    """The support-aware blend of the ``chosen`` fits (the baseline kind's fits are its baselines),
    refined by ``moments`` (``_moments``) when given, in the form that errs least out of fold."""
    P = np.stack([preds[j] for j in chosen], 1)
    baselines = [n for n, j in enumerate(chosen) if ModelSpec.parse(fitted[j]["spec"]).kind == "baseline"]
    names = [fitted[j]["spec"] for j in chosen]
    return choose_form(fit_support(P, y, *counts, baselines, names, moments=moments), P, y, *counts, baselines, names)
