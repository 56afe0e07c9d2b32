"""Train, evaluate, predict, lr-find and crosstab: the foundation verbs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from collabkit.cli.common import (
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
    duplicates: Annotated[str, typer.Option(help="Repeated (user, item) rows: error, last or mean.")] = "error",
    split: Annotated[str, typer.Option(help="random, user, temporal, none, or u1..u5/ua/ub (ML-100k).")] = "random",
    valid_pct: Annotated[float, typer.Option(help="Held-out fraction for random/user splits.")] = 0.2,
    model: Annotated[str, typer.Option(help=f"Model: {MODELS}.")] = "dot-bias",
    n_factors: Annotated[int | None, typer.Option(help="Embedding width (default 50; nn: rule of thumb).")] = None,
    layers: Annotated[str, typer.Option(help="Hidden layers of nn, comma separated.")] = "100",
    epochs: Annotated[int, typer.Option()] = 5,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the one-cycle schedule.")] = 5e-3,
    wd: Annotated[float, typer.Option(help="Weight decay.")] = 0.1,
    bs: Annotated[int | None, typer.Option(help="Batch size (default: the engine's).")] = None,
    seed: Annotated[int, typer.Option()] = 42,
    out: Annotated[Path | None, typer.Option(help="Save the trained model to this folder.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Json = False,
) -> None:
    """Train a model and report its test metrics (the chapter's epoch table, then RMSE/MAE)."""
    from collabkit.checkpoint import save_model
    from collabkit.evaluate import evaluate_ratings
    from collabkit.models.base import get_model_class
    from collabkit.train.loop import DEFAULT_BS, fit_one_cycle

    out_console, log = consoles(as_json)
    try:
        data = load_source(dataset, data_dir, ratings, user_col, item_col, rating_col, duplicates)
        train_set, test_set = split_source(data, split, dataset, data_dir, valid_pct, seed)
        cls = get_model_class(model)
    except (ValueError, FileNotFoundError, KeyError) as e:
        fail(str(e))
    config: dict[str, Any] = {"seed": seed}
    if n_factors is not None:
        config["n_factors"] = n_factors
    if model == "nn":
        config["layers"] = tuple(int(x) for x in layers.split(",") if x.strip())
    net = cls.from_data(train_set, **config)
    for note in data.notes:
        log.print(f"[dim]{note}[/dim]")
    log.print(f"[bold]{model}[/bold] on {data.name}: {len(train_set)} train / {len(test_set) if test_set is not None else 0} test ratings")
    history = fit_one_cycle(
        net, train_set, test_set, epochs=epochs, lr_max=lr, wd=wd, bs=bs or DEFAULT_BS, seed=seed,
        console=log, progress=progress,
    )
    result: dict[str, Any] = {"model": model, "dataset": data.name, "split": split}
    if test_set is not None:
        result.update(evaluate_ratings(net, test_set))
    result.update({"n_train": len(train_set), "fit_seconds": round(history.fit_seconds, 3), "epochs": epochs})
    if out is not None:
        save_model(net, out, items=data.items, extra={"history": history.rows, "train": {"lr": lr, "wd": wd, "epochs": epochs, "bs": bs or DEFAULT_BS, "split": split, "dataset": data.name}})
        result["out"] = str(out)
    if as_json:
        print_json(result)
    else:
        out_console.print(metrics_table(f"{model} on {data.name} ({split})", result))


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

    net = load_model(model_dir)
    known = net.users.lookup([user], strict=False)[0] >= 0 and net.items.lookup([item], strict=False)[0] >= 0
    if not known:
        fail(f"unknown user {user!r} or item {item!r} (the model knows {len(net.users)} users, {len(net.items)} items)")
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
