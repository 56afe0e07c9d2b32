"""MovieLens: find, download (verified, atomic, once) and load the GroupLens rating sets.

GroupLens's licence forbids redistribution, so the data is never bundled: it is read from a folder
the user names (``data_dir``), from the cache (``$COLLABKIT_DATA`` or ``~/.cache/collabkit``), or
downloaded there on first use. Every load checks the published counts, so a truncated or
different release fails loudly instead of training on the wrong data.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from collabkit.data.interactions import COLUMNS, Ratings
from collabkit.data.readers import RatingsFormatError, read_ratings

Kind = Literal["100k", "1m", "10m", "csv"]
ItemName = Literal["item", "title"]

OFFICIAL_BASE = "https://files.grouplens.org/datasets/movielens"
URL_ENV = "COLLABKIT_MOVIELENS_URL"
CHUNK = 1 << 20

# The files that make a folder "the dataset" (the first one holds the ratings).
REQUIRED: dict[Kind, tuple[str, ...]] = {
    "100k": ("u.data", "u.item", "u.user", "u.genre"),
    "1m": ("ratings.dat", "movies.dat", "users.dat"),
    "10m": ("ratings.dat", "movies.dat"),
    "csv": ("ratings.csv", "movies.csv"),
}

SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")

# ML-1M users.dat codes occupations 0..20 (its README); names as close to ML-100k's as it allows.
# fmt: off
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
# fmt: on


class DownloadError(OSError):
    """A download failed or its file is not the published one (size, checksum, zip)."""


class DatasetIntegrityError(ValueError):
    """Files on disk do not hold the published data (counts or checksums differ)."""


@dataclass(frozen=True)
class MovieLensSpec:
    """What GroupLens publishes for one MovieLens set, and what a good copy must contain."""

    name: str
    url: str
    folder: str
    n_ratings: int
    n_users: int
    n_items: int
    kind: Kind
    scale: tuple[float, float]
    size: int | None = None
    md5: str | None = None
    md5_url: str | None = None
    file_md5: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def zip_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def required(self) -> tuple[str, ...]:
        return REQUIRED[self.kind]


def _spec(row: tuple) -> MovieLensSpec:
    """A spec at the official URL; GroupLens publishes ``<zip>.md5`` next to each of these zips."""
    name, folder, n_ratings, n_users, n_items, kind, size, md5 = row
    url = f"{OFFICIAL_BASE}/{name}.zip"
    scale = (1.0, 5.0) if kind in ("100k", "1m") else (0.5, 5.0)
    return MovieLensSpec(
        name, url, folder, n_ratings, n_users, n_items, kind, scale, size, md5, url + ".md5"
    )


# Zip sizes and md5s as GroupLens serves them (the md5s are those of its published .md5 files).
# ml-latest-small may be republished, so nothing is pinned: its .md5 file is fetched instead.
# fmt: off
_TABLE = (
    # name            folder             ratings     users    items   kind    zip bytes    zip md5
    ("ml-100k",       "ml-100k",         100_000,    943,     1682,   "100k", 4_924_029,   "0e33842e24a9c977be4e0107933c0723"),
    ("ml-1m",         "ml-1m",           1_000_209,  6040,    3706,   "1m",   5_917_549,   "c4d9eecfca2ab87c1945afe126590906"),
    ("ml-10m",        "ml-10M100K",      10_000_054, 69_878,  10_677, "10m",  65_566_137,  "ce571fd55effeba0271552578f2648bd"),
    ("ml-20m",        "ml-20m",          20_000_263, 138_493, 26_744, "csv",  198_702_078, "cd245b17a1ae2cc31bb14903e1204af3"),
    ("ml-25m",        "ml-25m",          25_000_095, 162_541, 59_047, "csv",  261_978_986, "6b51fb2759a8657d3bfcbfc42b592ada"),
    ("ml-32m",        "ml-32m",          32_000_204, 200_948, 84_432, "csv",  238_950_008, "d472be332d4daa821edc399621853b57"),
    ("ml-latest-small", "ml-latest-small", 100_836,  610,     9724,   "csv",  None,        None),
)
# fmt: on

DATASETS: dict[str, MovieLensSpec] = {row[0]: _spec(row) for row in _TABLE}
# ML-100k's u.data is checked on every load: 2 MB, and it catches edited or mixed-up copies.
DATASETS["ml-100k"] = replace(
    DATASETS["ml-100k"], file_md5={"u.data": "6e47046882bad158b0efbb84cd5cb987"}
)


def resolve_name(name: str) -> str:
    """The canonical dataset name ("ml-100k") for a short or long one ("100k", "ML-100K")."""
    key = name.strip().lower()
    for candidate in (key, f"ml-{key}"):
        if candidate in DATASETS:
            return candidate
    raise ValueError(f"unknown MovieLens dataset {name!r}; known: {', '.join(DATASETS)}")


def get_spec(name: str | MovieLensSpec) -> MovieLensSpec:
    """The spec for a name, looked up at call time so tests can swap in their own."""
    return name if isinstance(name, MovieLensSpec) else DATASETS[resolve_name(name)]


# --- where the data lives ----------------------------------------------------------------------
def cache_dir() -> Path:
    """``$COLLABKIT_DATA`` if set, else ``$XDG_CACHE_HOME/collabkit`` (``~/.cache/collabkit``)."""
    if env := os.environ.get("COLLABKIT_DATA"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "collabkit"


def _is_dataset_dir(path: Path, spec: MovieLensSpec) -> bool:
    return all((path / f).is_file() for f in spec.required)


def _candidates(spec: MovieLensSpec, data_dir: str | Path | None) -> Iterator[Path]:
    """Folders that may hold the set, in order: under data_dir, data_dir itself, the cache."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        yield from dict.fromkeys([root / spec.folder, root / spec.name])
        if not _names_other_dataset(root, spec):
            yield root
    cache = cache_dir()
    yield from dict.fromkeys([cache / spec.folder, cache / spec.name])


