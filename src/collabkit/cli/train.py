"""`collabkit train`, `predict`, `lr-find` and `crosstab`: the foundation verbs."""

from __future__ import annotations

import shlex
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from collabkit.cli.common import (
    IMPLICIT_MODELS,
    MODELS,
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
from collabkit.cli.source import DataSource, with_source

if TYPE_CHECKING:
    from rich.console import Console

    from collabkit.data.interactions import Ratings


@app.command()
@with_source
def train(
    source: DataSource,
    model: Annotated[str | None, typer.Option(help=f"Model spec, e.g. dot-bias or dot-bias(n_factors=20): {MODELS}; with --implicit: {IMPLICIT_MODELS}.")] = None,
    preset: Annotated[str | None, typer.Option(help="A named recipe instead of --model: chapter, best, or auto (tuned on a validation part of the training data).")] = None,
    budget: Annotated[float | None, typer.Option(help="--preset auto: seconds for the search and refit (default 600).")] = None,
    implicit: Annotated[bool, typer.Option("--implicit", help="Treat rows as 0/1 interactions and train a ranking model.")] = False,
    threshold: Annotated[float | None, typer.Option(help="--implicit: a rating >= this is a positive (default 4; 0 keeps every row).")] = None,
    k: Annotated[int, typer.Option("-k", help="--implicit: length of the top-k lists scored.")] = 10,
    n_factors: Annotated[int | None, typer.Option(help="Embedding width (default 50; nn: rule of thumb).")] = None,
    layers: Annotated[str | None, typer.Option(help="Hidden layers of nn, comma separated (default 100).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (ALS: iterations); default: the model's recipe.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate of the one-cycle schedule (default 5e-3).")] = None,
    wd: Annotated[float | None, typer.Option(help="Weight decay (default 0.1).")] = None,
    bs: Annotated[int | None, typer.Option(help="Batch size (default: the model's).")] = None,
    out: Annotated[Path | None, typer.Option(help="Save the trained model to this folder.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    distributed: Annotated[bool, typer.Option("--distributed", help="Print the torchrun commands that train this on several processes or hosts, and exit.")] = False,
    device: Device = "cpu",
    as_json: Json = False,
) -> None:
    """Train a model and report its test metrics (the chapter's epoch table, then RMSE/MAE).

    With --implicit the ratings become 0/1 interactions (rating >= --threshold) and the model
    (als, bpr, ease, most-popular) is scored by ranking metrics @k on the held-out positives.
    The data description (source, columns, split, seed) is saved with the model, so later
    commands (evaluate, report, recommend...) need only the model folder.
    """
    from collabkit.checkpoint import check_out, save_model
    from collabkit.models.base import supports
    from collabkit.train.build import ModelSpec, build_model

    out_console, log = consoles(as_json)
    if preset is not None and (model is not None or implicit):
        fail("--preset is a whole recipe: give it without --model and --implicit")
    if not implicit and threshold is not None:
        fail("--threshold only applies with --implicit")
    if budget is not None and preset != "auto":
        fail("--budget only applies with --preset auto")
    if distributed:
        try:
            typer.echo(torchrun_commands(source, model, n_factors, epochs, lr, wd, bs, out, preset=preset, implicit=implicit, layers=layers, device=device))
        except ValueError as e:
            fail(str(e))
        return
    placement = on_device(device)  # a missing GPU stops here, before the data is read
    source = source.resolved()
    cut = None
    if implicit:
        cut = 4.0 if threshold is None else threshold
    try:
        spec = ModelSpec.parse(preset or model or ("als" if implicit else "dot-bias"))
        spec = spec.with_options(**_overrides(spec, n_factors, layers, epochs, lr, wd, bs))
        if budget is not None:
            spec = ModelSpec.parse(f"auto(budget={budget!r})")
        if implicit and supports(_class(spec), "ratings"):
            raise ValueError(f"{spec.kind} is a rating model; with --implicit choose one of {IMPLICIT_MODELS}")
        if out is not None:
            check_out(out)  # before the work, not after it
        data = source.load()
        train_set, test_set = source.split_data(data, cut)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        fail(str(e))
    for note in data.notes:
        log.print(f"[dim]{note}[/dim]")
    n_test = len(test_set) if test_set is not None else 0
    unit = "interactions" if implicit else "ratings"
    log.print(f"[bold]{spec.name}[/bold] on {data.name}: {len(train_set)} train / {n_test} test {unit}")
    result: dict[str, Any] = {"model": spec.name, "dataset": data.name, "split": source.split}
    with placement as where:
        try:
            net, history = build_model(
                spec, train_set, None if implicit else test_set, seed=source.seed, console=log, progress=progress
            )
        except ValueError as e:
            fail(str(e))
        if test_set is not None and implicit:
            from collabkit.evaluate import evaluate_ranking

            result.update(evaluate_ranking(net, train_set, test_set, k=k, relevant_threshold=None))
        elif test_set is not None:
            from collabkit.evaluate import evaluate_ratings

            result.update(evaluate_ratings(net, test_set))
            _warn_if_worse_than_baseline(net, test_set, result, log)
    result["device"] = str(where)
    result.update({"n_train": len(train_set), "fit_seconds": round(history.fit_seconds, 3), "setup_seconds": round(history.setup_seconds, 3)})
    if out is not None:
        recipe = {"spec": spec.name, "implicit": implicit, "threshold": cut}
        extra = {"history": history.rows, "data": source.to_json(), "train": recipe}
        try:
            save_model(net, out, items=data.items, extra=extra)
        except (OSError, ValueError) as e:
            fail(str(e))
        result["out"] = str(out)
    if as_json:
        print_json(result)
    else:
        out_console.print(metrics_table(f"{spec.name} on {data.name} ({source.split})", result))


def torchrun_commands(
    source: DataSource, model: str | None, n_factors, epochs, lr, wd, bs, out, *, preset=None, implicit=False, layers=None, device="cpu"
) -> str:
    """The ``torchrun`` command lines (one host; several hosts) that run this training data-parallel.

    The distributed trainer (``collabkit.train.distributed``) takes a MovieLens set with an optional
    canonical split, or a ratings file or folder of shards in the library's default layout
    (user, item, rating columns with a header); anything else is refused here, by name.
    """
    unsupported = {
        "--preset": preset, "--implicit": implicit or None, "--layers": layers, "--names": source.names,
        "--no-header": source.no_header, "--user-col": source.user_col, "--item-col": source.item_col,
        "--rating-col": source.rating_col, "--timestamp-col": source.timestamp_col,
        "--duplicates": source.duplicates, "--items": source.items, "--valid-pct": source.valid_pct,
    }  # fmt: skip
    given = [flag for flag, v in unsupported.items() if v is not None]
    if given:
        raise ValueError(f"the distributed trainer does not take {', '.join(given)}; see python -m collabkit.train.distributed --help")
    args = ["--ratings", str(source.ratings)] if source.ratings is not None else ["--dataset", source.dataset or "ml-100k"]
    if source.data_dir is not None:
        args += ["--data-dir", str(source.data_dir)]
    if source.split not in (None, "random"):
        if source.ratings is not None:
            raise ValueError("with --ratings the distributed trainer validates on a file of its own: add --valid FILE to the command printed without --split")
        args += ["--split", source.split]
    options = {"--model": model, "--n-factors": n_factors, "--epochs": epochs, "--lr": lr, "--wd": wd, "--bs": bs, "--seed": source.seed, "--out": out}
    if device != "cpu":
        options["--device"] = device
    args += [str(x) for flag, v in options.items() if v is not None for x in (flag, v)]
    run = " ".join(shlex.quote(a) for a in ["-m", "collabkit.train.distributed", *args])
    return (
        "# one host, 2 processes (gloo on CPU; with --device cuda one GPU each, NCCL); rank 0 saves the model\n"
        f"torchrun --nproc-per-node 2 {run}\n"
        "# several hosts: run on each with its --node-rank (0 .. nnodes-1); --master-addr is host 0\n"
        f"torchrun --nnodes 2 --node-rank 0 --nproc-per-node 2 --master-addr HOST0 --master-port 29500 {run}\n"
        "# every rank keeps every world-th row of the data (or, for a folder, every world-th file)"
    )


def _class(spec: Any) -> Any:
    """The class ``spec`` builds (a preset builds an ensemble)."""
    from collabkit.models.base import get_model_class

    return get_model_class("ensemble" if spec.is_preset else spec.kind)


def _overrides(spec: Any, n_factors, layers, epochs, lr, wd, bs) -> dict[str, Any]:
    """The training flags given, as config overrides of ``spec``'s kind (--epochs is ALS's iterations)."""
    if spec.is_preset:
        given = [f for f, v in (("--n-factors", n_factors), ("--layers", layers), ("--epochs", epochs), ("--lr", lr), ("--wd", wd), ("--bs", bs)) if v is not None]
        if given:
            raise ValueError(f"{spec.kind} is a preset, a whole recipe: drop {', '.join(given)}")
        return {}
    names = {f.name for f in fields(_class(spec).Config)}
    options = {"n_factors": n_factors, "lr_max": lr, "wd": wd, "bs": bs}
    options["iterations" if "iterations" in names else "epochs"] = epochs
    if layers is not None:
        options["layers"] = tuple(int(x) for x in layers.split(",") if x.strip())
    return {key: v for key, v in options.items() if v is not None}


def _warn_if_worse_than_baseline(net: Any, test_set: Ratings, result: dict, log: Console) -> None:
    """Guard rail: a model that loses to its own baseline predictor (mu + b_u + b_i) has overfitted."""
    from collabkit.core.loop import encode

    enc = encode(net, test_set, strict=False)
    base = net.baseline(enc.users, enc.items).double()
    base_rmse = float((base - enc.ratings.double()).pow(2).mean().sqrt())
    result["baseline_rmse"] = base_rmse
    if result["rmse"] > base_rmse:
        log.print(
            f"[yellow]warning: this model (RMSE {result['rmse']:.4f}) is worse than the baseline predictor "
            f"mu + b_u + b_i (RMSE {base_rmse:.4f}) on the held-out ratings: it has overfitted. Try more weight "
            "decay (--wd), fewer factors (--n-factors), fewer epochs, or the bias model.[/yellow]"
        )


@app.command()
def predict(
    model_dir: ModelDir,
    user: Annotated[str, typer.Argument()],
    item: Annotated[str, typer.Argument()],
    proba: Annotated[bool, typer.Option("--proba", help="Also the probability of each rating level (ordinal models).")] = False,
    as_json: Json = False,
) -> None:
    """Predicted rating of USER for ITEM (ids as in the training data)."""
    from collabkit.cli.recommend import load_model_dir
    from collabkit.models.base import PROBA, CapabilityError, require

    net, _ = load_model_dir(model_dir)  # missing/truncated weights, bad JSON...: one clear line
    unknown = [f"unknown {side} {raw!r}" for side, raw, vocab in (("user", user, net.users), ("item", item, net.items))
               if vocab.lookup([raw], strict=False)[0] < 0]  # fmt: skip
    if unknown:
        fail(f"{' and '.join(unknown)} (the model knows {len(net.users)} users, {len(net.items)} items)")
    score = float(net.predict([user], [item])[0])
    result: dict[str, Any] = {"user": user, "item": item, "prediction": score}
    if proba:
        try:
            require(net, PROBA)
        except CapabilityError as e:
            fail(str(e))
        p = net.predict_proba([user], [item])[0]
        result["proba"] = {f"{level:g}": float(v) for level, v in zip(net.config.levels, p)}
    if as_json:
        print_json(result)
        return
    show = consoles(False)[0]
    show.print(f"{score:.3f}")
    for level, v in result.get("proba", {}).items():
        show.print(f"  P(rating = {level}) = {v:.3f}")


@app.command("lr-find")
@with_source
def lr_find_cmd(
    source: DataSource,
    model: Annotated[str, typer.Option(help=f"Model spec: {MODELS}.")] = "dot-bias",
    wd: Annotated[float, typer.Option()] = 0.1,
    validate: Annotated[bool, typer.Option(help="Fit at fractions of the valley and keep the rate that validates best (on 10% carved from the data).")] = True,
    plot: Annotated[Path | None, typer.Option(help="Save the loss-vs-lr plot (PNG), the suggestion marked.")] = None,
    as_json: Json = False,
) -> None:
    """Sweep the learning rate; suggest the valley (fastai's rule), checked by short validated fits."""
    from collabkit.train.build import build_untrained
    from collabkit.train.lr_find import lr_find, validate_lr

    _, log = consoles(as_json)
    try:
        data = source.load()
        net = build_untrained(model, data)
        if "wd" in net.config.to_json():  # the validated fits use the wd the sweep used
            net.config = net.config.updated(wd=wd)
        result = lr_find(net, data, wd=wd)
        if validate:
            log.print(f"valley {result.valley:.2e}; fitting at fractions of it to validate ...")
            result = validate_lr(net, data, result)
    except (ValueError, FileNotFoundError, OSError) as e:
        fail(str(e))
    if plot is not None:
        result.plot(plot)
    obj = {
        "suggestion": result.suggestion, "valley": result.valley, "steepest": result.steepest,
        "validation_rmse": {f"{k:.3g}": v for k, v in (result.validated or {}).items()},
        "plot": str(plot) if plot else None,
    }  # fmt: skip
    if as_json:
        print_json(obj)
    else:
        seen = ", ".join(f"{k:.2e}: {v:.4f}" for k, v in (result.validated or {}).items())
        consoles(False)[0].print(
            f"suggested lr: {result.suggestion:.2e} (valley {result.valley:.2e}, steepest descent "
            f"{result.steepest:.2e}){'; validation RMSE ' + seen if seen else ''}"
        )


@app.command()
@with_source
def crosstab(
    source: DataSource,
    n_users: Annotated[int, typer.Option(help="Most active users to show.")] = 15,
    n_items: Annotated[int, typer.Option(help="Most rated items to show.")] = 15,
) -> None:
    """The chapter's table: most active users x most rated items, blanks where the model must fill in."""
    import pandas as pd

    try:
        data = source.load()
    except (ValueError, FileNotFoundError, OSError) as e:
        fail(str(e))
    table = data.crosstab(n_users, n_items)
    view = Table(title=f"{data.name}: {n_users} most active users x {n_items} most rated items")
    view.add_column("user")
    for item in table.columns:
        view.add_column(str(item), justify="right")
    for user, row in table.iterrows():
        view.add_row(str(user), *("" if pd.isna(v) else f"{v:g}" for v in row))
    consoles(False)[0].print(view)
    titles = data.titles(list(table.columns))
    if titles != [str(i) for i in table.columns]:
        consoles(False)[0].print("items: " + "; ".join(f"{i}={t}" for i, t in zip(table.columns, titles)))
