"""Train, evaluate, predict, lr-find and crosstab: the foundation verbs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from collabkit.cli.common import (
    IMPLICIT_MODELS,
    MODELS,
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
    metrics_table,
    print_json,
    split_source,
)


@app.command()
def train(
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    duplicates: Annotated[str, typer.Option(help="Repeated (user, item) rows: error, last, mean or sum.")] = "error",
    split: Annotated[str, typer.Option(help="random, user, temporal, none, or u1..u5/ua/ub (ML-100k).")] = "random",
    valid_pct: Annotated[float, typer.Option(help="Held-out fraction for random/user splits.")] = 0.2,
    model: Annotated[str | None, typer.Option(help=f"Model: {MODELS}; with --implicit: {IMPLICIT_MODELS}.")] = None,
    preset: Annotated[str | None, typer.Option(help="A named recipe instead of --model: chapter, best, bpmf, autorec.")] = None,
    implicit: Annotated[bool, typer.Option("--implicit", help="Treat rows as 0/1 interactions and train a ranking model.")] = False,
    threshold: Annotated[float | None, typer.Option(help="--implicit: a rating >= this is a positive (default 4; 0 keeps every row).")] = None,
    k: Annotated[int, typer.Option("-k", help="--implicit: length of the top-k lists scored.")] = 10,
    n_factors: Annotated[int | None, typer.Option(help="Embedding width (default 50; nn: rule of thumb).")] = None,
    layers: Annotated[str, typer.Option(help="Hidden layers of nn, comma separated.")] = "100",
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 5; --implicit: the model's own default).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate of the one-cycle schedule (default 5e-3).")] = None,
    wd: Annotated[float | None, typer.Option(help="Weight decay (default 0.1).")] = None,
    bs: Annotated[int | None, typer.Option(help="Batch size (default: the engine's).")] = None,
    seed: Annotated[int, typer.Option()] = 42,
    out: Annotated[Path | None, typer.Option(help="Save the trained model to this folder.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Json = False,
) -> None:
    """Train a model and report its test metrics (the chapter's epoch table, then RMSE/MAE).

    With --implicit the ratings become 0/1 interactions (rating >= --threshold) and the model
    (als, bpr, ease, most-popular) is scored by ranking metrics @k on the held-out positives.
    """
    from collabkit.checkpoint import check_out, save_model

    out_console, log = consoles(as_json)
    if preset is not None and (model is not None or implicit):
        fail("--preset is a whole recipe: give it without --model and --implicit")
    if not implicit and threshold is not None:
        fail("--threshold only applies with --implicit")
    try:
        if out is not None:
            check_out(out)  # before the work, not after it
        data = load_source(dataset, data_dir, ratings, user_col, item_col, rating_col or None, duplicates)
        if implicit:
            train_set, test_set = _implicit_split(data, split, dataset, data_dir, valid_pct, seed, threshold)
        else:
            train_set, test_set = split_source(data, split, dataset, data_dir, valid_pct, seed)
    except (ValueError, FileNotFoundError, KeyError) as e:
        fail(str(e))
    for note in data.notes:
        log.print(f"[dim]{note}[/dim]")
    name = preset and f"preset {preset}" or model or ("als" if implicit else "dot-bias")
    n_test = len(test_set) if test_set is not None else 0
    log.print(f"[bold]{name}[/bold] on {data.name}: {len(train_set)} train / {n_test} test {'interactions' if implicit else 'ratings'}")
    recipe: dict[str, Any] = {"split": split, "dataset": data.name}
    try:
        if preset is not None:
            from collabkit.train.presets import fit_preset

            net, history = fit_preset(preset, train_set, console=log, seed=seed)
            recipe["preset"] = preset
        elif implicit:
            net, history = _fit_implicit(name, train_set, n_factors, epochs, lr, wd, bs, seed, log)
            recipe.update(implicit=True, threshold=4.0 if threshold is None else threshold)
        else:
            net, history = _fit_explicit(
                name, train_set, test_set, n_factors, layers, epochs, lr, wd, bs, seed, log, progress
            )
            recipe.update(lr=lr or 5e-3, wd=0.1 if wd is None else wd, epochs=epochs or 5, bs=bs or net.default_bs)
    except ValueError as e:
        fail(str(e))
    result: dict[str, Any] = {"model": name, "dataset": data.name, "split": split}
    if test_set is not None and implicit:
        from collabkit.evaluate import evaluate_ranking

        result.update(evaluate_ranking(net, train_set, test_set, k=k, relevant_threshold=None))
    elif test_set is not None:
        from collabkit.evaluate import evaluate_ratings

        result.update(evaluate_ratings(net, test_set))
    result.update({"n_train": len(train_set), "fit_seconds": round(history.fit_seconds, 3)})
    if out is not None:
        try:
            save_model(net, out, items=data.items, extra={"history": history.rows, "train": recipe})
        except (ValueError, OSError) as e:
            fail(str(e))
        result["out"] = str(out)
    if as_json:
        print_json(result)
    else:
        out_console.print(metrics_table(f"{name} on {data.name} ({split})", result))


def _fit_explicit(kind, train_set, test_set, n_factors, layers, epochs, lr, wd, bs, seed, log, progress):
    """The chapter's fit_one_cycle on a rating model (defaults: 5 epochs, lr 5e-3, wd 0.1)."""
    from collabkit.models.base import get_model_class
    from collabkit.train.loop import fit_one_cycle

    cls = get_model_class(kind)
    config: dict[str, Any] = {"seed": seed}
    if n_factors is not None:
        config["n_factors"] = n_factors
    if kind == "nn":
        config["layers"] = tuple(int(x) for x in layers.split(",") if x.strip())
    net = cls.from_data(train_set, **config)
    if hasattr(net, "fit"):  # kinds with their own solver (implicit rankers, AutoRec, Bayesian MF)
        raise ValueError(f"{kind} has its own solver: use --implicit (als, bpr, ease, most-popular) or --preset")
    history = fit_one_cycle(
        net, train_set, test_set, epochs=epochs or 5, lr_max=lr or 5e-3, wd=0.1 if wd is None else wd,
        bs=bs, seed=seed, console=log, progress=progress,
    )
    return net, history


def _fit_implicit(kind, train_set, n_factors, epochs, lr, wd, bs, seed, log):
    """An implicit ranker with its own tuned defaults; only the options given override them."""
    from collabkit.train.implicit import train_implicit

    options: dict[str, Any] = {"seed": seed}
    given = {"n_factors": n_factors, "lr_max": lr, "wd": wd, "bs": bs}
    options.update({key: v for key, v in given.items() if v is not None})
    if epochs is not None:
        options["iterations" if kind == "als" else "epochs"] = epochs
    net, history = train_implicit(kind, train_set, **options)
    if not history.fit_seconds and history.rows:
        history.fit_seconds = float(sum(r.get("time", 0.0) for r in history.rows))
    log.print(f"{kind}: fitted in {history.fit_seconds:.2f}s")
    return net, history


def _implicit_split(data, split, dataset, data_dir, valid_pct, seed, threshold):
    """(train, test) interactions: positives are ratings >= threshold (default 4; 0 = every row)."""
    from collabkit.data.implicit import to_implicit

    cut = 4.0 if threshold is None else threshold
    cut = None if cut <= 0 else cut
    if split in ("random", "user", "temporal", "none"):
        return split_source(to_implicit(data, cut), split, dataset, data_dir, valid_pct, seed)
    train_set, test_set = split_source(data, split, dataset, data_dir, valid_pct, seed)
    return to_implicit(train_set, cut), to_implicit(test_set, cut)


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `collabkit train --out`.")],
    dataset: Dataset = None,
    data_dir: DataDir = None,
    split: Annotated[str, typer.Option(help="Canonical split whose test part to score (u1..ub), or random/user/temporal.")] = "u1",
    valid_pct: Annotated[float, typer.Option()] = 0.2,
    seed: Annotated[int, typer.Option()] = 42,
    ratings: Annotated[Path | None, typer.Option("--ratings", help="Held-out file with the training columns.")] = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    as_json: Json = False,
) -> None:
    """Score a saved model on a held-out set; unknown users/items are counted and use the fallback."""
    from collabkit.checkpoint import load_model, read_config
    from collabkit.data.readers import read_ratings
    from collabkit.evaluate import evaluate_ratings

    out_console, log = consoles(as_json)
    try:
        net = load_model(model_dir)
        if ratings is not None:
            test_set = read_ratings(ratings, user_col, item_col, rating_col)
        else:
            dataset = dataset or read_config(model_dir).get("train", {}).get("dataset")
            data = load_source(dataset, data_dir, None)
            _, test_set = split_source(data, split, dataset, data_dir, valid_pct, seed)
    except (ValueError, FileNotFoundError, KeyError) as e:
        fail(str(e))
    result = {"model": net.kind, **evaluate_ratings(net, test_set)}
    if result["n_unknown_users"] or result["n_unknown_items"]:
        log.print(
            f"[yellow]{result['n_unknown_users']} rows with an unknown user and {result['n_unknown_items']} with an "
            "unknown item were scored by the fallback (zero factors and bias for the unknown side)[/yellow]"
        )
    if as_json:
        print_json(result)
    else:
        out_console.print(metrics_table(f"{net.kind} on {test_set.name}", result))


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument()],
    user: Annotated[str, typer.Argument()],
    item: Annotated[str, typer.Argument()],
    as_json: Json = False,
) -> None:
    """Predicted rating of USER for ITEM (ids as in the training data)."""
    from collabkit.checkpoint import load_model

    try:
        net = load_model(model_dir)
    except (ValueError, OSError) as e:  # missing/truncated weights, bad JSON, shapes that do not fit
        fail(str(e))
    unknown = [f"unknown {side} {raw!r}" for side, raw, vocab in (("user", user, net.users), ("item", item, net.items))
               if vocab.lookup([raw], strict=False)[0] < 0]  # fmt: skip
    if unknown:
        fail(f"{' and '.join(unknown)} (the model knows {len(net.users)} users, {len(net.items)} items)")
    score = float(net.predict([user], [item])[0])
    if as_json:
        print_json({"user": user, "item": item, "prediction": score})
    else:
        Console().print(f"{score:.3f}")


