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
from rich.text import Text

from collabkit.cli import common
from collabkit.cli.source import DataSource, training_data, with_source

if TYPE_CHECKING:
    import pandas as pd

    from collabkit.data.interactions import Ratings

K = Annotated[int, typer.Option("-k", "--k", min=1, help="Length of the top-k lists ranking metrics score.")]
Relevant = Annotated[float, typer.Option("--relevant", help="Held-out ratings >= this are the relevant items.")]
Baseline = Annotated[str | None, typer.Option("--baseline", help="A spec among --models: every other model gets a paired test against it (difference, interval, p).")]
By = Annotated[str | None, typer.Option("--by", help="Split every metric by training ratings: user-activity (of the user) or item-popularity (of the item); buckets 0, 1, 2-5, 6-20, 21-100, >100.")]
SPEC_HELP = "e.g. dot-bias or dot-bias(n_factors=20, epochs=10); `collabkit kinds` lists the kinds"


def _check_scale(model: Any, test: Ratings, where: Path) -> None:
    """Refuse held-out ratings off the model's scale: their errors would measure the file, not the model."""
    from collabkit.models.base import RATINGS, supports
    from collabkit.models.incremental import off_scale

    problem = off_scale(model, test.frame["rating"].to_numpy(dtype=float)) if supports(model, RATINGS) else None
    if problem is not None:
        raise ValueError(f"{where}: {problem}")


@common.app.command()
@with_source
def evaluate(
    model_dir: common.ModelDir,
    source: DataSource,
    test: Annotated[Path | None, typer.Option("--test", help="Score this held-out file instead of the recorded split's test part: read as the training file was (its columns, --names, --no-header, --timestamp-col; given ones override).")] = None,
    allow_train_overlap: Annotated[bool, typer.Option("--allow-train-overlap", help="Score ratings the model was trained on (labelled 'training data').")] = False,
    k: K = 10,
    by: By = None,
    device: common.Device = "cpu",
    as_json: common.Json = False,
) -> None:
    """Score a saved model on held-out ratings, with 95% intervals; unknown users/items are counted and use the fallback."""
    import pandas as pd

    from collabkit.checkpoint import read_config
    from collabkit.cli.recommend import load_model_dir
    from collabkit.evaluate import evaluate_ranking, evaluate_ratings
    from collabkit.evaluate.groups import by_group, check_by
    from collabkit.evaluate.scores import outcome
    from collabkit.evaluate.uncertainty import intervals
    from collabkit.models.base import RATINGS, supports

    out_console, log = common.consoles(as_json)
    placement = common.on_device(device)
    net, _ = load_model_dir(model_dir)
    recipe = read_config(model_dir).get("train") or {}
    try:
        full, train_set, test_set = training_data(model_dir, source)
        if test is not None:
            test_set = DataSource(
                ratings=test, user_col=full.user_col, item_col=full.item_col, rating_col=full.rating_col,
                timestamp_col=full.timestamp_col, duplicates=full.duplicates, no_header=full.no_header,
                names=full.names,
            ).load()  # fmt: skip
            _check_scale(net, test_set, test)
        if test_set is None:
            raise ValueError("the model was trained with --split none: nothing was held out; pass --test FILE")
        if test is not None and recipe.get("implicit"):  # positives as at train
            from collabkit.data.implicit import to_implicit

            cut = recipe.get("threshold")
            test_set = to_implicit(test_set, None if not cut or cut <= 0 else cut)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        common.fail(str(e))
    overlap = _overlap(train_set, test_set)
    if overlap and not allow_train_overlap:
        common.fail(
            f"{overlap} of the {len(test_set)} ratings to score are (user, item) pairs the model was trained on: "
            "its numbers would be flattered. Score held-out ratings, or pass --allow-train-overlap"
        )
    result: dict[str, Any] = {"model": net.kind, "data": test_set.name}
    if overlap:
        result["scored_on"] = "training data"
        result["n_train_overlap"] = overlap
    try:
        check_by(by)
    except ValueError as e:
        common.fail(str(e))
    seed = source.resolved().seed
    with placement:  # top-N runs there; predictions for ratings are on the CPU
        if supports(net, RATINGS):
            result.update(evaluate_ratings(net, test_set))
            scored = outcome(net, train_set, test_set, None)
        else:
            result.update(evaluate_ranking(net, train_set, test_set, k=k, relevant_threshold=None))
            scored = outcome(net, train_set, test_set, k, None)
    per_user = scored.metrics()
    result["intervals"] = {m: list(v) for m, v in intervals(per_user, seed=seed).items()}
    if by is not None:
        result["by"] = by
        result["groups"] = [
            {**g, "intervals": {m: list(v) for m, v in g["intervals"].items()}}
            for g in by_group(scored, by, seed=seed)
        ]
    if result.get("n_fallback"):
        log.print(
            f"[yellow]{result['n_fallback']} rows with an unknown user or item were scored by the baseline "
            f"predictor (RMSE on them {result['rmse_fallback']:.4f}; on the rest {result.get('rmse_known', float('nan')):.4f})[/yellow]"
        )
    if as_json:
        common.print_json(result)
        return
    label = " (TRAINING DATA)" if overlap else ""
    plain = {m: v for m, v in result.items() if m not in ("intervals", "groups", "by")}
    out_console.print(common.metrics_table(f"{net.kind} on {test_set.name}{label}", plain, result["intervals"]))
    if by is not None:
        groups = pd.DataFrame(result["groups"])
        shown = [m for m in per_user if m in groups]
        frame = estimates_frame(result["groups"], shown, "group")
        for n, c in enumerate(c for c in ("n_users", "n_items", "n_ratings") if c in groups):
            frame.insert(n + 1, c, groups[c])
        out_console.print(frame_table(frame, f"{net.kind} by {by}"))
    log.print(Text("interval: 95% bootstrap over the test users", style="dim"))


