"""The serving engine's large arrays, built once per model and memory-mapped by every process.

For a model folder ``M`` the cache is the folder ``.M.engine`` beside it; each entry is a folder
named by a key: a sha256 over the model as loaded (kind, config, meta, vocabularies, every weight;
so also the version grown by new items), the list length and FORMAT (raised when what the engine
precomputes changes). An entry holds one ``.npy`` file per array and ``meta.json`` (the key, and
each array's dtype, shape and sha256).
It is written into a temporary folder and renamed into place whole, so a reader finds either no
entry or a complete one; arrays are opened read-only with ``np.load(mmap_mode="r",
allow_pickle=False)`` (never pickle), so N workers share one copy in the page cache.

An entry is used only when its meta names this key and every array has its recorded dtype, shape
and sha256; anything else (missing, truncated, corrupted, made for other model files) is rebuilt.
Builders take turns through a lock file in the cache folder: the second process to get there
waits, then maps what the first wrote instead of building again. A cache folder that cannot be
written is skipped (the process keeps its own arrays); it never stops a version from serving.
Entries made for other contents of the same model folder are deleted when a new one is written;
the whole folder can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from collabkit.files import FileLock, fsync_dir, fsync_file, process_alive, read_limited
from collabkit.models.base import CollabModel

log = logging.getLogger("collabkit.serve")
FORMAT = 2  # what an entry holds and how it was computed; raising it makes every older entry stale
META = "meta.json"
LOCK = "lock"  # the builders' lock file, in the cache folder (never deleted: flock needs one file)
Arrays = dict[str, np.ndarray]


def cache_folder(model_folder: str | Path) -> Path:
    """Where the engine cache of ``model_folder`` lives: ``.NAME.engine`` beside it."""
    folder = Path(model_folder).resolve()
    return folder.parent / f".{folder.name}.engine"


def model_digest(model: CollabModel) -> str:
    """sha256 over everything of ``model`` that scores: kind, config, meta, both vocabularies and
    every tensor of its state (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    about = [model.kind, model.config.to_json(), model.meta, model.users.to_json(), model.items.to_json()]
    digest.update(json.dumps(about, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().data if flat.numel() else b"")
    return digest.hexdigest()


def cache_key(model: CollabModel, top_k: int) -> dict[str, Any]:
    """What an entry's arrays depend on (besides the ratings, whose use is in ``seen``)."""
    return {"format": FORMAT, "model": model_digest(model), "top_k": top_k}


def shared_arrays(folder: Path | None, key: dict[str, Any], build: Callable[[], Arrays]) -> Arrays:
    """``build()``'s arrays for ``key``: mapped read-only from ``folder`` when an entry there holds
    them whole, else built (once: another process waits for the lock, then maps them), written
    there and mapped. ``folder`` None: built, not cached. A cache that cannot be written is
    logged and skipped; this never raises for the cache's sake."""
    if folder is None:
        return build()
    entry = folder / _name(key)
    found = open_entry(entry, key, quiet=True)  # what is wrong with it is said under the lock
    if found is not None:
        return found
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / LOCK)
    except OSError as e:
        log.warning("engine cache %s cannot be used (%s); building this process's own arrays", folder, e)
        return build()
    try:
        with lock:
            found = open_entry(entry, key)  # another process built it while this one waited
            if found is not None:
                return found
            arrays = build()
            try:
                _write(entry, key, arrays)
            except Exception as e:  # noqa: BLE001 -- no space, a read-only folder...: serve all the same
                log.warning("engine cache %s not written (%s); this process keeps its own arrays", entry, e)
                return arrays
            _prune(folder, entry.name)
            return open_entry(entry, key) or arrays  # mapped: the builder shares the page cache too
    finally:
        lock.close()


def open_entry(entry: Path, key: dict[str, Any], quiet: bool = False) -> Arrays | None:
    """The arrays of ``entry``, memory-mapped read-only, or None (logged when the entry exists,
    unless ``quiet``) unless its meta names ``key`` and every array has its recorded dtype, shape
    and sha256."""
    if not os.path.lexists(entry):
        return None
    try:
        meta = json.loads(read_limited(entry / META, 1 << 20))
        if meta.get("format") != FORMAT or meta.get("key") != key:
            raise ValueError("made for another model or format")
        return {name: _mapped(entry / f"{name}.npy", want) for name, want in meta["arrays"].items()}
    except Exception as e:  # noqa: BLE001 -- whatever is wrong with an entry (an empty file: EOFError), it is rebuilt
        if not quiet:
            log.warning("engine cache %s unusable (%s); rebuilding it", entry, str(e)[:200])
        return None


def _mapped(path: Path, want: dict[str, Any]) -> np.ndarray:
    """One array, mapped read-only; ValueError unless it is what the meta recorded."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.dtype.str != want["dtype"] or list(array.shape) != want["shape"] or _sha256(array) != want["sha256"]:
        raise ValueError(f"{path.name}: not the array its meta recorded")
    return np.asarray(array)  # a plain read-only view: slices are arrays, not memmaps


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data).hexdigest()


def _name(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _write(entry: Path, key: dict[str, Any], arrays: Arrays) -> None:
    """``arrays`` as ``entry``: written into a temporary folder, flushed, renamed into place."""
    _remove_leftovers(entry.parent)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.tmp-{os.getpid()}-"))
    try:
        meta: dict[str, Any] = {"format": FORMAT, "key": key, "arrays": {}}
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
            meta["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape), "sha256": _sha256(array)}
            fsync_file(tmp / f"{name}.npy")
        (tmp / META).write_text(json.dumps(meta, indent=1))
        fsync_file(tmp / META)
        fsync_dir(tmp)
        if os.path.lexists(entry):  # unusable (the lock holder looked): moved aside, then deleted
            aside = entry.parent / f".{entry.name}.tmp-{os.getpid()}-old"
            os.rename(entry, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(tmp, entry)
        fsync_dir(entry.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _prune(folder: Path, keep: str) -> None:
    """Delete the entries other than ``keep``: made for other contents of the model folder (a
    process still mapping one keeps its pages until it lets go)."""
    for path in folder.iterdir():
        if path.is_dir() and not path.name.startswith(".") and path.name != keep:
            shutil.rmtree(path, ignore_errors=True)


def _remove_leftovers(folder: Path) -> None:
    """Delete temporary folders of builders whose process is gone (killed mid-write)."""
    for path in folder.glob(".*.tmp-*"):
        pid = path.name.split(".tmp-", 1)[1].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
