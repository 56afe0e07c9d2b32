"""`collabkit update`: learn from new ratings without a full retrain (``CollabModel.update``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from collabkit.cli.common import Json, ModelDir, app, consoles, fail, metrics_table, print_json
from collabkit.cli.source import SOURCE_OPTIONS
from collabkit.files import same_file

#: how --ratings is read: train's options of the same names
UserCol, ItemCol, RatingCol, TimestampCol, Duplicates, Names = (
    SOURCE_OPTIONS[k] for k in ("user_col", "item_col", "rating_col", "timestamp_col", "duplicates", "names")
)


@app.command("update")
def update_cmd(
    model_dir: ModelDir,
    ratings: Annotated[Path, typer.Option("--ratings", help="The new ratings: CSV/TSV/Parquet, read like train's --ratings.")],
    out: Annotated[Path, typer.Option(help="Folder for the updated model (the parent is left as it is).")],
    user_col: UserCol = None,
    item_col: ItemCol = None,
    rating_col: RatingCol = None,
    timestamp_col: TimestampCol = None,
    duplicates: Duplicates = None,
    names: Names = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the mix (default 1; 0: fold-in only).")] = None,
    replay: Annotated[float | None, typer.Option(help="Old ratings replayed per new one (default 1).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: a fifth of the model's).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Json = False,
) -> None:
    """Warm-start MODEL_DIR on new ratings: new users and items are added (placed by fold-in), then
    a few epochs train on the new ratings mixed with a replay sample of the ratings the model was
    trained on (read again from its folder's record). The updated model records its lineage: the
    parent folder and weights, and the data added. Nothing is scored (there is no held-out part)."""
    from collabkit.checkpoint import check_out, read_config, save_model
    from collabkit.cli.recommend import load_model_dir
    from collabkit.data.source import DataSource
    from collabkit.models import incremental
    from collabkit.models.base import UPDATE, require

    out_console, log = consoles(as_json)
    if same_file(out, model_dir):
        fail(f"--out {out} is the model being updated; the parent is left as it is: choose another --out")
    model, items = load_model_dir(model_dir)
    recipe = {k: v for k, v in (("epochs", epochs), ("replay", replay), ("lr_max", lr)) if v is not None}
    try:
        require(model, UPDATE)
        check_out(out)
        source = DataSource(ratings=ratings, user_col=user_col, item_col=item_col, rating_col=rating_col,
                            timestamp_col=timestamp_col, duplicates=duplicates, names=names)  # fmt: skip
        new = source.load()
        old = incremental.recorded_ratings(model)
        log.print(f"[bold]update[/bold] {model.kind} with {len(new)} new ratings, replaying from {len(old)}")
        updated = model.update(new, old, console=log, progress=progress, **recipe)
    except (ValueError, FileNotFoundError, OSError) as e:
        fail(str(e))
    step = updated.meta["lineage"][-1]
    parent = read_config(model_dir)
    step["parent"].update({"path": str(model_dir.resolve()), "weights_sha256": parent.get("files", {}).get("model.safetensors", {}).get("sha256")})
    try:
        save_model(updated, out, items=items)
    except (OSError, ValueError) as e:
        fail(str(e))
    result: dict[str, Any] = {
        "parent": str(model_dir), "out": str(out), "ratings": step["added"]["ratings"],
        "new_users": step["added"]["new_users"], "new_items": step["added"]["new_items"],
        "replaced": step["added"]["replaced"], "replay": step["mix"]["replay"], "epochs": step["epochs"],
        "lr_max": step["lr_max"], "users": len(updated.users), "items": len(updated.items), "seconds": step["seconds"],
    }  # fmt: skip
    if as_json:
        print_json(result)
    else:
        out_console.print(metrics_table(f"{model_dir} updated -> {out}", result))
