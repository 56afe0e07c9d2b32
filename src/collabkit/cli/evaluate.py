"""`collabkit evaluate`, `compare` and `cross-validate`: numbers on held-out data.

``evaluate`` scores a saved model on the test part of the very split it was trained with (read
from the model folder), or on a file given with ``--test``; scoring ratings the model was
trained on is refused unless ``--allow-train-overlap``, and then every output says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from collabkit.cli.common import (
    Device,
    Json,
    ModelDir,
    app,
    consoles,
    fail,
    metrics_table,
    on_device,
    print_json,
)
from collabkit.cli.source import DataSource, training_data, with_source

if TYPE_CHECKING:
    import pandas as pd

    from collabkit.data.interactions import Ratings

K = Annotated[int, typer.Option("-k", "--k", help="Length of the top-k lists ranking metrics score.")]
Relevant = Annotated[float, typer.Option("--relevant", help="Held-out ratings >= this are the relevant items.")]
SPEC_HELP = "e.g. dot-bias or dot-bias(n_factors=20, epochs=10); kinds: mean, bias, dot, dot-bias, nn, most-popular, ..."


@app.command()
@with_source
def evaluate(
    model_dir: ModelDir,
    source: DataSource,
    test: Annotated[Path | None, typer.Option("--test", help="Score this held-out file (same columns as training) instead of the recorded split's test part.")] = None,
    allow_train_overlap: Annotated[bool, typer.Option("--allow-train-overlap", help="Score ratings the model was trained on (labelled 'training data').")] = False,
    k: K = 10,
    device: Device = "cpu",
    as_json: Json = False,
) -> None:
    """Score a saved model on held-out ratings; unknown users/items are counted and use the fallback."""
    from collabkit.checkpoint import read_config
    from collabkit.cli.recommend import load_model_dir
    from collabkit.evaluate import evaluate_ranking, evaluate_ratings
    from collabkit.models.base import RATINGS, supports

    out_console, log = consoles(as_json)
    placement = on_device(device)
    net, _ = load_model_dir(model_dir)
    recipe = read_config(model_dir).get("train") or {}
    try:
        full, train_set, test_set = training_data(model_dir, source)
        if test is not None:
            test_set = DataSource(
                ratings=test, user_col=full.user_col, item_col=full.item_col,
                rating_col=full.rating_col, duplicates=full.duplicates,
            ).load()  # fmt: skip
        if test_set is None:
            raise ValueError("the model was trained with --split none: nothing was held out; pass --test FILE")
        if test is not None and recipe.get("implicit"):  # positives as at train
            from collabkit.data.implicit import to_implicit

            cut = recipe.get("threshold")
            test_set = to_implicit(test_set, None if not cut or cut <= 0 else cut)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        fail(str(e))
    overlap = _overlap(train_set, test_set)
    if overlap and not allow_train_overlap:
        fail(
            f"{overlap} of the {len(test_set)} ratings to score are (user, item) pairs the model was trained on: "
            "its numbers would be flattered. Score held-out ratings, or pass --allow-train-overlap"
        )
    result: dict[str, Any] = {"model": net.kind, "data": test_set.name}
    if overlap:
        result["scored_on"] = "training data"
        result["n_train_overlap"] = overlap
    with placement:  # top-N runs there; predictions for ratings are on the CPU
        if supports(net, RATINGS):
            result.update(evaluate_ratings(net, test_set))
        else:
            result.update(evaluate_ranking(net, train_set, test_set, k=k, relevant_threshold=None))
    if result.get("n_fallback"):
        log.print(
            f"[yellow]{result['n_fallback']} rows with an unknown user or item were scored by the baseline "
            f"predictor (RMSE on them {result['rmse_fallback']:.4f}; on the rest {result.get('rmse_known', float('nan')):.4f})[/yellow]"
        )
    if as_json:
        print_json(result)
    else:
        label = " (TRAINING DATA)" if overlap else ""
        out_console.print(metrics_table(f"{net.kind} on {test_set.name}{label}", result))


def _overlap(train: Ratings, test: Ratings) -> int:
    """How many (user, item) pairs of ``test`` are also in ``train``."""
    import pandas as pd

    key = ["user", "item"]
    pairs = pd.MultiIndex.from_frame(train.frame[key])
    return int(pd.MultiIndex.from_frame(test.frame[key]).isin(pairs).sum())


@app.command()
@with_source
def compare(
    source: DataSource,
    models: Annotated[str, typer.Option(help=f"Comma-separated model specs, {SPEC_HELP}")] = "mean,bias,dot-bias,most-popular",
    k: K = 10,
    relevant: Relevant = 4.0,
    as_json: Json = False,
) -> None:
    """Train several models on one split and score them side by side: one row each, with fit time."""
    from collabkit.evaluate.compare import compare as compare_models
    from collabkit.train.build import ModelSpec, split_specs

    out, log = consoles(as_json)
    source = source.resolved()
    try:
        specs = [ModelSpec.parse(s) for s in split_specs(models)]
        data = source.load()
        train, test = source.split_data(data)
        if test is None:
            raise ValueError("--split none leaves nothing to score; choose a split with a test part")
        split = source.split
        log.print(f"{len(specs)} models on {data.name} ({split}): {len(train)} train / {len(test)} test ratings")
        table = compare_models(specs, train, test, k, relevant, source.seed)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        fail(str(e))
    if as_json:
        rows = table.to_dict(orient="records")
        for row in rows:  # a ranking-only model has no rmse: null, not a NaN to warn about
            if not row["predicts_ratings"]:
                row.update(rmse=None, mae=None)
        print_json({"dataset": data.name, "split": split, "k": k, "relevant_threshold": relevant, "models": rows})
        return
    shown = ["model", "rmse", "mae", f"ndcg@{k}", f"precision@{k}", f"recall@{k}", "fit_seconds"]
    title = f"{data.name} ({split}): rating and top-{k} metrics (relevant: rating >= {relevant:g})"
    out.print(frame_table(table[shown], title))
    log.print(f"[dim]--json adds map@{k}, hit_rate@{k}, mrr@{k}, coverage@{k} and novelty@{k}[/dim]")


@app.command("cross-validate")
@with_source
def cross_validate_cmd(
    source: DataSource,
    canonical: Annotated[bool, typer.Option("--canonical", help="Use ML-100k's own folds u1..u5 instead.")] = False,
    model: Annotated[str, typer.Option(help=f"One model spec, {SPEC_HELP}")] = "dot-bias",
    folds: Annotated[int, typer.Option(help="Number of seeded random folds.")] = 5,
    as_json: Json = False,
    k: K = 10,
    relevant: Relevant = 4.0,
) -> None:
    """Train and score one model on k folds; per-fold metrics and mean ± std."""
    from collabkit.evaluate.crossval import canonical_folds, cross_validate

    if canonical and source.dataset is None:
        fail("--canonical needs --dataset ml-100k (the u1..u5 folds ship with it)")
    out, log = consoles(as_json)
    seed = source.resolved().seed
    try:
        if canonical:
            data, splits = None, canonical_folds(source.dataset, source.data_dir)
            name = f"{source.dataset} u1..u5"
        else:
            data = source.load()
            splits, name = None, f"{data.name}, {folds} random folds (seed {seed})"
        log.print(f"cross-validating {model} on {name}")
        cv = cross_validate(model, data, folds, seed, splits, k, relevant)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        fail(str(e))
    if as_json:
        print_json({"data": name, "k": k, "relevant_threshold": relevant, **cv.to_json()})
        return
    table = cv.folds.set_index("fold").T  # one row per metric, one column per fold
    table.columns = [f"fold {c}" for c in table.columns]
    table.insert(0, "metric", table.index)
    table[["mean", "std"]] = cv.summary[["mean", "std"]]
    out.print(frame_table(table, f"{cv.model} on {name}"))


def frame_table(frame: pd.DataFrame, title: str, decimals: dict[str, int] | None = None) -> Table:
    """A DataFrame as a rich table: numbers right-aligned and never cut (floats as ``_cell``
    writes them, ``decimals`` per column); long text wraps when the terminal is narrow."""
    import pandas as pd

    view = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cells = {}
    for col in frame.columns:
        cells[col] = [_cell(v, (decimals or {}).get(col, 4)) for v in frame[col]]
        numeric = pd.api.types.is_numeric_dtype(frame[col])
        longest = max([len(str(col)), *map(len, cells[col])])
        # short words like metric names stay whole
        width = longest if numeric else min(longest, 14)
        view.add_column(str(col), justify="right" if numeric else "left", no_wrap=numeric, min_width=width)
    for row in zip(*cells.values()):
        view.add_row(*row)
    return view


def _cell(v: Any, places: int = 4) -> str:
    """A float to ``places`` decimals (1 from 100 up: counts and ranks need no more), NaN as '-'."""
    import numpy as np

    if isinstance(v, float | np.floating):
        v = float(v)
        return "-" if math.isnan(v) else f"{v:.{places if abs(v) < 100 else min(places, 1)}f}"
    return str(v)