@app.command("lr-find")
def lr_find_cmd(
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    model: Annotated[str, typer.Option(help=f"Model: {MODELS}.")] = "dot-bias",
    wd: Annotated[float, typer.Option()] = 0.1,
    plot: Annotated[Path | None, typer.Option(help="Save the loss-vs-lr plot (PNG).")] = None,
    as_json: Json = False,
) -> None:
    """Sweep the learning rate and suggest one (fastai's 'valley' rule)."""
    from collabkit.models.base import get_model_class
    from collabkit.train.lr_find import lr_find

    data = load_source(dataset, data_dir, ratings, user_col, item_col, rating_col)
    result = lr_find(get_model_class(model).from_data(data), data, wd=wd)
    if plot is not None:
        result.plot(plot)
    obj = {"suggestion": result.suggestion, "steepest": result.steepest, "plot": str(plot) if plot else None}
    if as_json:
        print_json(obj)
    else:
        Console().print(f"suggested lr: {result.suggestion:.2e} (steepest descent at {result.steepest:.2e})")


@app.command()
def crosstab(
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    users: Annotated[int, typer.Option(help="Most active users to show.")] = 15,
    items: Annotated[int, typer.Option(help="Most rated items to show.")] = 15,
) -> None:
    """The chapter's table: most active users x most rated items, blanks where the model must fill in."""
    data = load_source(dataset, data_dir, ratings, user_col, item_col, rating_col)
    table = data.crosstab(users, items)
    view = Table(title=f"{data.name}: {users} most active users x {items} most rated items")
    view.add_column("user")
    for item in table.columns:
        view.add_column(str(item), justify="right")
    for user, row in table.iterrows():
        view.add_row(str(user), *("" if pd.isna(v) else f"{v:g}" for v in row))
    Console().print(view)
    titles = data.titles(list(table.columns))
    if titles != [str(i) for i in table.columns]:
        Console().print("items: " + "; ".join(f"{i}={t}" for i, t in zip(table.columns, titles)))
