"""`collabkit recommend`, `recommend-all` and `onboard`: top-N lists, in bulk, and for newcomers.

A saved model does not hold its ratings, so these commands read them again to know what each user
has already rated (never recommended back) and what explains a recommendation: the data recorded
in the model folder at `train` (all of it, test part included: what a user rated anywhere is not
recommended back), or the data options given here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from collabkit.cli.common import Device, Json, ModelDir, app, consoles, fail, on_device, print_json
from collabkit.cli.source import DataSource, model_data, recorded_data, with_source
from collabkit.files import atomic_path, claim_file, file_head, same_file, writing

if TYPE_CHECKING:
    import pandas as pd

    from collabkit.data.interactions import Ratings

TopN = Annotated[int, typer.Option("-n", "--n", min=1, help="Length of each list.")]
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
@with_source
def recommend_cmd(
    model_dir: ModelDir,
    source: DataSource,
    user: Annotated[str, typer.Argument(help="User id as in the training data.")],
    n: TopN = 10,
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
    from collabkit.models.base import FACTORS, supports
    from collabkit.recommend.recommend import recommend

    model, items = load_model_dir(model_dir)
    data = _training_ratings(model_dir, source, needed=not include_seen)
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
    reasons_from = model.meta.get("representation") or None  # an ensemble's reasons: one member's factors
    if as_json:
        print_json({"user": user, "n": n, "recommendations": _records(recs), "reasons_from": reasons_from})
        return
    seen = "" if include_seen else " (items you rated are left out)"
    consoles(False)[0].print(_table(f"Top {n} for user {user}{seen}", recs))
    if reasons_from and "because" in recs.columns:
        by = "nearness in the factors" if supports(model, FACTORS) else "the item biases"
        consoles(False)[1].print(f"reasons: {by} of the ensemble's {reasons_from}")


@app.command("recommend-all")
@with_source
def recommend_all_cmd(
    model_dir: ModelDir,
    source: DataSource,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Where to write: .parquet or .csv. An existing file is replaced only if it is an earlier "
            "recommend-all output (columns user, rank, item, score first), never the model's data.",
        ),
    ],
    n: TopN = 10,
    include_seen: IncludeSeen = False,
    genre: Genre = None,
    explain: Annotated[bool, typer.Option(help="Add the 'because' column.")] = True,
    device: Device = "cpu",
    as_json: Json = False,
) -> None:
    """Top-N for every user the model knows, written to one file (columns user, rank, item, score, ...)."""
    from collabkit.recommend.recommend import recommend

    if out.suffix not in (".parquet", ".csv"):
        fail(f"--out must end in .parquet or .csv, not {out.name!r}")
    if out.is_dir():
        fail(f"--out {out} is a folder; give a file name ending in .parquet or .csv")
    if any(same_file(out, data) for data in _data_files(model_dir, source)):
        fail(f"{out}: is a data file of the model; refusing to replace it: choose another --out")
    try:
        claim_file(out, "recommend-all output", "--out", _is_recs_file)  # before the work
    except (OSError, ValueError) as e:
        fail(str(e))
    out_console, _ = consoles(as_json)
    placement = on_device(device)
    model, items = load_model_dir(model_dir)
    data = _training_ratings(model_dir, source, needed=not include_seen)
    t0 = time.perf_counter()
    with placement:
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
    try:
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:  # a killed run leaves the old file, never a shorter one
            if out.suffix == ".parquet":
                recs.to_parquet(tmp, index=False)
            else:
                recs.to_csv(tmp, index=False)
    except OSError as e:  # no space, a file-size limit...: one line naming the file
        fail(str(e))
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
@with_source
def onboard_cmd(
    model_dir: ModelDir,
    source: DataSource,
    questions: Annotated[int, typer.Option(help="Stop after this many answers.")] = 10,
    n: TopN = 10,
    as_json: Json = False,
) -> None:
    """Rate a few items the model picks (Enter = haven't seen it, q = done), then get recommendations.

    The questions are chosen to place you quickly (popular items people disagree on, spread across
    the taste space; see collabkit.recommend.onboard); your answers are folded into the model in
    milliseconds, without retraining. With --json the questions go to stderr and the answers and
    recommendations are printed as one JSON object.
    """
    from collabkit.recommend.onboard import Questionnaire
    from collabkit.recommend.recommend import recommend_new_users

    _, log = consoles(as_json)
    model, items = load_model_dir(model_dir)
    data = _training_ratings(model_dir, source, needed=False)
    if data is None:
        log.print(
            "[yellow]no training ratings found: questions ignore how popular items are[/yellow]"
        )
    try:
        session = Questionnaire(model, data)
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
    recs = recommend_new_users(model, session.answers, n, prior=session.prior, items=items, user="you")
    if as_json:
        answers = session.answers
        if names:
            answers = answers.assign(title=answers["item"].map(names))
        print_json(
            {"answers": _records(answers), "recommendations": _records(recs.drop(columns="user"))}
        )
        return
    consoles(False)[0].print(_table(f"Top {n} from your {len(session.items)} answers", recs))


# --- helpers ---------------------------------------------------------------------------------------
def load_model_dir(model_dir: Path) -> tuple[Any, pd.DataFrame | None]:
    """The model and the item metadata saved beside it, or a clear error (never a traceback)."""
    from collabkit.checkpoint import load_items, load_model

    try:
        return load_model(model_dir), load_items(model_dir)
    except (FileNotFoundError, ValueError, KeyError, OSError, RuntimeError) as e:
        fail(f"cannot load the model in {model_dir}: {e}")


def _data_files(model_dir: Path, source: DataSource) -> list[Path]:
    """The files the model was trained on (its record, its updates') and those given here."""
    from collabkit.checkpoint import read_config

    try:
        config = read_config(model_dir)
    except (OSError, ValueError):
        return []  # loading the model says what is wrong
    records = [recorded_data(config)]
    records += [step.get("added", {}).get("origin") or {} for step in config.get("meta", {}).get("lineage", [])]
    named = [source.ratings, source.items, *(r.get(k) for r in records for k in ("ratings", "items"))]
    return [Path(p) for p in named if p]


def _is_recs_file(path: Path) -> bool:
    """Whether ``path`` is an earlier recommend-all output: its columns start user, rank, item, score."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    else:
        names = file_head(path).split(b"\n", 1)[0].rstrip(b"\r").decode(errors="replace").split(",")
    return names[:4] == ["user", "rank", "item", "score"]


def _training_ratings(model_dir: Path, source: DataSource, needed: bool) -> Ratings | None:
    """What users have rated: the model's recorded data (or the options given), all of it.

    Only which (user, item) pairs exist matters here, so repeated rows are fine.
    """
    try:
        return model_data(model_dir, source)[1]
    except (ValueError, FileNotFoundError, OSError) as e:
        if source.items is not None and str(e).startswith(str(source.items)):
            fail(str(e))  # the --items file given is at fault: --include-seen would not help
        if needed:
            fail(f"cannot tell what users have already rated: {e} (or pass --include-seen)")
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
    ids = list(ids[model.items.lookup(ids, strict=False) >= 0])  # one vectorised lookup
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
    cols = [c for c in ("rank", "item", "title", "score", "p_love", "because") if c in recs.columns]
    for c in cols:
        table.add_column(c, justify="right" if c in ("rank", "score", "p_love") else "left")
    for row in recs[cols].itertuples(index=False):
        shown = {"score": "{:.2f}", "p_love": "{:.0%}"}  # p_love: models with a distribution
        table.add_row(*(shown.get(c, "{}").format(v) for c, v in zip(cols, row)))
    return table