def _names_other_dataset(path: Path, spec: MovieLensSpec) -> bool:
    """True for e.g. .../ml-1m when ml-10m is wanted (both have ratings.dat + movies.dat)."""
    others = {s.folder for s in DATASETS.values()} | set(DATASETS)
    return path.name in others - {spec.folder, spec.name}


def find_dataset_dir(name: str | MovieLensSpec, data_dir: str | Path | None = None) -> Path | None:
    """The folder holding the set: data_dir/<folder>, data_dir itself, or the cache; else None."""
    spec = get_spec(name)
    return next((p for p in _candidates(spec, data_dir) if _is_dataset_dir(p, spec)), None)


# --- download ------------------------------------------------------------------------------------
def _base_url(base_url: str | None) -> str | None:
    return (base_url or os.environ.get(URL_ENV) or "").rstrip("/") or None


def _url(spec: MovieLensSpec, base_url: str | None = None) -> str:
    """The zip's URL: the official one unless a base URL (argument or env var) overrides the host."""
    base = _base_url(base_url)
    return f"{base}/{spec.zip_name}" if base else spec.url


def _md5_url(spec: MovieLensSpec, base_url: str | None) -> str | None:
    base = _base_url(base_url)
    if spec.md5_url is None or base is None:
        return spec.md5_url
    return f"{base}/{spec.md5_url.rsplit('/', 1)[-1]}"


