"""`collabkit biases`, `pca`, `similar` and `report`: what a saved model learned.

Each reads a folder written by `collabkit train --out`; titles come from its items.json (`similar`: or --items). Those
that need rating counts and means read the training part again, described by the model folder
itself (source, columns, split and seed as recorded at `train`); data options override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from collabkit.cli.common import Json, ModelDir, app, consoles, fail, print_json
from collabkit.cli.evaluate import K, Relevant, frame_table
from collabkit.cli.source import DataSource, training_data, with_source
from collabkit.files import clip_text

if TYPE_CHECKING:
    import pandas as pd

    from collabkit.data.interactions import Ratings


@app.command()
@with_source
def biases(
    model_dir: ModelDir,
    source: DataSource,
    top: Annotated[int, typer.Option(min=1, help="How many to show at each end.")] = 5,
    side: Annotated[str, typer.Option(help="item or user.")] = "item",
    min_ratings: Annotated[
        int, typer.Option(min=0, help="Compare bias and mean rating over items with this many ratings.")
    ] = 20,
    as_json: Json = False,
) -> None:
    """Top and bottom items (or users) by learned bias, and how bias ranks compare with mean ratings."""
    from collabkit.interpret.biases import bias_table, bias_vs_mean

    out, _ = consoles(as_json)
    model, items = _load(model_dir)
    train = _train_part(model_dir, source)
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
    ranks = {"bias_rank": 0, "mean_rank": 0, "rank_gap": 0}  # whole numbers
    out.print(
        frame_table(
            agree.disagreements[gap],
            "Where they disagree most (rank_gap > 0: bias ranks it higher)",
            decimals=ranks,
        )
    )


@app.command()
@with_source
def pca(
    model_dir: ModelDir,
    source: DataSource,
    png: Annotated[Path, typer.Option(help="Where to save the map as PNG (a .png; an existing file only if an earlier map).")] = Path("item_map.png"),
    html: Annotated[
        Path, typer.Option(help="Where to save the interactive map (self-contained .html; an existing file only if collabkit wrote it).")
    ] = Path("item_map.html"),
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Most-rated items to show on the map.")] = 50,
    components: Annotated[
        str, typer.Option(help="Two components to plot, e.g. 1,2 (the chapter shows 1,3).")
    ] = "1,2",
    fit_top: Annotated[
        int, typer.Option(min=3, help="PCA of the factors of this many most-rated items.")
    ] = 1000,
    as_json: Json = False,
) -> None:
    """PCA of the item factors: the chapter's titled map (PNG + interactive HTML) and what each axis means."""
    from collabkit.interpret.pca import item_pca, save_html, save_png

    try:
        x, y = (int(c) for c in components.split(","))
    except ValueError:
        fail(f"--components takes two numbers like 1,2, not {clip_text(repr(components), 60)}")
    if min(x, y) < 1 or x == y:
        fail(f"--components takes two different components from 1 up, like 1,2; not {components!r}")
    from collabkit.files import claim_file, file_head, matplotlib_png
    from collabkit.interpret.charts import GENERATOR

    drawn = {"--png": (png, ".png", "PNG map", matplotlib_png),
             "--html": (html, ".html", "HTML map", lambda p: GENERATOR.encode() in file_head(p, 1024))}  # fmt: skip
    for flag, (path, suffix, what, ours) in drawn.items():
        if path.suffix.lower() != suffix:
            fail(f"{flag} must end in {suffix}, not {clip_text(repr(path.name), 60)}")
        try:
            claim_file(path, what, flag, ours)  # before the work, not after it
        except (OSError, ValueError) as e:
            fail(str(e))
    out, _ = consoles(as_json)
    model, items = _load(model_dir)
    train = _train_part(model_dir, source)
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
@with_source
def similar(
    model_dir: ModelDir,
    source: DataSource,
    query: Annotated[str, typer.Argument(help="An item title or id (a user id with --user).")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many neighbours.")] = 5,
    user: Annotated[
        bool, typer.Option("--user", help="QUERY is a user id: show similar users.")
    ] = False,
    min_ratings: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Neighbours need this many training ratings: one rated once or twice has barely "
            "moved from its random start (0: any). Default: the median number of ratings of an "
            "item (a user with --user), between 5 and 20 (20 on ML-100k, 5 for Epinions' items)."
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Nearest items (or users) by cosine similarity of their factors (a knn model: its item
    similarities); suggests titles for typos."""
    from collabkit.data.vocab import UnknownIdError
    from collabkit.interpret.similar import similar_items, similar_users

    out, log = consoles(as_json)
    model, items = _load(model_dir)
    if source.items is not None:
        items = _given_items(source.items, model)
    side = "user" if user else "item"
    train = None
    if min_ratings is None or min_ratings > 0:
        try:
            _, train, _ = training_data(model_dir, source)
        except (ValueError, FileNotFoundError, KeyError, OSError) as e:
            # options given here must work; only a record that cannot be read leaves counts out
            if source != DataSource():
                fail(str(e))
            log.print(f"[yellow]no rating counts ({e}): every {side} may be a neighbour[/yellow]")
    try:
        table = (
            similar_users(model, query, k, train, min_ratings)
            if user
            else similar_items(model, query, k, items, None, train, min_ratings)
        )
    except (ValueError, UnknownIdError) as e:
        fail(str(e))
    shown = [c for c in ("user", "item", "title", "similarity", "n_ratings") if c in table.columns]
    support = dict(table.attrs)
    factors_of = model.meta.get("representation", "")
    if as_json:
        print_json(_plain({"query": query, "side": side, "similar": table[shown].to_dict(orient="records"),
                           **support, "factors_of": factors_of or None}))  # fmt: skip
        return
    out.print(frame_table(table[shown], f"{side.title()}s most like {query}"))
    if support.get("min_ratings"):
        log.print(f"neighbours with >= {support['min_ratings']} training ratings: {support['left_out']} "
                  f"{side}s with fewer left out (--min-ratings)")  # fmt: skip
    if factors_of:
        log.print(f"factors of the ensemble's {factors_of}")


@app.command()
@with_source
def report(
    model_dir: ModelDir,
    source: DataSource,
    out: Annotated[
        Path, typer.Option(help="Folder to write index.html (and the map, report.json) into.")
    ] = Path("report"),
    baselines: Annotated[
        str, typer.Option(help="Comma-separated baseline specs to compare against ('' for none).")
    ] = "mean,baseline,most-popular",
    k: K = 10,
    relevant: Relevant = 4.0,
    as_json: Json = False,
) -> None:
    """Write an HTML report: training curves, biases, the item map, similar items, the comparison table."""
    from collabkit.interpret.report import SECTIONS, check_out, write_report
    from collabkit.train.spec import parse_specs

    console, log = consoles(as_json)
    try:  # before the work: a bad spec, a model folder, a user's folder, an unwritable place
        specs = [s.name for s in parse_specs(baselines, "--baselines")]
        check_out(out)
    except (ValueError, OSError) as e:
        fail(str(e))
    train, test = _train_test(model_dir, source)
    if not 1 <= k <= train.n_items:
        fail(f"-k {k}: the top-k lists hold 1 to {train.n_items} items (the training data's)")
    log.print(f"writing the report of {model_dir} to {out}/ ...")
    try:
        result = write_report(model_dir, out, train, test, specs, k, relevant)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
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


def _plain(obj: Any) -> Any:
    from collabkit.interpret.report import jsonable

    return jsonable(obj)


def _load(model_dir: Path) -> tuple[Any, Any]:
    from collabkit.cli.recommend import load_model_dir

    return load_model_dir(model_dir)


def _given_items(path: Path, model: Any) -> pd.DataFrame:
    """The --items file given here, indexed like the model's item ids, or one error line naming --items."""
    from collabkit.data.readers import read_items
    from collabkit.data.source import aligned_items

    try:
        return aligned_items(read_items(path), model.items.ids)
    except (ValueError, OSError) as e:
        fail(f"--items {e}")


def _train_test(model_dir: Path, source: DataSource) -> tuple[Ratings, Ratings | None]:
    """(train, test) as the model was trained (``common.training_data``), or a clear error."""
    try:
        _, train, test = training_data(model_dir, source)
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        fail(str(e))
    return train, test


def _train_part(model_dir: Path, source: DataSource) -> Ratings:
    return _train_test(model_dir, source)[0]
