"""Save and load models safely: weights in safetensors, config + vocabularies in JSON (no pickle).

A model folder is written whole into a temporary sibling, then swapped in with one atomic rename
(an atomic exchange when the folder already exists), so after a crash at any point the folder holds
either the complete old model or the complete new one. config.json lists the size and sha256 of
every other file (the manifest); loading refuses files that do not match it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from collabkit.data.vocab import Vocab
from collabkit.files import check_regular, fsync_dir, fsync_file, read_limited
from collabkit.models.base import CollabModel, get_model_class

WEIGHTS, CONFIG, ITEMS = "model.safetensors", "config.json", "items.json"
FORMAT_VERSION = 2  # 2: config.json carries a manifest ("files": name -> size, sha256)
MAX_JSON_BYTES = 256 * 2**20  # config.json / items.json (vocabularies and titles of millions of ids fit)
MAX_MODEL_BYTES = int(os.environ.get("COLLABKIT_MAX_MODEL_BYTES", str(8 * 2**30)))  # weights built at load


def save_model(
    model: CollabModel, folder: str | Path, items: pd.DataFrame | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``folder``/model.safetensors, config.json and (if given) items.json, as one unit.

    An existing ``folder`` must be empty or a collabkit model; anything else is refused untouched.
    """
    folder = Path(folder)
    _check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-{os.getpid()}-"))
    try:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
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
        for name in [*names, CONFIG]:
            fsync_file(tmp / name)
        fsync_dir(tmp)
        _swap_in(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


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
        raise ValueError(f"{folder / CONFIG}: malformed model config ({type(e).__name__}: {e})") from None
    _check_size(folder, cls, args)
    model = cls(*args)
    model.meta = cfg.get("meta", {})
    try:
        model.load_state_dict(load_bytes(blob))
    except (SafetensorError, RuntimeError, OSError) as e:
        problem = " ".join(line.strip() for line in str(e).splitlines())[:300] or type(e).__name__
        raise ValueError(f"{weights}: the weights do not fit the model in {CONFIG}: {problem}") from None
    model.eval()
    return model


def load_items(folder: str | Path) -> pd.DataFrame | None:
    """The item metadata saved beside a model (titles, genres...), indexed by item id."""
    folder = Path(folder)
    path = folder / ITEMS
    cfg = read_config(folder) if (folder / CONFIG).exists() else {}
    if cfg.get("format", 1) >= 2 and ITEMS not in cfg.get("files", {}):
        return None  # the model was saved without items; a stray items.json is not its own
    if not path.exists():
        return None
    table = _parse_json(path, _read_checked(folder, cfg, ITEMS))
    try:
        return pd.DataFrame(table["columns"], index=pd.Index(table["ids"], name="item"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: malformed item table ({e})") from None


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a model folder, with its format version checked."""
    folder = Path(folder)
    path = folder / CONFIG
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{folder}: not a collabkit model folder (no {CONFIG})")
    cfg = _read_json(path)
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ValueError(f"{path}: not a collabkit model config (no 'kind')")
    version = cfg.get("format")
    if version not in (1, FORMAT_VERSION):
        raise ValueError(
            f"{path}: model format {version} is not supported (this collabkit reads formats 1..{FORMAT_VERSION}); "
            "re-save the model with this version"
        )
    return cfg


def _read_json(path: Path) -> Any:
    return _parse_json(path, read_limited(path, MAX_JSON_BYTES))


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None


def _read_checked(folder: Path, cfg: dict[str, Any], name: str) -> bytes:
    """The bytes of ``name``, refused unless they match the manifest's size and sha256."""
    path = folder / name
    check_regular(path)
    if cfg.get("format") == 1:  # written before manifests existed: nothing to compare with
        return read_limited(path, MAX_MODEL_BYTES if name == WEIGHTS else MAX_JSON_BYTES)
    expected = cfg.get("files", {}).get(name)
    size = expected.get("size") if isinstance(expected, dict) else None
    if size is None:
        raise ValueError(f"{path}: not listed in the manifest of {folder / CONFIG}")
    try:
        data = read_limited(path, int(size))
    except ValueError:
        data = b""  # larger than the manifest says
    if len(data) != size or hashlib.sha256(data).hexdigest() != expected.get("sha256"):
        raise ValueError(
            f"{path}: does not match the manifest in {CONFIG} (size or sha256 differ): the files do not belong together"
        )
    return data


def _check_size(folder: Path, cls: type[CollabModel], args: tuple) -> None:
    """Refuse a model whose tensors would exceed MAX_MODEL_BYTES, before allocating them."""
    try:
        with torch.device("meta"):
            shell = cls(*args)
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        return  # a kind that cannot be built on the meta device: its weights file bounds it
    tensors = [*shell.parameters(), *shell.buffers()]
    n_bytes = sum(t.numel() * t.element_size() for t in tensors)
    if n_bytes > MAX_MODEL_BYTES:
        raise ValueError(
            f"{folder / CONFIG}: the model it describes is too large ({n_bytes / 2**30:.1f} GiB of weights; "
            f"limit {MAX_MODEL_BYTES / 2**30:.1f} GiB, set COLLABKIT_MAX_MODEL_BYTES to raise it)"
        )


def _fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _is_model_folder(folder: Path) -> bool:
    try:
        cfg = json.loads(read_limited(folder / CONFIG, MAX_JSON_BYTES))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "format" in cfg and "kind" in cfg and "users" in cfg


def check_out(folder: str | Path) -> None:
    """Raise ValueError now if ``save_model`` could not write ``folder`` (call it before training)."""
    folder = Path(folder)
    _check_replaceable(folder)
    parent = next((p for p in [folder.parent, *folder.parent.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{folder}: cannot write there ({parent} is not writable)")


def _check_replaceable(folder: Path) -> None:
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a collabkit model folder; refusing to overwrite it")
    if any(folder.iterdir()) and not _is_model_folder(folder):
        raise ValueError(
            f"{folder}: not a collabkit model folder (no collabkit {CONFIG}) and not empty; "
            "refusing to overwrite it: choose another --out"
        )


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


def _remove_leftovers(folder: Path) -> None:
    """Delete temporaries of earlier saves to ``folder`` whose writer process is gone."""
    for path in folder.parent.glob(f".{folder.name}.tmp-*-*"):
        pid = path.name[len(folder.name) + 6 :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    for path in folder.parent.glob(f".{folder.name}.old-*"):
        if folder.exists() and path.name.split("-")[-1].isdigit() and not _alive(int(path.name.split("-")[-1])):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _plain(v: Any) -> Any:
    """numpy/pandas scalars -> JSON-friendly Python values (NA -> None)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v
