"""`collabkit compare`, `cross-validate`, `biases`, `pca`, `similar` and `report`.

compare and cross-validate train models themselves (on --dataset or --ratings). The others read a
folder written by `collabkit train --out`; titles come from its items.json. Those that need rating
counts and means (biases, pca, report) read the training data again: --ratings FILE, --dataset,
or by default the dataset recorded in config.json, split the way the model was trained
(config.json "train" entry: u1, random...; --split overrides), so counts are over the training part.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich import box
from rich.table import Table

from collabkit.cli.common import (
    DataDir,
    Dataset,
    ItemCol,
    Json,
    RatingCol,
    RatingsFile,
    UserCol,
    app,
    consoles,
    fail,
    load_source,
    print_json,
    split_source,
)
from collabkit.data.interactions import Ratings

ModelDir = Annotated[Path, typer.Argument(help="Folder written by `collabkit train --out`.")]
Split = Annotated[
    str | None, typer.Option(help="random, user, temporal, none, or u1..u5/ua/ub (ML-100k).")
]
ValidPct = Annotated[float, typer.Option(help="Held-out fraction for random/user splits.")]
Seed = Annotated[int, typer.Option(help="Seeds splits, weights and batch order.")]
K = Annotated[
    int, typer.Option("-k", "--k", help="Length of the top-k lists ranking metrics score.")
]
Relevant = Annotated[
    float, typer.Option("--relevant", help="Held-out ratings >= this are the relevant items.")
]
Epochs = Annotated[int, typer.Option(help="Epochs of the one-cycle recipe (specs may override).")]
Lr = Annotated[float, typer.Option("--lr", help="Peak learning rate of the recipe.")]
Wd = Annotated[float, typer.Option(help="Weight decay of the recipe.")]
SPEC_HELP = "e.g. dot-bias or dot-bias(n_factors=20, epochs=10); kinds: mean, bias, dot, dot-bias, nn, most-popular, ..."


@app.command()
def compare(
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    split: Annotated[
        str, typer.Option(help="random, user, temporal, or u1..u5/ua/ub (ML-100k).")
    ] = "random",
    valid_pct: ValidPct = 0.2,
    models: Annotated[
        str, typer.Option(help=f"Comma-separated model specs, {SPEC_HELP}")
    ] = "mean,bias,dot-bias,most-popular",
    epochs: Epochs = 5,
    lr: Lr = 5e-3,
    wd: Wd = 0.1,
    k: K = 10,
    relevant: Relevant = 4.0,
    seed: Seed = 42,
    as_json: Json = False,
) -> None:
    """Train several models on one split and score them side by side: one row each, with fit time."""
    from collabkit.evaluate.compare import ModelSpec, split_specs
    from collabkit.evaluate.compare import compare as compare_models

    out, log = consoles(as_json)
    try:
        specs = [ModelSpec.parse(s) for s in split_specs(models)]
        data = load_source(dataset, data_dir, ratings, user_col, item_col, rating_col)
        train, test = split_source(data, split, dataset, data_dir, valid_pct, seed)
    except (ValueError, FileNotFoundError, KeyError) as e:
        fail(str(e))
    if test is None:
        fail("--split none leaves nothing to score; choose a split with a test part")
    log.print(
        f"{len(specs)} models on {data.name} ({split}): {len(train)} train / {len(test)} test ratings"
    )
    try:
        table = compare_models(specs, train, test, k, relevant, epochs, lr, wd, seed)
    except ValueError as e:
        fail(str(e))
    if as_json:
        print_json(
            _plain(
                {
                    "dataset": data.name,
                    "split": split,
                    "k": k,
                    "relevant_threshold": relevant,
                    "models": table.to_dict(orient="records"),
                }
            )
        )
        return
    shown = ["model", "rmse", "mae", f"ndcg@{k}", f"precision@{k}", f"recall@{k}", "fit_seconds"]
    out.print(
        frame_table(
            table[shown],
            f"{data.name} ({split}): rating and top-{k} metrics (relevant: rating >= {relevant:g})",
        )
    )
    log.print(
        f"[dim]--json adds map@{k}, hit_rate@{k}, mrr@{k}, coverage@{k} and novelty@{k}[/dim]"
    )


@app.command("cross-validate")
def cross_validate_cmd(
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    model: Annotated[str, typer.Option(help=f"One model spec, {SPEC_HELP}")] = "dot-bias",
    folds: Annotated[int, typer.Option(help="Number of seeded random folds.")] = 5,
    canonical: Annotated[
        bool, typer.Option("--canonical", help="Use ML-100k's own folds u1..u5 instead.")
    ] = False,
    epochs: Epochs = 5,
    lr: Lr = 5e-3,
    wd: Wd = 0.1,
    k: K = 10,
    relevant: Relevant = 4.0,
    seed: Seed = 42,
    as_json: Json = False,
) -> None:
    """Train and score one model on k folds; per-fold metrics and mean ± std."""
    from collabkit.evaluate.crossval import canonical_folds, cross_validate

    out, log = consoles(as_json)
    try:
        if canonical:
            if dataset is None:
                fail("--canonical needs --dataset ml-100k (the u1..u5 folds ship with it)")
            data, splits = None, canonical_folds(dataset, data_dir)
            name = f"{dataset} u1..u5"
        else:
            data = load_source(dataset, data_dir, ratings, user_col, item_col, rating_col)
            splits, name = None, f"{data.name}, {folds} random folds (seed {seed})"
        log.print(f"cross-validating {model} on {name}")
        cv = cross_validate(model, data, folds, seed, splits, k, relevant, epochs, lr, wd)
    except (ValueError, FileNotFoundError, KeyError) as e:
        fail(str(e))
    if as_json:
        print_json(_plain({"data": name, "k": k, "relevant_threshold": relevant, **cv.to_json()}))
        return
    table = cv.folds.set_index("fold").T  # one row per metric, one column per fold
    table.columns = [f"fold {c}" for c in table.columns]
    table.insert(0, "metric", table.index)
    table[["mean", "std"]] = cv.summary[["mean", "std"]]
    out.print(frame_table(table, f"{cv.model} on {name}"))


@app.command()
def biases(
    model_dir: ModelDir,
    top: Annotated[int, typer.Option(help="How many to show at each end.")] = 5,
    side: Annotated[str, typer.Option(help="item or user.")] = "item",
    min_ratings: Annotated[
        int, typer.Option(help="Compare bias and mean rating over items with this many ratings.")
    ] = 20,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    split: Split = None,
    valid_pct: ValidPct = 0.2,
    seed: Seed = 42,
    as_json: Json = False,
) -> None:
    """Top and bottom items (or users) by learned bias, and how bias ranks compare with mean ratings."""
    from collabkit.interpret.biases import bias_table, bias_vs_mean

    out, _ = consoles(as_json)
    model, items = _load(model_dir)
    source = (dataset, data_dir, ratings, user_col, item_col, rating_col, split, valid_pct, seed)
    train, _ = _training_data(model_dir, *source)
    try:
        table = bias_table(model, side, train, items)
        agree = bias_vs_mean(table, min_ratings, n=top)
    except ValueError as e:
        fail(str(e))
    show = [c for c in (side, "title", "bias", "n_ratings", "mean_rating") if c in table.columns]
    if as_json:
        print_json(
            _plain(
                {
                    "model": model.kind,
                    "side": side,
                    "top": table.head(top)[show].to_dict(orient="records"),
                    "bottom": table.tail(top)[::-1][show].to_dict(orient="records"),
                    "bias_vs_mean": agree.to_json(),
                }
            )
        )
        return
    out.print(frame_table(table.head(top)[show], f"Top {top} {side}s by bias"))
    out.print(frame_table(table.tail(top)[::-1][show], f"Bottom {top} {side}s by bias"))
    out.print(
        f"Ranking by bias vs by mean rating ({agree.n_items} {side}s with >= {min_ratings} ratings): "
        f"Spearman rank correlation [bold]{agree.spearman:.3f}[/bold]"
    )
    name = "title" if "title" in table.columns else side
    gap = [name, "n_ratings", "mean_rating", "bias_rank", "mean_rank", "rank_gap"]
    ranks = {"bias_rank": 1, "mean_rank": 1, "rank_gap": 1}
    out.print(
        frame_table(
            agree.disagreements[gap],
            "Where they disagree most (rank_gap > 0: bias ranks it higher)",
            decimals=ranks,
        )
    )


@app.command()
def pca(
    model_dir: ModelDir,
    png: Annotated[Path, typer.Option(help="Where to save the map as PNG.")] = Path("item_map.png"),
    html: Annotated[
        Path, typer.Option(help="Where to save the interactive map (self-contained HTML).")
    ] = Path("item_map.html"),
    n: Annotated[int, typer.Option("-n", "--n", help="Most-rated items to show on the map.")] = 50,
    components: Annotated[
        str, typer.Option(help="Two components to plot, e.g. 1,2 (the chapter shows 1,3).")
    ] = "1,2",
    fit_top: Annotated[
        int, typer.Option(help="PCA of the factors of this many most-rated items.")
    ] = 1000,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    split: Split = None,
    valid_pct: ValidPct = 0.2,
    seed: Seed = 42,
    as_json: Json = False,
) -> None:
    """PCA of the item factors: the chapter's titled map (PNG + interactive HTML) and what each axis means."""
    from collabkit.interpret.pca import item_pca, save_html, save_png

    out, _ = consoles(as_json)
    try:
        x, y = (int(c) for c in components.split(","))
    except ValueError:
        fail(f"--components takes two numbers like 1,2, not {components!r}")
    model, items = _load(model_dir)
    source = (dataset, data_dir, ratings, user_col, item_col, rating_col, split, valid_pct, seed)
    train, _ = _training_data(model_dir, *source)
    try:
        result = item_pca(model, max(3, x, y), train, items, top=fit_top)
        save_png(result, png, n, x, y)
        save_html(result, html, n, x, y)
    except (ValueError, OSError) as e:
        fail(str(e))
    if as_json:
        print_json(_plain({"png": str(png), "html": str(html), **result.to_json()}))
        return
    view = Table(title=f"PCA of {len(result.coords)} items' factors: what each component separates")
    for col in ("component", "variance", "low end", "high end"):
        view.add_column(col)
    for j, ev in enumerate(result.explained_variance_ratio):
        ends = result.extremes(j + 1, 3)
        view.add_row(
            f"PC{j + 1}",
            f"{ev:.1%}",
            "\n".join(map(str, ends["low"])),
            "\n".join(map(str, ends["high"])),
        )
    out.print(view)
    out.print(f"map of the {n} most-rated items on PC{x} x PC{y}: {png} and {html}")