def _overlap(train: Ratings, test: Ratings) -> int:
    """How many (user, item) pairs of ``test`` are also in ``train``."""
    import pandas as pd

    key = ["user", "item"]
    pairs = pd.MultiIndex.from_frame(train.frame[key])
    return int(pd.MultiIndex.from_frame(test.frame[key]).isin(pairs).sum())


@common.app.command()
@with_source
def compare(
    source: DataSource,
    models: Annotated[str, typer.Option(help=f"Comma-separated model specs, {SPEC_HELP}")] = "mean,bias,dot-bias,most-popular",
    k: K = 10,
    relevant: Relevant = 4.0,
    baseline: Baseline = None,
    by: By = None,
    protocol: Annotated[str, typer.Option("--protocol", help="split: score on the split's test part; heldout-users: users kept out of training, folded in from --fold-in of their ratings, ranked over the whole catalogue (recall@20, recall@50, ndcg@100).")] = "split",
    heldout_users: Annotated[int | None, typer.Option("--heldout-users", help="heldout-users: how many users to hold out (default a fifth of those with >= 5 ratings, at most 10000).")] = None,
    fold_in: Annotated[float, typer.Option("--fold-in", help="heldout-users: the share of each held-out user's ratings the model folds them in from.")] = 0.8,
    as_json: common.Json = False,
) -> None:
    """Train several models on one split and score them side by side: one row each, with 95% intervals and fit time."""
    import pandas as pd

    from collabkit.evaluate.compare import compare as compare_models
    from collabkit.evaluate.compare import compare_heldout
    from collabkit.train.spec import parse_specs

    out, log = common.consoles(as_json)
    if protocol not in ("split", "heldout-users"):
        common.fail(f"--protocol must be split or heldout-users, not {protocol!r}")
    if protocol == "heldout-users" and (source.split is not None or by is not None):
        common.fail("--protocol heldout-users makes its own split and has no groups: leave out --split and --by")
    seed = source.resolved().seed
    try:
        specs = parse_specs(models, "--models")
        if not specs:
            raise ValueError("--models is empty; e.g. mean,dot-bias,most-popular")
        data = source.load()
        if protocol == "split":
            train, test = source.resolved().split_data(data)
            if test is None:
                raise ValueError("--split none leaves nothing to score; choose a split with a test part")
            split = source.resolved().split
            log.print(f"{len(specs)} models on {data.name} ({split}): {len(train)} train / {len(test)} test ratings")
            result = compare_models(specs, train, test, k, relevant, seed, baseline, by)
        else:
            split = f"heldout-users, fold-in {fold_in:g} (seed {seed})"
            log.print(f"{len(specs)} models on {data.name} ({split})")
            result = compare_heldout(specs, data, heldout_users, fold_in, relevant, seed, baseline)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        common.fail(str(e))
    if as_json:
        common.print_json({
            "dataset": data.name, "split": split, "protocol": protocol, "k": k, "relevant_threshold": relevant,
            "baseline": result.baseline, "level": result.level, "by": by, "models": result.to_json(),
        })  # fmt: skip
        return
    if protocol == "split":
        shown = ["rmse", "mae", f"ndcg@{k}", f"recall@{k}", f"arp@{k}", f"aplt@{k}", f"gini@{k}", f"coverage@{k}"]
        title = f"{data.name} ({split}): rating and top-{k} metrics (relevant: rating >= {relevant:g})"
    else:
        shown = result.metrics
        n = result.rows[0]["n_heldout_users"]
        title = f"{data.name}: {n} held-out users folded in from {fold_in:.0%} of their ratings, the rest ranked over the whole catalogue"
    out.print(frame_table(estimates_frame(result.rows, shown, "model", result.baseline), title))
    if result.baseline is not None:
        out.print(frame_table(differences_frame(result.rows, shown), f"difference from {result.baseline} (paired bootstrap over users)"))
    for row in result.rows if by else []:
        groups = pd.DataFrame(row["groups"])
        counts = [c for c in ("n_users", "n_items", "n_ratings") if c in groups]
        share = [f"share@{k}"] if by == "item-popularity" else []
        frame = estimates_frame(row["groups"], [c for c in [*shown, *share] if c in groups], "group")
        frame.insert(1, counts[0], groups[counts[0]])
        for n, c in enumerate(counts[1:], start=2):
            frame.insert(n, c, groups[c])
        out.print(frame_table(frame, f"{row['model']} by {by} (training ratings of the {'user' if by == 'user-activity' else 'item'})"))
    note = "[low, high]: 95% bootstrap interval over the test users"
    if result.baseline is not None:
        note += f"; ns: not significantly different from {result.baseline} (paired bootstrap, p >= 0.05)"
    if protocol == "split":
        note += f"; coverage and gini describe all the lists together (no interval). --json adds precision, map, hit_rate, mrr and novelty @{k}"
    log.print(Text(note, style="dim"))


