"""`collabkit recommend`, `recommend-all` and `onboard`: top-N lists, in bulk, and for newcomers.

A saved model does not hold its ratings, so these commands read them again to know what each user
has already rated (never recommended back) and what explains a recommendation: from --ratings
FILE, from --dataset, or by default from the dataset recorded when the model was trained
(config.json "train" entry; for MovieLens that is the whole set, so items a user rated in the
test split are excluded too).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
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
    print_json,
)
from collabkit.data.interactions import Ratings
from collabkit.files import atomic_path

ModelDir = Annotated[Path, typer.Argument(help="Folder written by `collabkit train --out`.")]
TopN = Annotated[int, typer.Option("-n", "--n", help="Length of each list.")]
IncludeSeen = Annotated[
    bool,
    typer.Option(
        "--include-seen", help="Allow items the user has already rated (no ratings needed)."
    ),
]
Genre = Annotated[
    str | None,
    typer.Option(
        help="Recommend only items of this genre (needs a genres column in the item metadata)."
    ),
]


@app.command("recommend")
def recommend_cmd(
    model_dir: ModelDir,
    user: Annotated[str, typer.Argument(help="User id as in the training data.")],
    n: TopN = 10,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    include_seen: IncludeSeen = False,
    genre: Genre = None,
    fallback: Annotated[
        bool,
        typer.Option(
            "--fallback", help="Unknown user: show the average-taste list instead of failing."
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Top-N items for USER with scores and a reason ("because you rated X and Y highly")."""
    from collabkit.data.vocab import UnknownIdError
    from collabkit.recommend.recommend import recommend

    model, items = _load(model_dir)
    data = _training_ratings(
        model_dir,
        dataset,
        data_dir,
        ratings,
        user_col,
        item_col,
        rating_col,
        needed=not include_seen,
    )
    try:
        recs = recommend(
            model,
            data,
            [user],
            n,
            exclude_seen=not include_seen,
            candidates=_genre_items(genre, model, items, data),
            unknown="fallback" if fallback else "error",
            items=items,
        )
    except UnknownIdError:
        fail(
            f"unknown user {user!r} (the model knows {len(model.users)} users). Use --fallback for the "
            f"average-taste list, or `collabkit onboard {model_dir}` to answer a few questions"
        )
    except (TypeError, ValueError) as e:
        fail(str(e))
    if as_json:
        print_json({"user": user, "n": n, "recommendations": _records(recs)})
        return
    seen = "" if include_seen else " (items you rated are left out)"
    Console().print(_table(f"Top {n} for user {user}{seen}", recs))


@app.command("recommend-all")
def recommend_all_cmd(
    model_dir: ModelDir,
    out: Annotated[Path, typer.Option("--out", help="Where to write: .parquet or .csv.")],
    n: TopN = 10,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    include_seen: IncludeSeen = False,
    genre: Genre = None,
    explain: Annotated[bool, typer.Option(help="Add the 'because' column.")] = True,
    as_json: Json = False,
) -> None:
    """Top-N for every user the model knows, written to one file (columns user, rank, item, score, ...)."""
    from collabkit.recommend.recommend import recommend

    if out.suffix not in (".parquet", ".csv"):
        fail(f"--out must end in .parquet or .csv, not {out.name!r}")
    out_console, _ = consoles(as_json)
    model, items = _load(model_dir)
    data = _training_ratings(
        model_dir,
        dataset,
        data_dir,
        ratings,
        user_col,
        item_col,
        rating_col,
        needed=not include_seen,
    )
    t0 = time.perf_counter()
    recs = recommend(
        model,
        data,
        None,
        n,
        exclude_seen=not include_seen,
        candidates=_genre_items(genre, model, items, data),
        explain=explain,
        items=items,
    )
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:  # a killed run leaves the old file, never a shorter one
        if out.suffix == ".parquet":
            recs.to_parquet(tmp, index=False)
        else:
            recs.to_csv(tmp, index=False)
    result = {
        "out": str(out),
        "n_users": int(recs["user"].nunique()),
        "n_rows": len(recs),
        "n": n,
        "seconds": round(seconds, 3),
    }
    if as_json:
        print_json(result)
    else:
        out_console.print(
            f"{result['n_rows']} recommendations for {result['n_users']} users -> {out} ({seconds:.2f} s)"
        )