@app.command()
def similar(
    model_dir: ModelDir,
    query: Annotated[str, typer.Argument(help="An item title or id (a user id with --user).")],
    k: Annotated[int, typer.Option("-k", "--k", help="How many neighbours.")] = 5,
    user: Annotated[
        bool, typer.Option("--user", help="QUERY is a user id: show similar users.")
    ] = False,
    min_ratings: Annotated[
        int,
        typer.Option(
            help="Only items with this many training ratings as neighbours (reads the data)."
        ),
    ] = 0,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    split: Split = None,
    valid_pct: ValidPct = 0.2,
    seed: Seed = 42,
    as_json: Json = False,
) -> None:
    """Nearest items (or users) by cosine similarity of their factors; suggests titles for typos."""
    from collabkit.data.vocab import UnknownIdError
    from collabkit.interpret.similar import similar_items, similar_users

    out, _ = consoles(as_json)
    model, items = _load(model_dir)
    candidates = None
    if min_ratings > 0 and not user:
        source = (
            dataset,
            data_dir,
            ratings,
            user_col,
            item_col,
            rating_col,
            split,
            valid_pct,
            seed,
        )
        train, _ = _training_data(model_dir, *source)
        counts = train.frame["item"].value_counts()
        candidates = counts.index[counts >= min_ratings]
    try:
        table = (
            similar_users(model, query, k)
            if user
            else similar_items(model, query, k, items, candidates)
        )
    except (ValueError, UnknownIdError) as e:
        fail(str(e))
    shown = [c for c in ("user", "item", "title", "similarity") if c in table.columns]
    if as_json:
        print_json(
            _plain(
                {
                    "query": query,
                    "side": "user" if user else "item",
                    "similar": table[shown].to_dict(orient="records"),
                }
            )
        )
    else:
        out.print(frame_table(table[shown], f"{'Users' if user else 'Items'} most like {query}"))


