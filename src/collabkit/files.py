"""Whole-or-nothing file writes, bounded reads, and the edge rules every output follows.

A write goes to a temporary file beside the target, is flushed to disk, then renamed over it:
a crash (even SIGKILL) leaves either the old file or the new one, never a prefix of the new one.

Outputs are checked before the work (``check_can_write``), and an OS error while writing (no
space, a file-size limit, a read-only file system) becomes an ``OutputError``: one line naming the
path. A folder collabkit writes carries a marker saying what it holds (``MARKER``: a model, a
report); ``claim_folder`` lets an output replace only a folder written as the same kind of output
with nothing else in it, so a user's files are never deleted; ``claim_file`` likewise lets a file
output replace only an earlier output of its kind. Values quoted in error messages are
cut to a bounded length (``clip_text``). Processes take turns through a lock file (``FileLock``).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; a FileLock there does not exclude anyone
    fcntl = None

#: in a folder collabkit wrote: {"holds": "model"} (or "report"), what the folder is
MARKER = ".collabkit"
#: what an OS error while writing means, said plainly (others: the system's own words)
WRITE_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (over the file-size limit, see ulimit -f)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class OutputError(OSError):
    """An output that could not be written; the message names the path and the reason, on one line."""


def clip_text(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out (messages stay bounded)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def write_failure(error: BaseException, path: str | Path) -> OutputError:
    """``error`` (an OSError, or a library's error quoting "os error N") as one line naming ``path``."""
    code = getattr(error, "errno", None)
    if code is None:
        found = re.search(r"os error (\d+)", str(error))
        code = int(found.group(1)) if found else None
    reason = WRITE_REASONS.get(code) or (os.strerror(code) if code else clip_text(str(error)))
    out = OutputError(f"cannot write {path}: {reason}")
    out.errno = code
    return out


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Raise an OS error met inside the block as an OutputError naming ``path``."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        raise write_failure(e, path) from None


def check_can_write(path: str | Path) -> None:
    """Raise OutputError now, before any work, if ``path`` (a file, or a folder to write into)
    could not be written: a real file is created and removed where the writes will go."""
    path = Path(path)
    target = path if path.is_dir() else path.parent
    where = next((p for p in [target, *target.parents] if os.path.lexists(p)), Path("."))
    if not where.is_dir():
        raise OutputError(f"cannot write {path}: {where} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".collabkit-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise write_failure(e, path) from None


# --- folders collabkit owns -------------------------------------------------------------------------
def folder_holds(folder: str | Path) -> str | None:
    """What collabkit's marker in ``folder`` says it holds ("model", "report"); None without one."""
    try:
        holds = json.loads(read_limited(Path(folder) / MARKER, 4096)).get("holds")
    except (OSError, ValueError, AttributeError):
        return None
    return holds if isinstance(holds, str) else None


def mark_folder(folder: str | Path, holds: str) -> None:
    """Write the marker saying collabkit wrote ``folder`` as a ``holds`` output."""
    (Path(folder) / MARKER).write_text(json.dumps({"holds": holds, "written_by": "collabkit"}))


def claim_folder(
    folder: str | Path, holds: str, names: Collection[str], unmarked: Callable[[Path], bool] | None = None
) -> None:
    """Raise ValueError unless ``folder`` may be written as a ``holds`` output: it does not exist,
    is empty, or collabkit wrote it as a ``holds`` output and it holds nothing but such an output's
    files (``names``) and the marker. ``unmarked(folder)``: True for a ``holds`` folder written
    before markers existed. Nothing is touched; the message says what was found."""
    folder = Path(folder)
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder; refusing to replace it: choose another --out")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    found = folder_holds(folder) or (holds if unmarked is not None and unmarked(folder) else None)
    if found is None:
        raise ValueError(
            f"{folder}: not empty and not written by collabkit (it holds {_listing(entries)}); "
            "refusing to replace it: choose another --out"
        )
    if found != holds:
        raise ValueError(
            f"{folder}: holds a collabkit {clip_text(found, 40)}, not a {holds}; refusing to replace it: "
            "choose another --out"
        )
    foreign = [e for e in entries if e != MARKER and (e not in names or not (folder / e).is_file())]
    if foreign:
        raise ValueError(
            f"{folder}: a collabkit {holds}, but it also holds {_listing(foreign)}, which collabkit did "
            "not write; refusing to delete them: move them or choose another --out"
        )


def claim_file(path: str | Path, what: str, flag: str, ours: Callable[[Path], bool]) -> None:
    """Raise ValueError unless ``path`` may be written as a ``what`` output (named by ``flag``): it
    does not exist, or it is a regular file (no link) that ``ours`` recognises as an earlier
    ``what``, which collabkit wrote. Anything else is the user's and is never replaced. Then, as
    ``check_can_write``, an OSError when nothing can be written there."""
    path = Path(path)
    if os.path.lexists(path):
        _claim_existing(path, what, flag, ours)
    check_can_write(path)


def _claim_existing(path: Path, what: str, flag: str, ours: Callable[[Path], bool]) -> None:
    try:
        mine = not path.is_symlink() and path.is_file() and ours(path)
    except (OSError, ValueError):
        mine = False
    if not mine:
        raise ValueError(
            f"{path}: exists and is not a {what} collabkit wrote; refusing to replace it: choose another {flag}"
        )


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` are one file (links followed); False when either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def file_head(path: str | Path, size: int = 4096) -> bytes:
    """The first ``size`` bytes of a regular file (what an output is recognised by)."""
    check_regular(path)
    with open(path, "rb") as f:
        return f.read(size)


def matplotlib_png(path: str | Path) -> bool:
    """Whether ``path`` is a PNG matplotlib drew (its Software text chunk): an earlier plot or map."""
    return b"tEXtSoftware\x00Matplotlib" in file_head(path, 256)


def _listing(names: list[str], shown: int = 4) -> str:
    text = ", ".join(clip_text(n, 60) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched; an OS error
    (no space, a file-size limit...) is raised as an OutputError naming ``path``.
    """
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
        os.close(fd)
        try:
            yield Path(tmp)
            fsync_file(tmp)
            os.replace(tmp, path)
            fsync_dir(path.parent)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    atomic_write_bytes(path, text.encode(encoding))


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_limited(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    FIFOs, devices (e.g. a link to /dev/zero) and directories are refused before reading, so a
    read can neither hang nor grow without bound.
    """
    path = Path(path)
    check_regular(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between the check and the open
            raise OSError(f"{path}: not a regular file")
        size = os.fstat(fd).st_size  # no buffer of ``limit`` bytes for a small file
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(min(limit, size) + 1)
            while len(data) <= limit and (more := fh.read(min(1 << 20, limit + 1 - len(data)))):
                data += more  # the file grew since fstat
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path}: larger than the {limit:,} bytes allowed for this file")
    return data


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (one owned by another user counts): a crashed writer's
    leftovers and a dead job's claim are recognised by it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_regular(path: str | Path) -> None:
    """Raise FileNotFoundError/ValueError unless ``path`` (links followed) is a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a regular file (a FIFO, socket or device is never read)")


def file_sha256(path: Path) -> str:
    """The file's sha256 (remembered per path, size and modification time: a fit records it)."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing), held inside ``with``: the processes
    sharing the file take turns, and the next one wakes as soon as the lock is free (a crashed
    holder's lock is freed with its process). Where flock does not exist it excludes no one."""

    def __init__(self, path: str | Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        if fcntl is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if fcntl is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)