@app.command("onboard")
def onboard_cmd(
    model_dir: ModelDir,
    questions: Annotated[int, typer.Option(help="Stop after this many answers.")] = 10,
    n: TopN = 10,
    dataset: Dataset = None,
    data_dir: DataDir = None,
    ratings: RatingsFile = None,
    user_col: UserCol = "user",
    item_col: ItemCol = "item",
    rating_col: RatingCol = "rating",
    as_json: Json = False,
) -> None:
    """Rate a few items the model picks (Enter = haven't seen it, q = done), then get recommendations.

    The questions are chosen to place you quickly (popular items people disagree on, spread across
    the taste space; see collabkit.recommend.onboard); your answers are folded into the model in
    milliseconds, without retraining. With --json the questions go to stderr and the answers and
    recommendations are printed as one JSON object.
    """
    from collabkit.recommend.foldin import user_prior
    from collabkit.recommend.onboard import Questionnaire
    from collabkit.recommend.recommend import recommend_new_users

    _, log = consoles(as_json)
    model, items = _load(model_dir)
    data = _training_ratings(
        model_dir, dataset, data_dir, ratings, user_col, item_col, rating_col, needed=False
    )
    if data is None:
        log.print(
            "[yellow]no training ratings found: questions ignore how popular items are[/yellow]"
        )
    try:
        prior = user_prior(model, data)
        session = Questionnaire(model, data, prior)
    except TypeError as e:
        fail(str(e))
    lo, hi = model.meta.get("scale") or (1, 5)
    names = _titles(items)
    asked = 0
    while len(session.items) < questions and asked < 20 * questions:
        item = session.next_item()
        if item is None:
            break
        asked += 1
        rating = _ask(
            f"[{len(session.items) + 1}/{questions}] {names.get(item, item)}  rate {lo:g}-{hi:g}, Enter = haven't seen it, q = done",
            lo,
            hi,
            as_json,
        )
        if rating == "quit":
            break
        session.answer(item, rating)
    recs = recommend_new_users(model, session.answers, n, prior=prior, items=items, user="you")
    if as_json:
        answers = session.answers
        if names:
            answers = answers.assign(title=answers["item"].map(names))
        print_json(
            {"answers": _records(answers), "recommendations": _records(recs.drop(columns="user"))}
        )
        return
    Console().print(_table(f"Top {n} from your {len(session.items)} answers", recs))


# --- helpers ---------------------------------------------------------------------------------------
def _load(model_dir: Path) -> tuple[Any, pd.DataFrame | None]:
    """The model and the item metadata saved beside it."""
    from collabkit.checkpoint import load_items, load_model

    try:
        return load_model(model_dir), load_items(model_dir)
    except (FileNotFoundError, ValueError, KeyError) as e:
        fail(str(e))


def _training_ratings(
    model_dir: Path,
    dataset: str | None,
    data_dir: Path | None,
    ratings: Path | None,
    user_col: str,
    item_col: str,
    rating_col: str,
    needed: bool,
) -> Ratings | None:
    """The ratings that tell what users have seen: --ratings, --dataset, or the model's recorded dataset."""
    from collabkit.checkpoint import read_config
    from collabkit.data.movielens import load_movielens, resolve_name
    from collabkit.data.readers import read_ratings

    try:
        if ratings is not None:
            # only which (user, item) pairs exist matters here, so repeated rows are fine
            return read_ratings(ratings, user_col, item_col, rating_col or None, duplicates="last")
        recorded = read_config(model_dir).get("train", {}).get("dataset")
        name = dataset or recorded
        if name is not None:
            try:
                resolve_name(name)
            except ValueError:
                if dataset is not None:
                    raise
                name = None
        if name is not None:
            return load_movielens(name, data_dir=data_dir, progress=False)
    except (ValueError, FileNotFoundError, OSError) as e:
        fail(str(e))
    if needed:
        fail(
            f"cannot tell what users have already rated: the model was trained on {recorded or 'unrecorded data'!r}, "
            "which is not a MovieLens set. Pass --ratings FILE (the training ratings) or --dataset, or --include-seen"
        )
    return None


def _genre_items(
    genre: str | None, model: Any, items: pd.DataFrame | None, data: Ratings | None
) -> list | None:
    """Ids of the model's items whose genres ("A|B") include ``genre``."""
    if genre is None:
        return None
    table = (
        items
        if items is not None and "genres" in items.columns
        else (data.items if data is not None else None)
    )
    if table is None or "genres" not in table.columns:
        fail("--genre needs item metadata with a genres column")
    tokens = table["genres"].astype(str).str.split("|").explode()
    ids = tokens.index[(tokens == genre).to_numpy()].unique()
    ids = [i for i in ids if i in model.items]
    if not ids:
        fail(
            f"no item the model knows has genre {genre!r}; genres: {', '.join(sorted(tokens.unique()))}"
        )
    return ids


def _ask(prompt: str, lo: float, hi: float, to_stderr: bool) -> float | None | str:
    """One question: a rating within the scale, None for a skip, 'quit' for q or end of input."""
    while True:
        try:
            reply = (
                typer.prompt(prompt, default="", show_default=False, err=to_stderr).strip().lower()
            )
        except typer.Abort:
            return "quit"
        if reply == "":
            return None
        if reply in ("q", "quit"):
            return "quit"
        try:
            value = float(reply)
        except ValueError:
            value = None
        if value is not None and lo <= value <= hi:
            return value
        typer.echo(
            f"please type a rating from {lo:g} to {hi:g}, Enter to skip, or q to finish",
            err=to_stderr,
        )


def _titles(items: pd.DataFrame | None) -> dict:
    if items is None or "title" not in items.columns:
        return {}
    return dict(zip(items.index, items["title"]))


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _table(title: str, recs: pd.DataFrame) -> Table:
    table = Table(title=title)
    cols = [c for c in ("rank", "item", "title", "score", "because") if c in recs.columns]
    for c in cols:
        table.add_column(c, justify="right" if c in ("rank", "score") else "left")
    for row in recs[cols].itertuples(index=False):
        table.add_row(*(f"{v:.2f}" if c == "score" else str(v) for c, v in zip(cols, row)))
    return table