def estimates_frame(rows: list[dict[str, Any]], metrics: list[str], label: str, baseline: str | None = None) -> pd.DataFrame:
    """Rows of values and intervals as text cells "value[ ns]\n[low, high]" (ns: the paired test
    against the baseline is not significant), one column per metric."""
    import numpy as np
    import pandas as pd

    out = []
    for row in rows:
        name = str(row[label]) + (" (baseline)" if baseline is not None and row[label] == baseline else "")
        cells = {label: name}
        for m in metrics:
            test = row.get("vs_baseline", {}).get(m)
            mark = " ns" if test is not None and not test.significant else ""
            low, high = row["intervals"].get(m, (np.nan, np.nan))
            span = "" if math.isnan(low) else f"\n[{_cell(low, 3)}, {_cell(high, 3)}]"
            cells[m] = _cell(float(row.get(m, np.nan))) + mark + span
        out.append(cells)
    return pd.DataFrame(out)


def differences_frame(rows: list[dict[str, Any]], metrics: list[str]) -> pd.DataFrame:
    """One row per model tested against the baseline: "difference (p)\n[low, high]" per metric."""
    import pandas as pd

    out = []
    for row in rows:
        if "vs_baseline" not in row:
            continue
        cells = {"model": row["model"]}
        for m in metrics:
            d = row["vs_baseline"].get(m)
            cells[m] = "-" if d is None else f"{_signed(d.diff, 4)} ({_p(d.p)})\n[{_signed(d.low, 3)}, {_signed(d.high, 3)}]"
        out.append(cells)
    return pd.DataFrame(out)


@common.app.command("cross-validate")
@with_source
def cross_validate_cmd(
    source: DataSource,
    canonical: Annotated[bool, typer.Option("--canonical", help="Use ML-100k's own folds u1..u5 instead.")] = False,
    model: Annotated[str, typer.Option(help=f"One model spec, {SPEC_HELP}")] = "dot-bias",
    folds: Annotated[int, typer.Option(help="Number of seeded random folds.")] = 5,
    as_json: common.Json = False,
    k: K = 10,
    relevant: Relevant = 4.0,
) -> None:
    """Train and score one model on k folds; per-fold metrics, mean ± std and the mean's 95% interval."""
    from collabkit.evaluate.crossval import canonical_folds, cross_validate

    if canonical and source.dataset is None:
        common.fail("--canonical needs --dataset ml-100k (the u1..u5 folds ship with it)")
    if source.split is not None or source.valid_pct is not None:
        common.fail("cross-validate makes its own folds (--folds, or --canonical): leave out --split and --valid-pct")
    out, log = common.consoles(as_json)
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
        common.fail(str(e))
    if as_json:
        common.print_json({"data": name, "k": k, "relevant_threshold": relevant, **cv.to_json()})
        return
    table = cv.folds.set_index("fold").T  # one row per metric, one column per fold
    table.columns = [f"fold {c}" for c in table.columns]
    table.insert(0, "metric", table.index)
    summary = cv.summary
    table[["mean", "std"]] = summary[["mean", "std"]]
    table["95% interval of the mean"] = [
        "" if math.isnan(lo) else f"[{_cell(lo, 3)}, {_cell(hi, 3)}]" for lo, hi in zip(summary["low"], summary["high"])
    ]
    out.print(frame_table(table, f"{cv.model} on {name}"))
    log.print(Text("interval: 95% bootstrap over the test users, every fold recomputed on each resample", style="dim"))


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
        view.add_row(*map(Text, row))  # text from data is shown as it is, never read as markup
    return view


def _p(p: float) -> str:
    """A p-value; the smallest the bootstrap can give, 2 / (resamples + 1), as "p <= ..."."""
    from collabkit.evaluate.uncertainty import N_RESAMPLES

    floor = 2 / (N_RESAMPLES + 1)
    return f"p <= {floor:.3f}" if p <= floor * (1 + 1e-9) else f"p {p:.3f}"


def _signed(v: float, places: int) -> str:
    """A difference with its sign, to ``places`` decimals (1 from 10 up: popularity counts)."""
    return f"{v:+.{places if abs(v) < 10 else 1}f}"


def _cell(v: Any, places: int = 4) -> str:
    """A float to ``places`` decimals (1 from 100 up: counts and ranks need no more), NaN as '-'."""
    import numpy as np

    if isinstance(v, float | np.floating):
        v = float(v)
        return "-" if math.isnan(v) else f"{v:.{places if abs(v) < 100 else min(places, 1)}f}"
    return str(v)
