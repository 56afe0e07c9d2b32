"""Save and load models safely: weights in safetensors, config + vocabularies in JSON (no pickle)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from safetensors.torch import load_file, save_file

from collabkit.data.vocab import Vocab
from collabkit.models.base import CollabModel, get_model_class

WEIGHTS, CONFIG, ITEMS = "model.safetensors", "config.json", "items.json"
FORMAT_VERSION = 1


def save_model(
    model: CollabModel, folder: str | Path, items: pd.DataFrame | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``folder``/model.safetensors, config.json and (if given) items.json metadata."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    _atomic(folder / WEIGHTS, lambda p: save_file(state, str(p)))
    config = {
        "format": FORMAT_VERSION,
        "kind": model.kind,
        "config": model.config.to_json(),
        "meta": model.meta,
        "users": model.users.to_json(),
        "items": model.items.to_json(),
        **(extra or {}),
    }
    _atomic(folder / CONFIG, lambda p: p.write_text(json.dumps(config, indent=1)))
    if items is not None:
        known = items[items.index.isin(model.items.ids)]
        table = {"ids": [_plain(i) for i in known.index], "columns": {c: [_plain(v) for v in known[c]] for c in known.columns}}
        _atomic(folder / ITEMS, lambda p: p.write_text(json.dumps(table)))
    return folder


def load_model(folder: str | Path) -> CollabModel:
    """Rebuild a model from a folder written by ``save_model``; never executes stored code."""
    folder = Path(folder)
    if not (folder / CONFIG).exists():
        raise FileNotFoundError(f"{folder}: not a collabkit model folder (no {CONFIG})")
    cfg = json.loads((folder / CONFIG).read_text())
    cls = get_model_class(cfg["kind"])
    model = cls(cls.Config.from_json(cfg["config"]), Vocab.from_json(cfg["users"]), Vocab.from_json(cfg["items"]))
    model.meta = cfg.get("meta", {})
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    model.eval()
    return model


def load_items(folder: str | Path) -> pd.DataFrame | None:
    """The item metadata saved beside a model (titles, genres...), indexed by item id."""
    path = Path(folder) / ITEMS
    if not path.exists():
        return None
    table = json.loads(path.read_text())
    return pd.DataFrame(table["columns"], index=pd.Index(table["ids"], name="item"))


def read_config(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / CONFIG).read_text())


def _plain(v: Any) -> Any:
    """numpy/pandas scalars -> JSON-friendly Python values (NA -> None)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _atomic(path: Path, write) -> None:
    """Write to a temp file beside ``path`` then rename, so a crash never leaves half a model."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