@app.command()
def report(
    model_dir: ModelDir,
    out: Annotated[
        Path, typer.Option(help="Folder to write index.html (and the map, report.json) into.")
    ] = Path("report"),
    baselines: Annotated[
        str, typer.Option(help="Comma-separated baseline specs to compare against ('' for none).")
    ] = "mean,bias,most-popular",
    k: K = 10,
    relevant: Relevant = 4.0,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    split: Split = None,
    valid_pct: ValidPct = 0.2,
    seed: Seed = 42,
    as_json: Json = False,
) -> None:
    """Write an HTML report: training curves, biases, the item map, similar items, the comparison table."""
    from collabkit.evaluate.compare import split_specs
    from collabkit.interpret.report import SECTIONS, write_report

    console, log = consoles(as_json)
    source = (dataset, data_dir, ratings, user_col, item_col, rating_col, split, valid_pct, seed)
    train, test = _training_data(model_dir, *source)
    log.print(f"writing the report of {model_dir} to {out}/ ...")
    try:
        result = write_report(model_dir, out, train, test, split_specs(baselines), k, relevant)
    except (ValueError, FileNotFoundError, KeyError) as e:
        fail(str(e))
    if as_json:
        print_json(
            {
                "out": result["out"],
                "index": result["index"],
                "files": result["files"],
                "sections": list(SECTIONS),
            }
        )
    else:
        console.print(
            f"report written: {result['index']} (open it in a browser); files: {', '.join(result['files'])}"
        )