def _open(url: str, timeout: float = 60) -> http.client.HTTPResponse:
    """urlopen with our User-Agent; network failures become DownloadError naming the URL."""
    request = urllib.request.Request(url, headers={"User-Agent": "collabkit"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not download {url}: {reason} (is the network up?)") from e


def _published_md5(spec: MovieLensSpec, base_url: str | None, verify: bool = True) -> str | None:
    """The md5 GroupLens publishes next to the zip ("MD5 (x.zip) = ...").

    When it is unavailable: a DownloadError (nothing unverified is extracted), or with
    ``verify=False`` None and a warning.
    """
    url = _md5_url(spec, base_url)
    if url is None:
        return None
    try:
        with _open(url, timeout=30) as response:
            text = response.read(4096).decode("ascii", "replace")
        match = re.search(r"\b([0-9a-fA-F]{32})\b", text)
        if match is None:
            raise DownloadError(f"{url} holds no md5")
    except OSError as e:
        if verify:
            raise DownloadError(
                f"could not fetch the published checksum ({e}): the download cannot be verified, so "
                "it is not extracted; pass verify=False (`collabkit datasets download --no-verify`) "
                "to accept an unverified copy"
            ) from e
        warnings.warn(f"{e}; not verified (--no-verify): checking size and zip integrity only", stacklevel=3)
        return None
    return match.group(1).lower()


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _progress_bar(enabled: bool, description: str) -> Any:
    """A rich download bar on stderr (so --json output stays clean); a no-op when disabled."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn(description),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def _stream(url: str, part: Path, expected_size: int | None, progress: bool) -> tuple[int, str]:
    """Write the body of ``url`` to ``part``; returns (bytes, md5). Checks announced vs expected size."""
    digest, got = hashlib.md5(usedforsecurity=False), 0
    with _open(url) as response:
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced and announced.isdigit() else None
        if expected_size is not None and announced is not None and announced != expected_size:
            raise DownloadError(
                f"{url}: expected {expected_size} bytes, server announces {announced}"
            )
        total = announced or expected_size
        with (
            _progress_bar(progress, part.name.removesuffix(".part")) as bar,
            part.open("wb") as out,
        ):
            task = bar.add_task("download", total=total)
            try:
                while block := response.read(CHUNK):
                    out.write(block)
                    digest.update(block)
                    got += len(block)
                    bar.update(task, advance=len(block))
            except http.client.IncompleteRead as e:  # connection closed early: report sizes below
                got += len(e.partial)
            except (TimeoutError, ConnectionError) as e:
                raise DownloadError(f"{url}: connection lost after {got} bytes ({e})") from e
    if total is not None and got != total:
        raise DownloadError(f"truncated download of {url}: expected {total} bytes, got {got}")
    return got, digest.hexdigest()


def _download(url: str, dest: Path, spec: MovieLensSpec, md5: str | None, progress: bool) -> None:
    """Stream to ``dest.part``, verify size and md5, then rename; nothing is left behind on failure."""
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    try:
        _, got_md5 = _stream(url, part, spec.size, progress)
        if md5 is not None and got_md5 != md5:
            raise DownloadError(f"bad checksum for {url}: md5 {got_md5}, expected {md5}")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def _zip_is_good(path: Path, spec: MovieLensSpec, md5: str | None) -> bool:
    """Whether a zip already on disk matches the known size and md5 (None: not checked)."""
    if spec.size is not None and path.stat().st_size != spec.size:
        return False
    return md5 is None or _file_md5(path) == md5


MAX_EXPANSION = 12  # MovieLens zips expand 2-5x (ml-25m: 262 MB -> 1.1 GB)


def _check_expansion(zf: zipfile.ZipFile, zip_path: Path, spec: MovieLensSpec) -> None:
    """Refuse a zip whose members would expand far beyond what the dataset's zip size allows."""
    packed = spec.size or zip_path.stat().st_size
    limit = max(MAX_EXPANSION * packed, 16 << 20)
    total = sum(info.file_size for info in zf.infolist())
    if total > limit:
        raise DownloadError(
            f"{zip_path} expands to {total:,} bytes, more than {limit:,} ({MAX_EXPANSION}x its "
            f"{packed:,} bytes): not a MovieLens archive (a zip bomb?); nothing was extracted"
        )


def _dataset_root(found: Path, spec: MovieLensSpec) -> Path | None:
    """Where the required files are in an extracted tree: its top, or one folder down."""
    if _is_dataset_dir(found, spec):
        return found
    return next(
        (d for d in sorted(found.iterdir()) if d.is_dir() and _is_dataset_dir(d, spec)), None
    )


def _extract(zip_path: Path, url: str, spec: MovieLensSpec) -> Path:
    """Unzip into a temp folder beside the target, then ``os.replace`` it into place (atomic)."""
    root, final = zip_path.parent, zip_path.parent / spec.folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.extract-", dir=root))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                _check_expansion(zf, zip_path, spec)
                zf.extractall(tmp)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise DownloadError(f"{zip_path} (from {url}) is not a valid zip archive: {e}") from e
        inner = _dataset_root(tmp, spec)
        if inner is None:
            raise DownloadError(f"{zip_path} (from {url}) lacks {', '.join(spec.required)}")
        _move_into_place(inner, final, spec)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _move_into_place(src: Path, final: Path, spec: MovieLensSpec) -> None:
    """Atomic rename; if another process got there first with a complete copy, keep theirs."""
    try:
        os.replace(src, final)
    except OSError:
        if not _is_dataset_dir(final, spec):
            raise


def _clean_stale(root: Path, spec: MovieLensSpec) -> None:
    """Remove what an interrupted earlier run left: a ``.part`` file and temp extraction folders."""
    (root / (spec.zip_name + ".part")).unlink(missing_ok=True)
    for stale in root.glob(f".{spec.folder}.extract-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _download_root(spec: MovieLensSpec, data_dir: str | Path | None) -> Path:
    """Where a download goes: data_dir (its parent if it is named like the set) or the cache."""
    if data_dir is None:
        return cache_dir()
    root = Path(data_dir).expanduser()
    return root.parent if root.name in (spec.folder, spec.name) else root


def _fetch(
    spec: MovieLensSpec,
    data_dir: str | Path | None,
    progress: bool,
    base_url: str | None,
    verify: bool = True,
) -> Path:
    found = find_dataset_dir(spec, data_dir)
    if found is not None:
        return found
    root = _download_root(spec, data_dir)
    final = root / spec.folder
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()  # an empty placeholder (e.g. made by mkdir) is not a dataset
    if final.exists():
        missing = [f for f in spec.required if not (final / f).is_file()] if final.is_dir() else list(spec.required)
        raise DatasetIntegrityError(f"{final} exists but lacks {', '.join(missing)}; remove it and retry")
    if root.exists() and not root.is_dir():
        raise DatasetIntegrityError(f"--data-dir {root} is a file, not a folder")
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale(root, spec)
    url, zip_path = _url(spec, base_url), root / spec.zip_name
    md5 = spec.md5 or _published_md5(spec, base_url, verify)
    ours = not (zip_path.is_file() and _zip_is_good(zip_path, spec, md5))  # reuse a verified zip
    if ours:
        _download(url, zip_path, spec, md5, progress)
    try:
        return _extract(zip_path, url, spec)
    finally:
        if ours:
            zip_path.unlink(missing_ok=True)


def fetch_movielens(
    name: str,
    data_dir: str | Path | None = None,
    progress: bool = True,
    base_url: str | None = None,
    verify: bool = True,
) -> Path:
    """The extracted folder of a set, downloading and verifying it first if it is not on disk.

    ``verify=False`` accepts a download whose published checksum cannot be fetched (with a warning).
    """
    return _fetch(get_spec(name), data_dir, progress, base_url, verify)


def dataset_status(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per known set (name, url, path, present) for `collabkit datasets list`."""
    rows = []
    for spec in DATASETS.values():
        path = find_dataset_dir(spec, data_dir)
        rows.append(
            {
                "name": spec.name,
                "url": _url(spec),
                "path": str(path) if path else None,
                "present": path is not None,
            }
        )
    return rows


def _locate(
    spec: MovieLensSpec, data_dir: str | Path | None, download: bool, progress: bool
) -> Path:
    """The set's folder, downloaded if allowed; else FileNotFoundError saying where we looked."""
    found = find_dataset_dir(spec, data_dir)
    if found is not None:
        return found
    if download:
        return _fetch(spec, data_dir, progress, None)
    looked = ", ".join(str(p) for p in _candidates(spec, data_dir))
    raise FileNotFoundError(
        f"{spec.name} not found (looked in {looked}). Get it with `collabkit datasets download "
        f"{spec.name}` (or download=True), or pass --data-dir / data_dir=<folder holding {spec.folder}>"
    )


# --- parsing -------------------------------------------------------------------------------------
RATING_DTYPES = {"user": np.int64, "item": np.int64, "rating": np.float32, "timestamp": np.int64}


def _parse(path: Path, **kw: Any) -> pd.DataFrame:
    """pd.read_csv, with malformed files reported as DatasetIntegrityError naming the file."""
    try:
        return pd.read_csv(path, **kw)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DatasetIntegrityError(f"{path}: malformed file ({e})") from e


def _read_tab_ratings(path: Path) -> pd.DataFrame:
    """ML-100k ratings (u.data, u1.base...): tab-separated user item rating timestamp."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return _parse(path, sep="\t", header=None, names=list(COLUMNS), dtype=RATING_DTYPES)


def _read_dat_ratings(path: Path) -> pd.DataFrame:
    """ML-1m/10m ratings.dat ("u::i::r::t"): split on single colons so the fast C parser applies."""
    names = ["user", "_a", "item", "_b", "rating", "_c", "timestamp"]
    return _parse(
        path, sep=":", header=None, names=names, usecols=list(COLUMNS), dtype=RATING_DTYPES
    )[list(COLUMNS)]


def _read_csv_ratings(path: Path, scale: tuple[float, float]) -> pd.DataFrame:
    """ML-20m+ ratings.csv (userId,movieId,rating,timestamp), read a chunk at a time by
    ``read_ratings``: int32 ids, float32 ratings, int64 timestamps (20 bytes a rating)."""
    try:
        return read_ratings(
            path, user_col="userId", item_col="movieId", timestamp_col="timestamp", scale=scale
        ).frame
    except RatingsFormatError as e:
        raise DatasetIntegrityError(f"malformed file: {e}") from e


def _read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    """A small "::"-separated metadata file (movies.dat, users.dat); utf-8, else latin-1."""
    kw: dict[str, Any] = {
        "sep": "::",
        "engine": "python",
        "header": None,
        "names": names,
        "dtype": str,
        "quoting": csv.QUOTE_NONE,
        "keep_default_na": False,
    }
    try:
        return _parse(path, encoding="utf-8", **kw)
    except DatasetIntegrityError as e:
        if not isinstance(e.__cause__, UnicodeDecodeError):
            raise
        return _parse(path, encoding="latin-1", **kw)


def _year(titles: pd.Series) -> pd.Series:
    """The release year from a title's trailing "(1995)" (or "(2006-2007)"); <NA> when absent."""
    year = titles.str.extract(r"\((\d{4})(?:\s*[-–]\s*\d{0,4})?\s*\)\s*$", expand=False)
    return pd.to_numeric(year, errors="coerce").astype("Int64")


def _items_frame(ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    """Items metadata in the common shape: index item id; title, year, genres."""
    titles = titles.astype(str).str.strip().reset_index(drop=True)
    items = pd.DataFrame(
        {
            "title": titles,
            "year": _year(titles),
            "genres": genres.astype(str).reset_index(drop=True),
        }
    )
    return items.set_axis(pd.Index(ids.astype(np.int64).to_numpy(), name="item"))


def _join_flags(flags: np.ndarray, names: list[str]) -> pd.Series:
    """'Action|Comedy' from 0/1 genre columns: a 0/1 x "name|" product concatenates the set ones."""
    labels = np.array([n + "|" for n in names], dtype=object)
    joined = flags.astype(object) @ labels if len(flags) else []
    return pd.Series(joined, dtype=object).str.rstrip("|")


def _items_100k(folder: Path) -> pd.DataFrame:
    """u.item (pipe-separated, latin-1) with its 19 genre flags named by u.genre."""
    genres = (
        _parse(
            folder / "u.genre",
            sep="|",
            header=None,
            names=["genre", "code"],
            encoding="latin-1",
            dtype={"genre": str, "code": np.int64},
        )
        .sort_values("code")["genre"]
        .tolist()
    )
    names = ["item", "title", "release_date", "video_release_date", "imdb_url", *genres]
    raw = _parse(
        folder / "u.item",
        sep="|",
        header=None,
        names=names,
        encoding="latin-1",
        quoting=csv.QUOTE_NONE,
        dtype={g: np.int64 for g in genres} | {"title": str},
        keep_default_na=False,
    )
    return _items_frame(raw["item"], raw["title"], _join_flags(raw[genres].to_numpy(), genres))


def _users_100k(folder: Path) -> pd.DataFrame:
    """u.user: id|age|gender|occupation|zip."""
    raw = _parse(
        folder / "u.user",
        sep="|",
        header=None,
        names=["user", "age", "gender", "occupation", "zip"],
        dtype={"user": np.int64, "age": np.int64, "gender": str, "occupation": str, "zip": str},
        keep_default_na=False,
        encoding="latin-1",
    )
    return raw.set_index("user")


def _items_dat(folder: Path) -> pd.DataFrame:
    raw = _read_dat(folder / "movies.dat", ["item", "title", "genres"])
    return _items_frame(pd.to_numeric(raw["item"]), raw["title"], raw["genres"])


def _users_1m(folder: Path) -> pd.DataFrame:
    """users.dat: id::gender::age::occupation::zip; age is ML-1M's bucket code, occupation named."""
    raw = _read_dat(folder / "users.dat", ["user", "gender", "age", "occupation", "zip"])
    codes = pd.to_numeric(raw["occupation"])
    users = pd.DataFrame(
        {
            "age": pd.to_numeric(raw["age"]).astype(np.int64).to_numpy(),
            "gender": raw["gender"].to_numpy(),
            "occupation": pd.Series(OCCUPATIONS_1M, dtype=object)
            .reindex(codes)
            .fillna("other")
            .to_numpy(),
            "zip": raw["zip"].to_numpy(),
        },
        index=pd.Index(pd.to_numeric(raw["user"]).astype(np.int64).to_numpy(), name="user"),
    )
    return users


def _items_csv(folder: Path) -> pd.DataFrame:
    raw = _parse(
        folder / "movies.csv",
        dtype={"movieId": np.int64, "title": str, "genres": str},
        keep_default_na=False,
        encoding="utf-8",
    )
    return _items_frame(raw["movieId"], raw["title"], raw["genres"])


def _metadata(spec: MovieLensSpec, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(items, users) for a set; users only where GroupLens ships them (100k, 1m)."""
    if spec.kind == "100k":
        return _items_100k(folder), _users_100k(folder)
    if spec.kind == "1m":
        return _items_dat(folder), _users_1m(folder)
    if spec.kind == "10m":
        return _items_dat(folder), None
    return _items_csv(folder), None


def _ratings_frame(spec: MovieLensSpec, folder: Path) -> pd.DataFrame:
    path = folder / spec.required[0]
    if spec.kind == "100k":
        return _read_tab_ratings(path)
    if spec.kind in ("1m", "10m"):
        return _read_dat_ratings(path)
    return _read_csv_ratings(path, spec.scale)


# --- verification ---------------------------------------------------------------------------------
def verify_files(spec: MovieLensSpec, folder: Path) -> None:
    """Check the md5 of files the spec pins (ML-100k's u.data): cheap, and catches edited copies."""
    for name, expected in spec.file_md5.items():
        got = _file_md5(folder / name)
        if got != expected:
            raise DatasetIntegrityError(
                f"{folder / name}: md5 {got}, expected {expected} for {spec.name}; "
                "the file is damaged or from another release: delete the folder and download again"
            )


def verify_counts(frame: pd.DataFrame, spec: MovieLensSpec, source: str | Path) -> None:
    """Raise unless the ratings have the published numbers of ratings, users and rated items."""
    found = {
        "ratings": len(frame),
        "users": frame["user"].nunique(),
        "items": frame["item"].nunique(),
    }
    expected = {"ratings": spec.n_ratings, "users": spec.n_users, "items": spec.n_items}
    wrong = [
        f"{k}: expected {expected[k]}, found {found[k]}" for k in found if found[k] != expected[k]
    ]
    if wrong:
        raise DatasetIntegrityError(
            f"{spec.name} at {source} does not match the published counts ({'; '.join(wrong)}); "
            "the files are truncated or from another release: delete the folder and download again"
        )


# --- loading -------------------------------------------------------------------------------------
def _check_item_name(item_name: str) -> None:
    if item_name not in ("item", "title"):
        raise ValueError(f"item_name must be 'item' or 'title', not {item_name!r}")


def by_title(data: Ratings) -> Ratings:
    """Key items by title (the fastai chapter's view); a user's ratings of one title are averaged."""
    titles = data.items["title"] if data.items is not None else None
    if titles is None:
        raise ValueError(f"{data.name}: no item titles to key by")
    item = data.frame["item"].map(titles)
    if item.isna().any():
        missing = data.frame.loc[item.isna(), "item"].unique()[:5].tolist()
        raise DatasetIntegrityError(f"{data.name}: rated items without a title, e.g. {missing}")
    merged = (
        data.frame.assign(item=item)
        .groupby(["user", "item"], sort=False, as_index=False)
        .agg(rating=("rating", "mean"), timestamp=("timestamp", "max"))
        .astype({"rating": np.float32, "timestamp": np.int64})
    )
    shared = int(titles.duplicated(keep=False).sum())
    note = (
        f"item_name='title': {shared} item ids share {titles[titles.duplicated()].nunique()} titles; "
        f"{len(data.frame) - len(merged)} rows were merged (same user, same title: mean rating, "
        f"latest timestamp), {len(data.frame)} -> {len(merged)} rows"
    )
    items = data.items.drop_duplicates("title").set_index("title", drop=False).rename_axis("item")
    return Ratings(
        merged,
        items=items,
        users=data.users,
        scale=data.scale,
        name=data.name,
        source=data.source,
        notes=[*data.notes, note],
    )


def _ratings(
    spec: MovieLensSpec, frame: pd.DataFrame, folder: Path, meta: tuple, name: str
) -> Ratings:
    items, users = meta
    return Ratings(
        frame.reset_index(drop=True),
        items=items,
        users=users,
        scale=spec.scale,
        name=name,
        source=str(folder),
    )


def load_movielens(
    name: str = "100k",
    data_dir: str | Path | None = None,
    item_name: ItemName = "item",
    download: bool = True,
    progress: bool = True,
) -> Ratings:
    """A MovieLens set as Ratings (raw ids, title/year/genres, user facts), counts verified."""
    spec = get_spec(name)
    _check_item_name(item_name)
    folder = _locate(spec, data_dir, download, progress)
    verify_files(spec, folder)
    frame = _ratings_frame(spec, folder)
    verify_counts(frame, spec, folder)
    data = _ratings(spec, frame, folder, _metadata(spec, folder), spec.name)
    if item_name == "title":
        return by_title(data)  # not a recorded source: later commands read the set by id
    data.origin = _origin(spec, data_dir)
    return data


def canonical_split(
    split: str = "u1",
    name: str = "ml-100k",
    data_dir: str | Path | None = None,
    item_name: ItemName = "item",
) -> tuple[Ratings, Ratings]:
    """GroupLens's own ML-100k train/test split (u1..u5: 5-fold; ua/ub: 10 test ratings per user)."""
    if split not in SPLITS:
        raise ValueError(f"unknown canonical split {split!r}; valid: {', '.join(SPLITS)}")
    spec = get_spec(name)
    if spec.kind != "100k":
        raise ValueError(f"canonical splits ship only with ml-100k, not {spec.name}")
    _check_item_name(item_name)
    folder = _locate(spec, data_dir, download=True, progress=True)
    train, test = (_read_tab_ratings(folder / f"{split}.{part}") for part in ("base", "test"))
    if len(train) + len(test) != spec.n_ratings:
        raise DatasetIntegrityError(
            f"{folder}: {split}.base + {split}.test hold {len(train)} + {len(test)} ratings, "
            f"expected {spec.n_ratings} in all"
        )
    meta = _metadata(spec, folder)
    base = _ratings(spec, train, folder, meta, f"{spec.name}/{split}.base")
    held = _ratings(spec, test, folder, meta, f"{spec.name}/{split}.test")
    if item_name == "item":
        base.origin = held.origin = {**_origin(spec, data_dir), "split": split}
        return base, held
    base, held = by_title(base), by_title(held)
    _note_overlap(base, held)
    return base, held


def _origin(spec: MovieLensSpec, data_dir: str | Path | None) -> dict[str, Any]:
    """The data record of this set (``data.source``): name and folder."""
    return {"dataset": spec.name, "data_dir": None if data_dir is None else str(Path(data_dir).resolve())}


def _note_overlap(train: Ratings, test: Ratings) -> None:
    """Note (user, title) pairs in both halves: one title's two ids can land on either side."""
    keys = ["user", "item"]
    both = len(test.frame[keys].merge(train.frame[keys].drop_duplicates(), on=keys))
    if both:
        note = (
            f"{both} (user, title) pairs of the test set also appear in training under another id"
        )
        test.notes.append(note)
