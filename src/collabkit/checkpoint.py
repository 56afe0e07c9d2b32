"""Save and load models safely: weights in safetensors, config + vocabularies in JSON (no pickle).

A model folder is written whole into a temporary sibling, then swapped in with one atomic rename
(an atomic exchange when the folder already exists), so after a crash at any point the folder holds
either the complete old model or the complete new one. Where the file system cannot exchange two
folders, the complete new one is moved in right after the old one is moved aside; a crash between
those two renames leaves the old one aside, and every load (``read_config``) moves it back.

config.json carries the format (FORMAT_VERSION exactly) and lists the size and sha256 of every
other file (the manifest); loading refuses files that do not match it, and checks the config
against its kind's schema (``models.config``) and the memory limit before building anything.
The folder's marker (``files.MARKER``) says it holds a model: ``save_model`` replaces only such a
folder, and only when nothing else is in it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from collabkit.data.vocab import Vocab
from collabkit.files import (
    MARKER,
    check_can_write,
    check_regular,
    claim_folder,
    clip_text,
    fsync_dir,
    fsync_file,
    mark_folder,
    process_alive,
    read_limited,
    write_failure,
    writing,
)
from collabkit.models.base import CollabModel, get_model_class
from collabkit.models.config import estimate, max_model_bytes

WEIGHTS, CONFIG, ITEMS = "model.safetensors", "config.json", "items.json"
MODEL = "model"  # what the marker of a model folder says it holds
MODEL_FILES = (WEIGHTS, CONFIG, ITEMS)  # all a model folder may hold, beside the marker
FORMAT_VERSION = 2  # 2: config.json carries a manifest ("files": name -> size, sha256)
MAX_JSON_BYTES = 256 * 2**20  # config.json / items.json (vocabularies and titles of millions of ids fit)
#: how long a load waits for a live save that has its model folder moved aside (see _recover)
SWAP_WAIT_SECONDS = 2.0


def save_model(
    model: CollabModel, folder: str | Path, items: pd.DataFrame | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``folder``/model.safetensors, config.json and (if given) items.json, as one unit.

    An existing ``folder`` must be empty or a collabkit model folder holding nothing else
    (``files.claim_folder``); anything else is refused untouched. An OS error (no space, a file-size
    limit, a read-only file system) is an OutputError naming the folder; the old model stays.
    """
    folder = Path(folder)
    _recover(folder)
    claim_folder(folder, MODEL, MODEL_FILES, unmarked=_is_unmarked_model)
    with writing(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(folder)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-{os.getpid()}-"))
        try:
            _write(model, tmp, folder, items, extra)
            _swap_in(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write(model: CollabModel, tmp: Path, folder: Path, items: pd.DataFrame | None, extra: dict[str, Any] | None) -> None:
    """The model's files in ``tmp``, flushed to disk, the marker last."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(tmp / WEIGHTS))
    except SafetensorError as e:  # safetensors reports an OS error as its own, "(os error 28)"
        raise write_failure(e, folder) from None
    if items is not None:
        known = items[items.index.isin(model.items.ids)]
        table = {"ids": [_plain(i) for i in known.index], "columns": {c: [_plain(v) for v in known[c]] for c in known.columns}}
        (tmp / ITEMS).write_text(json.dumps(table))
    names = [WEIGHTS] + ([ITEMS] if items is not None else [])
    config = {
        "format": FORMAT_VERSION,
        "kind": model.kind,
        "config": model.config.to_json(),
        "meta": model.meta,
        "users": model.users.to_json(),
        "items": model.items.to_json(),
        **(extra or {}),
        "files": {name: _fingerprint(tmp / name) for name in names},
    }
    (tmp / CONFIG).write_text(json.dumps(config, indent=1))
    mark_folder(tmp, MODEL)
    for name in [*names, CONFIG, MARKER]:
        fsync_file(tmp / name)
    fsync_dir(tmp)


def load_model(folder: str | Path) -> CollabModel:
    """Rebuild a model from a folder written by ``save_model``; never executes stored code.

    Raises FileNotFoundError for a missing folder/file and ValueError for anything malformed:
    an unknown format, files that do not match the manifest, a model too large to build, shapes
    that do not fit the config.
    """
    folder = Path(folder)
    for attempt in range(3):  # a save swapping the folder in mid-read: read the new one whole
        cfg = read_config(folder)
        try:
            return _build(folder, cfg)
        except (ValueError, FileNotFoundError):
            if attempt == 2 or read_config(folder) == cfg:
                raise
    raise AssertionError("unreachable")


def _build(folder: Path, cfg: dict[str, Any]) -> CollabModel:
    weights = folder / WEIGHTS
    blob = _read_checked(folder, cfg, WEIGHTS)  # the very bytes that were hashed get loaded
    try:
        cls = get_model_class(cfg["kind"])
        args = (cls.Config.from_json(cfg["config"]), Vocab.from_json(cfg["users"]), Vocab.from_json(cfg["items"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{folder / CONFIG}: malformed model config ({_problem(e)})") from None
    _check_size(folder, cls, args)
    try:  # the bytes become tensors and go before the model is built: two copies at most, not three
        state = load_bytes(blob)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise ValueError(f"{weights}: the weights do not fit the model in {CONFIG}: {_problem(e)}") from None
    del blob
    try:
        model = cls(*args)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:  # e.g. a member or feature spec
        raise ValueError(f"{folder / CONFIG}: malformed model config ({_problem(e)})") from None
    model.meta = _checked_meta(folder / CONFIG, cfg.get("meta", {}))
    try:
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise ValueError(f"{weights}: the weights do not fit the model in {CONFIG}: {_problem(e)}") from None
    model.eval()
    return model


def _checked_meta(path: Path, meta: Any) -> dict[str, Any]:
    """The trained-on facts saved with a model, with the ones scoring reads checked: the rating
    scale (empty, or low <= high) and the global mean (a finite number)."""
    scale = meta.get("scale", []) if isinstance(meta, dict) else None
    mean = meta.get("global_mean", 0.0) if isinstance(meta, dict) else None
    numbers = isinstance(scale, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scale)
    if not (numbers and len(scale) in (0, 2) and scale == sorted(scale)) or isinstance(mean, bool) or not (
        isinstance(mean, (int, float)) and math.isfinite(mean)
    ):
        raise ValueError(f"{path}: malformed meta (scale [low, high] and global_mean, a number): {clip_text(json.dumps(meta), 120)}")
    return meta


def _problem(e: BaseException) -> str:
    """An exception as one bounded line."""
    text = " ".join(line.strip() for line in str(e).splitlines())
    return clip_text(f"{type(e).__name__}: {text}" if isinstance(e, (KeyError, TypeError)) else text or type(e).__name__, 300)


def load_items(folder: str | Path) -> pd.DataFrame | None:
    """The item metadata saved beside a model (titles, genres...), indexed by item id."""
    folder = Path(folder)
    path = folder / ITEMS
    cfg = read_config(folder)
    if ITEMS not in cfg["files"]:
        return None  # the model was saved without items; a stray items.json is not its own
    table = _parse_json(path, _read_checked(folder, cfg, ITEMS))
    try:
        return pd.DataFrame(table["columns"], index=pd.Index(table["ids"], name="item"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: malformed item table ({_problem(e)})") from None


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a model folder, with its format and manifest checked.

    A save killed while its folder was moved aside is finished first (``_recover``).
    """
    folder = Path(folder)
    path = folder / CONFIG
    _recover(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{folder}: not a collabkit model folder (no {CONFIG})")
    cfg = _read_json(path)
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ValueError(f"{path}: not a collabkit model config (no 'kind')")
    version = cfg.get("format")
    if type(version) is not int or version != FORMAT_VERSION:  # True == 1 in Python: not a format
        raise ValueError(
            f"{path}: model format {clip_text(json.dumps(version), 40)} is not supported (this collabkit reads "
            f"format {FORMAT_VERSION}, with a manifest of its files); re-save the model with this version"
        )
    _check_manifest(path, cfg.get("files"))
    return cfg


def _check_manifest(path: Path, files: Any) -> None:
    """The manifest is {name: {"size": bytes, "sha256": hex}} over the model's own files, weights
    included, and lists no weights larger than the memory limit."""
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise ValueError(f"{path}: malformed manifest: 'files' must map {WEIGHTS} (and {ITEMS}) to their size and sha256")
    for name, entry in files.items():
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if name not in MODEL_FILES or type(size) is not int or size < 0 or not _is_sha256(digest):
            raise ValueError(
                f"{path}: malformed manifest entry {clip_text(json.dumps(name), 60)}: "
                f"{clip_text(json.dumps(entry), 120)} (a file of the model with its size in bytes and sha256)"
            )
    limit = max_model_bytes()
    if files[WEIGHTS]["size"] > limit:
        raise ValueError(
            f"{path}: the weights are too large ({files[WEIGHTS]['size'] / 2**30:.1f} GiB by the manifest; limit "
            f"{limit / 2**30:.1f} GiB, set COLLABKIT_MAX_MODEL_BYTES to raise it)"
        )


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _read_json(path: Path) -> Any:
    return _parse_json(path, read_limited(path, MAX_JSON_BYTES))


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: invalid JSON ({clip_text(str(e), 200)})") from None


def _read_checked(folder: Path, cfg: dict[str, Any], name: str) -> bytes:
    """The bytes of ``name``, refused unless they match the manifest's size and sha256."""
    path = folder / name
    check_regular(path)
    expected = cfg["files"].get(name)
    if expected is None:
        raise ValueError(f"{path}: not listed in the manifest of {folder / CONFIG}")
    size = expected["size"]
    try:
        data = read_limited(path, size)
    except ValueError:
        data = b""  # larger than the manifest says
    if len(data) != size or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ValueError(
            f"{path}: does not match the manifest in {CONFIG} (size or sha256 differ): the files do not belong together"
        )
    return data


def _check_size(folder: Path, cls: type[CollabModel], args: tuple) -> None:
    """Refuse a model whose tensors would exceed the memory limit, before allocating them."""
    n_bytes, limit = estimate(cls, *args).weights, max_model_bytes()
    if n_bytes > limit:
        raise ValueError(
            f"{folder / CONFIG}: the model it describes is too large ({n_bytes / 2**30:.1f} GiB of weights; "
            f"limit {limit / 2**30:.1f} GiB, set COLLABKIT_MAX_MODEL_BYTES to raise it)"
        )


def _fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _is_unmarked_model(folder: Path) -> bool:
    """A model folder saved before folders carried a marker: its config.json has this format and a
    manifest (``claim_folder`` still refuses it if anything but a model's files is in it)."""
    try:
        cfg = json.loads(read_limited(folder / CONFIG, MAX_JSON_BYTES))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and type(cfg.get("format")) is int and cfg["format"] == FORMAT_VERSION and (
        isinstance(cfg.get("files"), dict) and WEIGHTS in cfg["files"]
    )


def check_out(folder: str | Path) -> None:
    """Raise now if ``save_model`` could not write ``folder``: call it before training."""
    folder = Path(folder)
    _recover(folder)
    claim_folder(folder, MODEL, MODEL_FILES, unmarked=_is_unmarked_model)
    check_can_write(folder.parent)


def _swap_in(tmp: Path, folder: Path) -> None:
    """Make ``tmp`` the new ``folder`` in one atomic step; the old folder (if any) is then deleted."""
    if not folder.exists():
        os.rename(tmp, folder)
    elif _exchange(tmp, folder):  # tmp now holds the old model
        fsync_dir(folder.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    else:  # no atomic exchange here: move the old folder aside, then the new one in
        aside = folder.parent / f".{folder.name}.old-{os.getpid()}"
        os.rename(folder, aside)
        os.rename(tmp, folder)
        shutil.rmtree(aside, ignore_errors=True)
    fsync_dir(folder.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _recover(folder: Path) -> None:
    """Finish a save killed between the fallback's two renames: ``folder`` is gone and the old model
    waits beside it as ``.NAME.old-PID``; move it back. A live writer gets SWAP_WAIT_SECONDS to
    move its new model in first."""
    if os.path.lexists(folder) or not folder.parent.is_dir():
        return
    asides = [p for p in folder.parent.glob(f".{folder.name}.old-*") if p.name.rsplit("-", 1)[-1].isdigit()]
    if not asides:
        return
    aside = max(asides, key=lambda p: p.stat().st_mtime)
    pid, deadline = int(aside.name.rsplit("-", 1)[-1]), time.monotonic() + SWAP_WAIT_SECONDS
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
        if os.path.lexists(folder):
            return
    if not process_alive(pid):
        try:
            os.rename(aside, folder)  # one atomic step; a racing loader that got there first wins
            fsync_dir(folder.parent)
        except OSError:
            pass


def _remove_leftovers(folder: Path) -> None:
    """Delete temporaries of earlier saves to ``folder`` whose writer process is gone."""
    for path in folder.parent.glob(f".{folder.name}.tmp-*-*"):
        pid = path.name[len(folder.name) + 6 :].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    for path in folder.parent.glob(f".{folder.name}.old-*"):
        if folder.exists() and path.name.split("-")[-1].isdigit() and not process_alive(int(path.name.split("-")[-1])):
            shutil.rmtree(path, ignore_errors=True)


def _plain(v: Any) -> Any:
    """numpy/pandas scalars -> JSON-friendly Python values (NA -> None)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v