# --- helpers ---------------------------------------------------------------------------------


def frame_table(frame: pd.DataFrame, title: str, decimals: dict[str, int] | None = None) -> Table:
    """A DataFrame as a rich table: numbers right-aligned and never cut (floats as ``_cell``
    writes them, ``decimals`` per column); long text wraps when the terminal is narrow."""
    view = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cells = {}
    for col in frame.columns:
        cells[col] = [_cell(v, (decimals or {}).get(col, 4)) for v in frame[col]]
        numeric = pd.api.types.is_numeric_dtype(frame[col])
        longest = max([len(str(col)), *map(len, cells[col])])
        view.add_column(
            str(col),
            justify="right" if numeric else "left",
            no_wrap=numeric,
            min_width=longest
            if numeric
            else min(longest, 14),  # short words like metric names stay whole
        )
    for row in zip(*cells.values()):
        view.add_row(*row)
    return view


def _cell(v: Any, places: int = 4) -> str:
    """A float to ``places`` decimals (1 from 100 up: counts and ranks need no more), NaN as '-'."""
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{places if abs(v) < 100 else min(places, 1)}f}"
    return str(v)


def _plain(obj: Any) -> Any:
    from collabkit.interpret.report import jsonable

    return jsonable(obj)


def _load(model_dir: Path) -> tuple[Any, pd.DataFrame | None]:
    from collabkit.checkpoint import load_items, load_model

    try:
        return load_model(model_dir), load_items(model_dir)
    except (ValueError, FileNotFoundError, KeyError) as e:
        fail(str(e))


def _training_data(
    model_dir: Path,
    dataset: str | None,
    data_dir: Path | None,
    ratings: Path | None,
    user_col: str,
    item_col: str,
    rating_col: str,
    split: str | None,
    valid_pct: float,
    seed: int,
) -> tuple[Ratings, Ratings | None]:
    """(train, test) as the model was trained: --ratings/--dataset or the recorded dataset, then its split."""
    from collabkit.checkpoint import read_config
    from collabkit.data.movielens import resolve_name

    recorded = read_config(model_dir).get("train", {})
    if ratings is None and dataset is None:
        dataset = recorded.get("dataset")
        try:
            resolve_name(dataset or "")
        except ValueError:
            fail(
                f"the model was trained on {dataset or 'unrecorded data'!r}, not a MovieLens set: pass --ratings FILE "
                "(the ratings it was trained on) or --dataset to get rating counts"
            )
    split = split or recorded.get("split", "none")
    try:
        data = load_source(dataset, data_dir, ratings, user_col, item_col, rating_col)
        return split_source(data, split, dataset, data_dir, valid_pct, seed)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        fail(str(e))
