"""`collabkit train`, `predict`, `lr-find` and `crosstab`: the foundation verbs."""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from collabkit.cli.common import (
    SPEC_HELP,
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
from collabkit.cli.source import DataSource, source_args, with_source
from collabkit.files import clip_text

if TYPE_CHECKING:
    from rich.console import Console

    from collabkit.data.interactions import Ratings


@app.command()
@with_source
def train(
    source: DataSource,
    model: Annotated[str | None, typer.Option(help=f"Model: {SPEC_HELP} (a ranking kind with --implicit).")] = None,
    preset: Annotated[str | None, typer.Option(help="A named recipe instead of --model: chapter, best, or auto (tuned on a validation part of the training data).")] = None,
    budget: Annotated[float | None, typer.Option(help="--preset auto: seconds for the search, blend and refit (default 150).")] = None,
    memory: Annotated[float | None, typer.Option(help="--preset auto: the process's peak memory in GB (default: the smaller of 1.5 and half the machine's RAM).")] = None,
    implicit: Annotated[bool, typer.Option("--implicit", help="Treat rows as 0/1 interactions and train a ranking model.")] = False,
    threshold: Annotated[float | None, typer.Option(help="--implicit: a rating >= this is a positive (default 4; 0 keeps every row).")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="--implicit: length of the top-k lists scored.")] = 10,
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
    from collabkit.models.base import registry, supports
    from collabkit.train.build import ModelSpec, build_model

    out_console, log = consoles(as_json)
    if preset is not None and (model is not None or implicit):
        fail("--preset is a whole recipe: give it without --model and --implicit")
    if model is not None and not model.strip():
        fail("--model is empty; e.g. dot-bias or dot-bias(n_factors=20); `collabkit kinds` lists the kinds")
    if not implicit and threshold is not None:
        fail("--threshold only applies with --implicit")
    if (budget is not None or memory is not None) and preset != "auto":
        fail(f"{'--budget' if budget is not None else '--memory'} only applies with --preset auto")
    if threshold is not None and not math.isfinite(threshold):
        fail(f"--threshold must be a finite number, got {threshold}")
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        fail(f"--budget must be a finite number of seconds > 0, got {budget}")
    if memory is not None and not (math.isfinite(memory) and memory > 0):
        fail(f"--memory must be a finite number of GB > 0, got {memory}")
    if distributed:
        from collabkit.train.distributed import launched

        options = {"--model": model, "--n-factors": n_factors, "--epochs": epochs, "--lr": lr, "--wd": wd, "--bs": bs, "--out": out, "--device": device}
        try:
            if preset is not None or implicit or layers is not None:
                raise ValueError("data-parallel training takes one gradient-trained rating kind: drop --preset, --implicit and --layers")
            if not launched():
                typer.echo(torchrun_commands(source, options))
                return
        except ValueError as e:
            fail(str(e))
        return _train_data_parallel(source, model or "dot-bias", options, out, device, as_json)
    placement = on_device(device)  # a missing GPU stops here, before the data is read
    source = source.resolved()
    cut = None
    if implicit:
        cut = 4.0 if threshold is None else threshold
    try:
        spec = ModelSpec.parse(preset or model or ("als" if implicit else "dot-bias"))
        spec = spec.with_options(**_overrides(spec, n_factors, layers, epochs, lr, wd, bs))
        if budget is not None or memory is not None:
            given = {"budget": budget, "memory": memory}
            spec = ModelSpec.of("auto", **{k: v for k, v in given.items() if v is not None})
        if implicit and supports(_class(spec), "ratings"):
            rankers = sorted(k for k, cls in registry().items() if not supports(cls, "ratings"))
            raise ValueError(f"{spec.kind} is a rating model; with --implicit choose one of {', '.join(rankers)}")
        if out is not None:
            check_out(out)  # before the work, not after it
        data = source.load()
        train_set, test_set = source.split_data(data, cut)
        if implicit and k > train_set.n_items:
            raise ValueError(f"-k {k} is longer than a list can be: the training data has {train_set.n_items} items")
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
            _warn_if_worse_than_baseline(net, test_set, result, log, spec)
    result["device"] = str(where)
    result.update({"n_train": len(train_set), "fit_seconds": round(history.fit_seconds, 3), "setup_seconds": round(history.setup_seconds, 3)})
    if out is not None:
        net.meta["train"] = {"spec": spec.name, "implicit": implicit, "threshold": cut}
        try:
            save_model(net, out, items=data.items, extra={"history": history.rows})
        except (OSError, ValueError) as e:
            fail(str(e))
        result["out"] = str(out)
    if as_json:
        print_json(result)
    else:
        out_console.print(metrics_table(f"{spec.name} on {data.name} ({source.split})", result))


@app.command()
def kinds(as_json: Json = False) -> None:
    """List the model kinds (read from the registry): what each can do, its options, and its idea."""
    from dataclasses import asdict

    from collabkit.models.base import registry

    rows = []
    for name, cls in sorted(registry().items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        defaults = {k: v for k, v in asdict(cls.Config()).items()}
        rows.append({"kind": name, "capabilities": sorted(cls.capabilities), "options": defaults, "about": doc[0] if doc else ""})
    if as_json:
        print_json({"kinds": rows})
        return
    table = Table(title="model kinds (--model SPEC, e.g. dot-bias(n_factors=20))")
    for column in ("kind", "can", "options (defaults)", "about"):
        table.add_column(column, overflow="fold")
    for r in rows:
        options = ", ".join(f"{k}={v!r}" for k, v in r["options"].items())
        table.add_row(r["kind"], " ".join(r["capabilities"]) or "-", options, r["about"])
    consoles(False)[0].print(table)


def torchrun_commands(source: DataSource, options: dict[str, Any]) -> str:
    """The ``torchrun`` command lines (one host; several hosts) that run this very training
    data-parallel: the same ``collabkit train`` options, in every process."""
    args = ["train", *source_args(source)]
    args += [str(x) for flag, v in options.items() if v is not None and not (flag == "--device" and v == "cpu") for x in (flag, v)]
    run = " ".join(shlex.quote(a) for a in ["-m", "collabkit.cli", *args, "--distributed"])
    return (
        "# one host, 2 processes (gloo on CPU; with --device cuda one GPU each, NCCL); rank 0 saves the model\n"
        f"torchrun --nproc-per-node 2 {run}\n"
        "# several hosts: run on each with its --node-rank (0 .. nnodes-1); --master-addr is host 0\n"
        f"torchrun --nnodes 2 --node-rank 0 --nproc-per-node 2 --master-addr HOST0 --master-port 29500 {run}\n"
        "# every rank keeps every world-th row of the split data (or, for a folder of shards, every world-th file)"
    )


def _train_data_parallel(source: DataSource, model: str, options: dict[str, Any], out: Path | None, device: str, as_json: bool) -> None:
    """This process's part of a torchrun run (``train.distributed``): rank 0 saves and reports."""
    from collabkit.checkpoint import check_out, save_model
    from collabkit.core import parallel
    from collabkit.core.device import use
    from collabkit.train import distributed
    from collabkit.train.build import ModelSpec

    try:
        ranks, where = distributed.join(device)  # a missing GPU stops here, before the data is read
        spec = ModelSpec.parse(model)
        spec = spec.with_options(**_overrides(spec, options["--n-factors"], None, options["--epochs"], options["--lr"], options["--wd"], options["--bs"]))
        if out is not None and ranks.rank == 0:
            check_out(out)
        train_part, test_part = distributed.load_shards(source, ranks)
        net = distributed.sharded_model(spec, train_part, seed=source.resolved().seed)
        console = consoles(as_json)[1] if ranks.rank == 0 else None
        with parallel.use(ranks), use(where):
            history = net.fit(train_part, test_part, console=console, progress=False)
        n_total = _total_rows(ranks, len(train_part))
        net.meta["spec"], net.meta["train"] = spec.name, {"spec": spec.name, "implicit": False, "threshold": None}
        if out is not None and ranks.rank == 0:
            save_model(net, out, items=train_part.items, extra={"history": history.rows})
        distributed.leave()
    except (ValueError, FileNotFoundError, OSError) as e:
        fail(str(e))
    if ranks.rank != 0:
        return
    result: dict[str, Any] = {
        "world": ranks.world, "device": where.type, "model": spec.name, "n_ratings": n_total,
        "fit_seconds": round(history.fit_seconds, 3),
        "ratings_per_s": round(net.config.epochs * n_total / max(history.fit_seconds, 1e-9)),
        **{k: v for k, v in history.final.items() if k != "epoch"},
    }  # fmt: skip
    if "valid_loss" in result:
        result["rmse"] = result["valid_loss"] ** 0.5
    if out is not None:
        result["out"] = str(out)
    if as_json:
        print_json(result)
    else:
        consoles(False)[0].print(metrics_table(f"{spec.name}, data-parallel on {ranks.world} ranks", result))


def _total_rows(ranks: Any, n: int) -> int:
    import torch

    return int(ranks.sum(torch.tensor([n], dtype=torch.int64))[0])


def _class(spec: Any) -> Any:
    """The class ``spec`` builds (a preset builds an ensemble)."""
    from collabkit.models.base import get_model_class

    return get_model_class("ensemble" if spec.is_preset else spec.kind)


def _overrides(spec: Any, n_factors, layers, epochs, lr, wd, bs) -> dict[str, Any]:
    """The training flags given, as config overrides of ``spec``'s kind (--epochs is ALS's
    iterations, --lr AutoRec's lr), each checked against the kind's schema and named by its flag when refused."""
    from collabkit.models.config import ConfigError, check_options, options_schema

    flags = {"--n-factors": n_factors, "--layers": layers, "--epochs": epochs, "--lr": lr, "--wd": wd, "--bs": bs}
    given = [flag for flag, v in flags.items() if v is not None]
    if spec.is_preset:
        if given:
            raise ValueError(f"{spec.kind} is a preset, a whole recipe: drop {', '.join(given)}")
        return {}
    cls = _class(spec)
    known = options_schema(cls)
    names = {"--n-factors": "n_factors", "--layers": "layers", "--wd": "wd", "--bs": "bs"}
    names["--lr"] = "lr" if "lr" in known else "lr_max"  # AutoRec's Adam takes lr, the one-cycle lr_max
    names["--epochs"] = "iterations" if "iterations" in known else "epochs"
    if layers is not None:
        flags["--layers"] = _layers(layers)
    options = {}
    for flag in given:
        if names[flag] not in known:
            raise ValueError(f"{flag} does not apply to {spec.kind}; its options: {', '.join(sorted(known))}")
        if names[flag] in spec.config:
            raise ValueError(f"{flag} sets {names[flag]}, which the spec {spec.name!r} already sets; give it once")
        try:
            options.update(check_options(cls, {names[flag]: flags[flag]}))
        except ConfigError as e:
            raise ValueError(f"{flag} {e.problem}") from None
    return options


def _layers(text: str) -> tuple[int, ...]:
    """--layers '200,100' -> (200, 100)."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.lstrip("+-").isdigit() for p in parts):
        raise ValueError(f"--layers takes whole numbers separated by commas, e.g. 200,100; got {clip_text(repr(text), 60)}")
    return tuple(int(p) for p in parts)


def _warn_if_worse_than_baseline(net: Any, test_set: Ratings, result: dict, log: Console, spec: Any) -> None:
    """Guard rail: a model that loses to its own baseline predictor (mu + b_u + b_i) on the held-out
    ratings is told what is better there, measured: the baseline predictor itself (``--model
    baseline``, or for ``auto`` the baseline spec whose predictor it falls back on, is exactly it),
    and, unless it is the model that lost, ``--preset auto``, which blends the baseline with factor
    models by support and keeps whichever of its blends errs least out of fold. Nothing that was not
    measured better is suggested."""
    from collabkit.core.loop import encode

    enc = encode(net, test_set, strict=False)
    base = net.baseline(enc.users, enc.items).double()
    base_rmse = float((base - enc.ratings.double()).pow(2).mean().sqrt())
    result["baseline_rmse"] = base_rmse
    if result["rmse"] <= base_rmse:
        return
    fallback = (net.meta.get("auto") or {}).get("fallback") or {}
    better = [f"--model {shlex.quote(fallback.get('spec', 'baseline'))} (the baseline predictor mu + b_u + b_i: RMSE {base_rmse:.4f} on these held-out ratings)"]
    if spec.kind != "auto":
        better.append("--preset auto (blends that predictor with factor models, weighting each by the "
                      "user's and the item's number of ratings, and keeps that blend, one weight per "
                      "model or the best single model, whichever errs least out of fold)")  # fmt: skip
    log.print(
        f"[yellow]warning: this model (RMSE {result['rmse']:.4f}) is worse than the baseline predictor "
        f"(RMSE {base_rmse:.4f}) on the held-out ratings. Better on this data: {'; or '.join(better)}.[/yellow]"
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
    model: Annotated[str, typer.Option(help=f"Model: {SPEC_HELP}.")] = "dot-bias",
    wd: Annotated[float, typer.Option()] = 0.1,
    validate: Annotated[bool, typer.Option(help="Fit at fractions of the valley and keep the rate that validates best (on 10% carved from the data).")] = True,
    plot: Annotated[Path | None, typer.Option(help="Save the loss-vs-lr plot (a .png), the suggestion marked. An existing file is replaced only if it is a PNG matplotlib drew (an earlier plot).")] = None,
    as_json: Json = False,
) -> None:
    """Sweep the learning rate; suggest the valley (fastai's rule), checked by short validated fits."""
    from collabkit.files import claim_file, matplotlib_png
    from collabkit.train.build import build_untrained
    from collabkit.train.lr_find import lr_find, validate_lr

    _, log = consoles(as_json)
    if plot is not None and plot.suffix.lower() != ".png":
        fail(f"--plot must end in .png (the plot is a PNG), not {clip_text(repr(plot.name), 60)}")
    try:
        if plot is not None:  # before the work, not after it
            claim_file(plot, "PNG plot", "--plot", matplotlib_png)
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
        try:
            result.plot(plot)
        except OSError as e:
            fail(str(e))
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
    n_users: Annotated[int, typer.Option(min=1, help="Most active users to show.")] = 15,
    n_items: Annotated[int, typer.Option(min=1, help="Most rated items to show.")] = 15,
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
