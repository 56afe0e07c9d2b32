"""One folder a person can open: what a trained model learned and how well it does.

``write_report(model_dir, out, train, test)`` writes a self-contained page (inline CSS, Plotly
charts with Plotly's JS inline; no network) with one section per question, the map as its own files, and every number as
JSON::

    out/index.html  out/item_map.png  out/item_map.html  out/report.json

    model     what was trained, on what, as tables            (config.json); for an ensemble its
              members and weights, and for --preset auto what it tried and skipped (with why)
              and the blend's weights by support bucket
    training  train/valid loss per epoch, one curve per member of an ensemble
    biases    top and bottom items by bias; does bias rank items like their mean rating?
    pca       the item map on two principal components; what each axis means
    similar   nearest items by factor cosine, for the most-rated items
    compare   this model against the baselines on the same split (rmse, mae, ranking @k, and
              what the lists are made of: coverage, Gini, ARP, APLT), each number with its 95%
              interval over the test users, each baseline tested against this model (paired);
              on at most REPORT_USERS test users drawn at random (the page says so)
    groups    the same by user activity (training ratings of the user): a chart with intervals
              (also out/by_activity.png)
    calibration  for models that give a distribution (PROBA): log-loss, expected calibration
              error of P(r >= 4) and its reliability plot (out/reliability.png)

A section that doesn't apply (a mean model has no biases, no test set...) says why instead of
disappearing, so every report has the same sections. An ensemble's biases, map and similar items
are its representation member's (``meta["representation"]``), named in each of those sections.

The folder is marked as a report (``files.MARKER``): a report replaces only a report folder with
nothing else in it (``check_out``), never a model folder or a user's files.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from collabkit.checkpoint import load_items, load_model, read_config
from collabkit.data.interactions import Ratings
from collabkit.evaluate.compare import Comparison, compare_trained
from collabkit.evaluate.ranking import RELEVANT_THRESHOLD
from collabkit.files import atomic_write_text, check_can_write, claim_folder, mark_folder, writing
from collabkit.interpret.biases import bias_table, bias_vs_mean
from collabkit.interpret.charts import figure_html, html_page, plain, table_html
from collabkit.interpret.groups import figure as groups_figure
from collabkit.interpret.groups import save_png as save_groups_png
from collabkit.interpret.pca import item_pca, map_figure, save_html, save_png
from collabkit.interpret.similar import default_min_ratings, similar_items, supported
from collabkit.models.base import CollabModel
from collabkit.train.blend import FORMS
from collabkit.train.build import ModelSpec, build_model

REPORT = "report"  # what the marker of a report folder says it holds
FILES = ("index.html", "report.json", "item_map.png", "item_map.html", "reliability.png", "by_activity.png")  # all it may hold
#: what a model is compared with: the global mean, the baseline predictor, the most popular items
BASELINES = ("mean", "baseline", "most-popular")
#: the comparison scores at most this many test users (a seeded random sample, said on the page),
#: so the report of an ensemble on Epinions (296 k items to rank per user) takes under a minute;
#: ``collabkit compare`` and ``evaluate`` score them all
REPORT_USERS = 2000

SECTIONS = {  # anchor -> heading, in page order
    "model": "The model",
    "training": "Training curves",
    "biases": "Item biases",
    "pca": "Map of the item factors",
    "similar": "Similar items",
    "compare": "Comparison with baselines",
    "groups": "Results by user activity",
    "calibration": "Calibration of the rating distributions",
}


@dataclass
class Inputs:
    """What every section may read: the saved model and the data it was trained and tested on."""

    model: CollabModel
    config: dict[str, Any]  # config.json: kind, config, train recipe, history
    items: pd.DataFrame | None  # titles, genres
    train: Ratings
    test: Ratings | None
    out: Path
    k: int = 10
    relevant_threshold: float | None = RELEVANT_THRESHOLD


def write_report(
    model_dir: str | Path,
    out: str | Path,
    train: Ratings,
    test: Ratings | None = None,
    baselines: Sequence[str] = BASELINES,
    k: int = 10,
    relevant_threshold: float | None = RELEVANT_THRESHOLD,
    n_top: int = 5,
    n_map: int = 50,
    components: tuple[int, int] = (1, 2),
    examples: Sequence[object] | None = None,
    min_ratings: int | None = None,
) -> dict[str, Any]:
    """Write the report of the model saved in ``model_dir`` into folder ``out``; returns its data.

    ``train`` is the data the model was trained on (rating counts, means, baselines), ``test``
    its held-out part (the comparison; None skips it). ``examples`` (ids or titles) are the items
    of the similar-items section, by default the 4 most-rated. Neighbours and the bias-vs-mean
    comparison only count items with >= ``min_ratings`` training ratings (default:
    ``interpret.similar.default_min_ratings``).
    """
    model_dir, out = Path(model_dir), Path(out)
    check_out(out)
    items = load_items(model_dir)
    test = sampled(test, REPORT_USERS)
    inputs = Inputs(
        load_model(model_dir), read_config(model_dir),
        items if items is not None else train.items, train, test, out, k, relevant_threshold,
    )  # fmt: skip
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        mark_folder(out, REPORT)
    if min_ratings is None:
        min_ratings = default_min_ratings(train.frame["item"].value_counts())
    cache: dict[str, Comparison] = {}

    def comparison() -> Comparison:  # computed once, for the two sections that show it
        if "it" not in cache:
            cache["it"] = _comparison(inputs, baselines, k, relevant_threshold)
        return cache["it"]

    builders = {
        "model": lambda: _model(inputs),
        "training": lambda: _training(inputs),
        "biases": lambda: _biases(inputs, n_top, min_ratings),
        "pca": lambda: _pca(inputs, n_map, components),
        "similar": lambda: _similar(inputs, examples, n_top, min_ratings),
        "compare": lambda: _compare(inputs, comparison()),
        "groups": lambda: _groups(inputs, comparison()),
        "calibration": lambda: _calibration(inputs),
    }
    data: dict[str, Any] = {}
    body = []
    for anchor, build in builders.items():
        try:
            inner, data[anchor] = build()
        except NotApplicable as e:
            inner, data[anchor] = _note(str(e)), None
        body.append(
            f"<section id='{anchor}'><h2>{html.escape(SECTIONS[anchor])}</h2>\n{inner}\n</section>"
        )
    nav = " &middot; ".join(f"<a href='#{a}'>{html.escape(t)}</a>" for a, t in SECTIONS.items())
    title = f"collabkit report: {inputs.model.kind} on {train.name}"
    page = html_page(title, f"<nav><p>{nav}</p></nav>\n" + "\n".join(body))
    atomic_write_text(out / "index.html", page)
    data = jsonable(data)
    atomic_write_text(out / "report.json", json.dumps(data, indent=1))
    files = sorted(p.name for p in out.iterdir() if p.name in FILES)
    return {"out": str(out), "index": str(out / "index.html"), "files": files, **data}


def check_out(out: str | Path) -> None:
    """Raise now if a report could not be written to ``out``: a folder that is not a collabkit
    report with nothing else in it (a model folder, a user's folder) is refused, as is an
    unwritable place. Call it before the work."""
    claim_folder(out, REPORT, FILES, unmarked=lambda folder: (folder / "report.json").is_file())
    check_can_write(out)


def sampled(test: Ratings | None, n_users: int, seed: int = 0) -> Ratings | None:
    """``test`` as it is, or the held-out ratings of ``n_users`` of its users drawn at random
    (seeded), its name saying so."""
    if test is None:
        return None
    users = test.frame["user"].unique()
    if len(users) <= n_users:
        return test
    keep = np.random.default_rng(seed).choice(users, n_users, replace=False)
    name = f"{test.name} ({n_users} of its {len(users)} users, drawn at random)"
    return test.subset(test.frame["user"].isin(keep).to_numpy(), name=name)


class NotApplicable(Exception):
    """A section that can't be drawn for this model or data; its message is shown instead."""


# --- the sections: each returns (inner HTML, its data) ------------------------------------------


def _model(inputs: Inputs) -> tuple[str, dict]:
    m = inputs.model
    facts = {
        "kind": m.kind,
        "trained as": inputs.config.get("train", {}).get("spec") or m.meta.get("spec") or m.kind,
        "users": len(m.users),
        "items": len(m.items),
        "data": inputs.train.name,
    }
    parts = m.components()
    if len(parts) == 1:
        facts["options"] = spec_text(m)
    if m.meta.get("representation"):
        facts["shown by"] = m.meta["representation"]
    inner = table_html(pd.DataFrame({"": list(facts), "value": [str(v) for v in facts.values()]}))
    data: dict[str, Any] = dict(facts)
    if len(parts) > 1:
        members = _members(m)
        inner += table_html(members, "Members (weight: the blend's mean over its fit)")
        data["members"] = members.to_dict(orient="records")
    auto = m.meta.get("auto")
    if auto:
        inner += _auto_tables(auto)
        data["auto"] = auto
    return inner, data


def spec_text(model: CollabModel) -> str:
    """A model's options that differ from its kind's defaults, as ``name=value`` text."""
    default = type(model.config)().to_json()
    skip = ("seed", "y_range", "clip", "levels", "user_features", "item_features", "members", "cell_weights")
    changed = [f"{k}={v!r}" for k, v in model.config.to_json().items() if k not in skip and v != default.get(k)]
    return ", ".join(changed) or "the kind's defaults"


def _members(model: CollabModel) -> pd.DataFrame:
    """One row per component: its kind and options, its weight."""
    rows = [{"member": f"{part.kind}({spec_text(part)})".replace("(the kind's defaults)", ""), "weight": float(w)}
            for w, part in model.components()]  # fmt: skip
    return pd.DataFrame(rows)


def _auto_tables(auto: dict[str, Any]) -> str:
    """--preset auto's choices as tables: members, weights by support bucket, candidates tried."""
    budget = (f"<p>Budget {auto['budget_seconds']:.0f} s and {auto.get('memory_gb', float('nan')):.2f} GB; "
              f"took {auto['total_seconds']:.0f} s (search {auto['search_seconds']:.0f} s, refit "
              f"{auto['refit_seconds']:.0f} s). Tuned on {auto['n_fit']} ratings, validated on "
              f"{auto['n_valid']} carved from the training data.</p>")  # fmt: skip
    if auto.get("fallback"):
        fb = auto["fallback"]
        budget += (f"<p>Pairs with an unknown user or item: the baseline predictor of {fb['spec']} "
                   f"(validation RMSE {fb['valid_rmse']:.4f} on {fb['pairs']} pairs).</p>")  # fmt: skip
    if auto.get("time_offsets"):
        d = auto["time_offsets"]
        budget += (f"<p>Time offsets (each user's shift near a rating's time: kernel width {d['scale']:g} s, "
                   f"shrinkage {d['reg']:g}, {d['points']} user-seconds of training residuals): "
                   f"validation RMSE {d['valid_rmse_without']:.4f} without, {d['valid_rmse_with']:.4f} with; "
                   "they apply to ratings scored with their time, such as a test part with timestamps.</p>")  # fmt: skip
    chosen = pd.DataFrame(auto["chosen"]).rename(columns={
        "spec": "member", "weight": "mean weight", "constant_weight": "constant-blend weight",
        "valid_rmse": "validation RMSE"})  # fmt: skip
    nan = float("nan")
    errs = (f"support cells {auto.get('blend_oof_rmse', nan):.4f}, one weight per member "
            f"{auto.get('constant_blend_oof_rmse', nan):.4f}, best single member {auto.get('single_rmse', nan):.4f}")
    valid = f"validation RMSE {auto['blend_valid_rmse']:.4f}"
    if auto.get("blend_note"):  # the baseline member for want of evidence, not the lowest error
        caption = f"Blend: the baseline member alone: {auto['blend_note']} (out of fold: {errs}); {valid}"
    else:
        caption = (f"Blend: {FORMS[auto.get('blend_form', 'cells')]}, the form that erred least out of fold "
                   f"({errs}); {valid} fitted on those ratings")  # fmt: skip
    out = budget + table_html(chosen, caption)
    buckets = (auto.get("support") or {}).get("buckets") or []
    if buckets:
        rows = []
        for b in buckets:
            row = {"side": b["side"], "ratings": b["ratings"], "pairs": b["pairs"], "RMSE": b["rmse"],
                   "constant": b["constant_rmse"], "baseline": b.get("baseline_rmse", float("nan"))}  # fmt: skip
            rows.append({**row, **{f"w {n + 1}": w for n, w in enumerate(b["weights"].values())}})
        legend = "; ".join(f"w {n + 1}: {name}" for n, name in enumerate(buckets[0]["weights"]))
        out += table_html(pd.DataFrame(rows), "Weights by support bucket (validation pairs by the "
                          "training ratings of their user or item; RMSE of the blend, of constant "
                          f"weights, of the best baseline member). {legend}")
    tried = pd.DataFrame([
        {"candidate": c["spec"], "status": c.get("status", ""), "validation RMSE": c.get("valid_rmse", float("nan")),
         "seconds": c.get("seconds", float("nan")), "estimated s": c.get("estimated_seconds", float("nan")),
         "peak MB": c.get("mb", float("nan"))}
        for c in auto["candidates"]
    ])  # fmt: skip
    return out + table_html(tried, "Candidates tried, skipped or dropped (and why)")


def _training(inputs: Inputs) -> tuple[str, list]:
    history = pd.DataFrame(inputs.config.get("history", []))
    if history.empty or not ({"train_loss", "member"} & set(history.columns)):
        raise NotApplicable(
            "No training history was saved with this model (`collabkit train --out` saves one)."
        )
    if "member" in history.columns:
        return _member_curves(history), history.to_dict(orient="records")
    inner = (
        "<p>Mean squared error per epoch: the training loss should fall; the validation loss "
        "should fall too (rising again would mean over-fitting).</p>"
        + figure_html(training_figure(history), "training-chart", 320)
        + table_html(history)
    )
    return inner, history.to_dict(orient="records")


def _member_curves(history: pd.DataFrame) -> str:
    """An ensemble's history: one curve per member with epochs; a line for those without."""
    members = list(dict.fromkeys(history["member"]))
    curves = [m for m in members if "train_loss" in history.columns and history.loc[history["member"] == m, "train_loss"].notna().sum() > 1]
    flat = [m for m in members if m not in curves]
    seconds = history.groupby("member", sort=False)["time"].sum() if "time" in history.columns else pd.Series(dtype=float)
    inner = ("<p>Each member's training loss per epoch (or Gibbs sweep), in its own units: each "
             "should fall. Members are trained one after another on the whole training part.</p>")
    if curves:
        inner += figure_html(members_figure(history, curves), "training-chart", 220 * len(curves))
    if flat:
        inner += "<p>Fitted in closed form (no epochs): " + html.escape("; ".join(flat)) + ".</p>"
    table = pd.DataFrame({"member": members, "seconds": [float(seconds.get(m, np.nan)) for m in members]})
    return inner + table_html(table, "Training seconds per member")


def _biases(inputs: Inputs, n_top: int, min_ratings: int) -> tuple[str, dict]:
    try:
        table = bias_table(inputs.model, "item", inputs.train, inputs.items)
        agree = bias_vs_mean(table, min_ratings, n=10)
    except ValueError as e:
        raise NotApplicable(str(e)) from None
    show = [c for c in ("title", "item", "bias", "n_ratings", "mean_rating") if c in table.columns]
    top, bottom = table.head(n_top)[show], table.tail(n_top)[::-1][show]
    inner = (
        _shown_by(inputs.model)
        + "<p>An item's bias is its appeal once taste is accounted for: a low bias means even "
        "people whose taste fits the item tend not to like it.</p>"
        + table_html(top, f"Top {n_top} items by bias")
        + table_html(bottom, f"Bottom {n_top} items by bias")
        + "<p>Does ranking by bias agree with ranking by mean rating? Spearman rank correlation "
        f"<b>{agree.spearman:.3f}</b> over the {agree.n_items} items with at least {min_ratings} "
        "ratings. The largest disagreements (rank_gap &gt; 0: the model ranks the item higher "
        "than its mean rating does):</p>"
        + table_html(agree.disagreements[[*show, "bias_rank", "mean_rank", "rank_gap"]])
    )
    data = {
        "top": top.to_dict(orient="records"),
        "bottom": bottom.to_dict(orient="records"),
        "bias_vs_mean": agree.to_json(),
    }
    return inner, data


def _pca(inputs: Inputs, n_map: int, components: tuple[int, int]) -> tuple[str, dict]:
    x, y = components
    try:
        pca = item_pca(inputs.model, max(3, x, y), inputs.train, inputs.items)
    except ValueError as e:
        raise NotApplicable(str(e)) from None
    save_png(pca, inputs.out / "item_map.png", n_map, x, y)
    save_html(pca, inputs.out / "item_map.html", n_map, x, y)
    ev = pca.explained_variance_ratio
    ends = "".join(
        f"<li>PC{j + 1} ({ev[j]:.1%}): {html.escape(_text(pca.extremes(j + 1)['low']))} &mdash; at the "
        f"other end {html.escape(_text(pca.extremes(j + 1)['high']))}</li>"
        for j in range(len(ev))
    )
    inner = (
        _shown_by(inputs.model)
        + f"<p>PCA of the factors of the {len(pca.coords)} most-rated items; the map shows the "
        f"{min(n_map, len(pca.coords))} most-rated. Hover a point for details. Also as "
        "<a href='item_map.png'>PNG</a> and as <a href='item_map.html'>a page of its own</a>.</p>"
        + figure_html(map_figure(pca, n_map, x, y), "map-chart", 700)
        + f"<p>What each axis separates, by the items at its two ends:</p><ul>{ends}</ul>"
    )
    return inner, pca.to_json()


def _similar(
    inputs: Inputs, examples: Sequence[object] | None, n_top: int, min_ratings: int
) -> tuple[str, dict]:
    counts = inputs.train.frame["item"].value_counts()
    if examples is None:  # the 4 most-rated items the model knows (one vectorised lookup)
        known = inputs.model.items.lookup(counts.index, strict=False) >= 0
        examples = list(counts.index[known][:4])
    _, _, _, left_out = supported(inputs.model.items, inputs.train, "item", min_ratings)
    try:
        found = {q: similar_items(inputs.model, q, n_top, inputs.items, None, inputs.train, min_ratings) for q in examples}
    except (ValueError, KeyError) as e:
        raise NotApplicable(str(e)) from None
    names = dict(zip(examples, _titles(list(examples), inputs.items)))
    inner = (
        _shown_by(inputs.model)
        + f"<p>Nearest items by {_nearness(inputs.model)}, among the items with at least "
        f"{min_ratings} training ratings: rarely-rated items are placed by a handful of ratings, so "
        f"the {left_out} items with fewer are left out.</p>"
    )
    for q, table in found.items():
        shown = [c for c in ("title", "item", "similarity", "n_ratings") if c in table.columns]
        inner += table_html(table[shown], f"Like {names[q]}")
    data = {str(q): t.to_dict(orient="records") for q, t in found.items()}
    return inner, {"min_ratings": min_ratings, "left_out": left_out, "neighbours": data}


def _nearness(model: Any) -> str:
    """What similar items are near by, in the report's words."""
    from collabkit.models.base import NEIGHBOURS, supports

    if supports(model, NEIGHBOURS):
        return "the model's item-item similarities (shrunk correlations of their rating residuals)"
    return "cosine similarity of their factors"


def _comparison(
    inputs: Inputs, baselines: Sequence[str], k: int, relevant_threshold: float | None
) -> Comparison:
    """This model and the baselines (each built with its kind's default recipe on the model's own
    split) on the test set, by user activity, every baseline tested against this model."""
    train, test = inputs.train, inputs.test
    if test is None or len(test) == 0:
        raise NotApplicable("No test set: nothing to compare on.")
    this = f"{inputs.model.kind} (this model)"
    seconds = sum(row.get("time", np.nan) for row in inputs.config.get("history", []))
    models = {this: (inputs.model, seconds)}
    for spec in baselines:
        model, history = build_model(spec, train, seed=42, threshold=relevant_threshold)
        models[ModelSpec.parse(spec).name] = (model, history.fit_seconds)
    return compare_trained(models, train, test, k, relevant_threshold, baseline=this, by="user-activity")


def _compare(inputs: Inputs, result: Comparison) -> tuple[str, list]:
    table = result.table.drop(columns="predicts_ratings")
    shown = table.astype(object)
    for n, row in enumerate(result.rows):  # value, its interval, "ns": not different from this model
        for m in result.metrics:
            low, high = row["intervals"].get(m, (np.nan, np.nan))
            test = row.get("vs_baseline", {}).get(m)
            cell = "" if np.isnan(row[m]) else f"{row[m]:.4g}"
            cell += " ns" if test is not None and not test.significant else ""
            shown.at[n, m] = cell + ("" if np.isnan(low) else f"\n[{low:.3g}, {high:.3g}]")
    relevant = (
        "every held-out item"
        if inputs.relevant_threshold is None
        else (f"held-out items rated &ge; {inputs.relevant_threshold:g}")
    )
    inner = (
        f"<p>Trained on {html.escape(inputs.train.name)}, scored on {html.escape(inputs.test.name)}. "
        f"Ranking metrics score each user's top {inputs.k} among the items they did not rate in "
        f"training against the relevant ones: {relevant}. Beside them, what the lists are made "
        "of: catalogue coverage and the Gini of the items' appearances (all lists together), the "
        "average training popularity of the listed items (ARP) and their share from the long "
        "tail (APLT, outside the items holding 80% of the ratings).</p>"
        "<p>[low, high]: 95% bootstrap interval over the test users. <i>ns</i>: a baseline not "
        "significantly different from this model (paired bootstrap over the same users, p &ge; 0.05).</p>"
        + table_html(shown)
    )
    return inner, result.to_json()


def _groups(inputs: Inputs, result: Comparison) -> tuple[str, list]:
    k = inputs.k
    metrics = [m for m in ("rmse", f"ndcg@{k}", f"recall@{k}") if any(m in g for g in result.rows[0]["groups"])]
    metrics = [m for m in metrics if any(np.isfinite(r[m]) for r in result.rows)]
    save_groups_png(result.rows, metrics, "user-activity", inputs.out / "by_activity.png", f"{inputs.test.name}: by user activity")
    counts = pd.DataFrame(result.rows[0]["groups"])[["group", "n_users", "n_ratings"]]
    inner = (
        "<p>Each test user is in the group of their number of training ratings. A point is the "
        "metric over the group's users, its bar the 95% bootstrap interval; an empty group has no "
        "point. Also as <a href='by_activity.png'>PNG</a>.</p>"
        + figure_html(groups_figure(result.rows, metrics, "user-activity"), "groups-chart", 380)
        + table_html(counts, "Test users and held-out ratings per group")
    )
    return inner, [{"model": r["model"], "groups": r["groups"]} for r in result.to_json()]


def _calibration(inputs: Inputs, at: float = 4.0) -> tuple[str, dict]:
    from collabkit.evaluate.calibration import evaluate_proba, reliability, save_reliability_png
    from collabkit.models.base import PROBA, supports

    if not supports(inputs.model, PROBA):
        raise NotApplicable(
            f"A {inputs.model.kind} model predicts one number per rating, not a distribution "
            "(train the ordinal model for probabilities)."
        )
    if inputs.test is None or len(inputs.test) == 0:
        raise NotApplicable("No test set: nothing to calibrate on.")
    metrics, q, hit = evaluate_proba(inputs.model, inputs.test, at, with_predictions=True)
    table = reliability(q, hit)
    save_reliability_png(table, inputs.out / "reliability.png", f"P(rating >= {at:g}) on {inputs.test.name}")
    inner = (
        f"<p>Of the held-out ratings given probability q of being {at:g} or more, a fraction q "
        "should be: the points of a calibrated model lie on the diagonal.</p>"
        + figure_html(reliability_figure(table, at), "reliability-chart", 420)
        + table_html(pd.DataFrame([metrics]))
        + table_html(table.round(4))
    )
    return inner, {**metrics, "reliability": table.to_dict(orient="records")}


# --- drawing -----------------------------------------------------------------------------------


def members_figure(history: pd.DataFrame, members: list[str]) -> go.Figure:
    """One small chart per member: its train_loss per epoch (the members' losses differ in kind)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(members), cols=1, subplot_titles=[plain(m) for m in members], vertical_spacing=0.5 / len(members))
    for row, m in enumerate(members, 1):
        h = history[history["member"] == m]
        x = h["epoch"] if "epoch" in h.columns else pd.Series(range(len(h)))
        fig.add_scatter(x=x, y=h["train_loss"], mode="lines", name=plain(m), showlegend=False, row=row, col=1)
        fig.update_yaxes(title_text="loss", row=row, col=1)
    fig.update_xaxes(title_text="epoch", row=len(members), col=1)
    fig.update_layout(margin={"l": 60, "r": 20, "t": 40, "b": 50})
    return fig


def training_figure(history: pd.DataFrame) -> go.Figure:
    """Line chart of train_loss (and valid_loss) per epoch."""
    epochs = history["epoch"] if "epoch" in history.columns else pd.Series(range(len(history)))
    fig = go.Figure()
    for col, colour in (("train_loss", "#1f77b4"), ("valid_loss", "#d62728")):
        if col in history.columns:
            fig.add_scatter(x=epochs, y=history[col], mode="lines+markers", name=col, line_color=colour)
    fig.update_layout(xaxis_title="epoch", yaxis_title="loss", margin={"l": 60, "r": 20, "t": 20, "b": 50})
    return fig


def reliability_figure(table: pd.DataFrame, at: float) -> go.Figure:
    """Observed share of ratings >= ``at`` against the predicted probability, per bin."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", line={"dash": "dot", "color": "#888"})
    fig.add_scatter(
        x=table["predicted"], y=table["observed"], mode="lines+markers", name="this model",
        marker={"size": 6 + 14 * np.sqrt(table["count"] / table["count"].max())},
    )  # fmt: skip
    fig.update_layout(
        xaxis_title=f"predicted P(rating >= {at:g})", yaxis_title="observed share",
        xaxis_range=[0, 1], yaxis_range=[0, 1], margin={"l": 60, "r": 20, "t": 20, "b": 50},
    )  # fmt: skip
    return fig


def _shown_by(model: CollabModel) -> str:
    """For an ensemble: which member's factors and biases this section shows."""
    who = model.meta.get("representation")
    return f"<p>From the ensemble's representation member: {html.escape(who)}.</p>" if who else ""


def _note(text: str) -> str:
    return f"<p class='note'><i>{html.escape(text)}</i></p>"


def _text(v: Any) -> str:
    """Display text (not yet escaped): lists joined by '; ', dicts as JSON."""
    if isinstance(v, (list, tuple)):
        return "; ".join(map(str, v))
    return json.dumps(v) if isinstance(v, dict) else str(v)


def _titles(ids: list, items: pd.DataFrame | None) -> list[str]:
    """Titles of ``ids`` (ids or titles themselves); the id when there is none."""
    if items is None or "title" not in items.columns:
        return [str(i) for i in ids]
    t = items["title"].reindex(ids)
    return [str(x) if isinstance(x, str) else str(i) for x, i in zip(t, ids)]


def jsonable(obj: Any) -> Any:
    """Nested dicts/lists of numpy/pandas values -> plain JSON values; NaN -> null (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return None if pd.isna(obj) else str(obj)
