"""MovieLens: names, finding, downloading (against a local server) and parsing, fake and real data.

Fake datasets in GroupLens's formats are built in tmp_path, with a fake spec whose counts match, so
everything runs offline; the real ML-100k is used only when $COLLABKIT_TEST_DATA holds it.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collabkit.data import movielens as ml
from collabkit.data.movielens import (
    DATASETS,
    DatasetIntegrityError,
    DownloadError,
    MovieLensSpec,
    cache_dir,
    canonical_split,
    dataset_status,
    fetch_movielens,
    find_dataset_dir,
    load_movielens,
    resolve_name,
)

GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip


# --- fake data ------------------------------------------------------------------------------------
def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fake_ratings() -> pd.DataFrame:
    """6 users x 5 items; user 1 rates items 4 and 5, which share a title (4 and 2: mean 3)."""
    rng = np.random.default_rng(0)
    pairs = [(u, i) for u in range(1, 7) for i in range(1, 6) if (u + i) % 3 or u == 1]
    frame = pd.DataFrame(pairs, columns=["user", "item"])
    frame["rating"] = rng.integers(1, 6, len(frame))
    frame["timestamp"] = 880_000_000 + np.arange(len(frame))
    frame.loc[(frame.user == 1) & (frame.item == 4), "rating"] = 4
    frame.loc[(frame.user == 1) & (frame.item == 5), "rating"] = 2
    return frame


def write_fake_100k(folder: Path) -> MovieLensSpec:
    """An ML-100k-format folder (latin-1 titles, a shared title, an untitled year) and its spec."""
    folder.mkdir(parents=True)
    frame = fake_ratings()
    data = frame.to_csv(sep="\t", header=False, index=False).encode()
    (folder / "u.data").write_bytes(data)
    titles = ["Toy Story (1995)", "Café Society (1999)", "unknown", "Twin (1999)", "Twin (1999)"]
    flags = np.zeros((5, 19), dtype=int)
    flags[0, [3, 4, 5]] = flags[1, 8] = flags[2, 0] = flags[3, 1] = flags[4, 1] = 1
    lines = [
        "|".join([str(i + 1), t, "01-Jan-1995", "", "http://x", *map(str, f)])
        for i, (t, f) in enumerate(zip(titles, flags))
    ]
    (folder / "u.item").write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    (folder / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)) + "\n")
    users = [
        f"{u}|{20 + u}|{'MF'[u % 2]}|{['writer', 'other'][u % 2]}|0{u}123" for u in range(1, 7)
    ]
    (folder / "u.user").write_text("\n".join(users) + "\n")
    for k, split in enumerate(ml.SPLITS):
        test = frame.index % 5 == k % 5
        for part, rows in (("base", frame[~test]), ("test", frame[test])):
            (folder / f"{split}.{part}").write_text(
                rows.to_csv(sep="\t", header=False, index=False)
            )
    return replace(
        DATASETS["ml-100k"],
        n_ratings=len(frame),
        n_users=frame.user.nunique(),
        n_items=frame.item.nunique(),
        size=None,
        md5=None,
        md5_url=None,
        file_md5={"u.data": md5(data)},
    )


def zip_folder(folder: Path, top: str) -> bytes:
    """The folder as GroupLens zips it (one top-level folder), uncompressed so flips break CRCs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{top}/{f.name}")
    return buf.getvalue()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real cache or the network settings of the person running the tests."""
    monkeypatch.setenv("COLLABKIT_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv(ml.URL_ENV, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/data/ml-100k holding fake data; DATASETS['ml-100k'] swapped for a matching spec."""
    spec = write_fake_100k(tmp_path / "data" / "ml-100k")
    monkeypatch.setitem(DATASETS, "ml-100k", spec)
    return tmp_path / "data"


@pytest.fixture
def fake_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Zip bytes of a fake ml-100k (built outside any data folder); DATASETS patched to match."""
    spec = write_fake_100k(tmp_path / "build" / "ml-100k")
    monkeypatch.setitem(DATASETS, "ml-100k", spec)
    return zip_folder(tmp_path / "build" / "ml-100k", "ml-100k")


def use_spec(monkeypatch: pytest.MonkeyPatch, **changes: object) -> MovieLensSpec:
    spec = replace(DATASETS["ml-100k"], **changes)
    monkeypatch.setitem(DATASETS, "ml-100k", spec)
    return spec


# --- a local HTTP server --------------------------------------------------------------------------
@dataclass
class Server:
    """Serves ``files`` by name; can cut bodies short (``truncate``) or omit Content-Length."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    truncate: dict[str, int] = field(default_factory=dict)
    no_length: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        srv: Server = self.server.state  # type: ignore[attr-defined]
        name = self.path.lstrip("/")
        srv.requests.append(name)
        if name not in srv.files:
            self.send_error(404)
            return
        body = srv.files[name]
        self.send_response(200)
        if name not in srv.no_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: srv.truncate.get(name, len(body))])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Server:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Server(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def leftovers(root: Path) -> list[str]:
    """Anything a failed download could leave that looks like (part of) a dataset."""
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir())


# --- names, specs, places -------------------------------------------------------------------------
def test_resolve_name_accepts_short_and_long_names() -> None:
    assert resolve_name("100k") == "ml-100k"
    assert resolve_name("ML-1M") == "ml-1m"
    assert resolve_name("latest-small") == "ml-latest-small"
    assert resolve_name("ml-32m") == "ml-32m"
    with pytest.raises(ValueError, match="ml-100k.*ml-25m"):
        resolve_name("7m")


def test_specs_describe_the_official_sets() -> None:
    expected = {
        "ml-100k": (100_000, 943, 1682),
        "ml-1m": (1_000_209, 6040, 3706),
        "ml-10m": (10_000_054, 69_878, 10_677),
        "ml-20m": (20_000_263, 138_493, 26_744),
        "ml-25m": (25_000_095, 162_541, 59_047),
        "ml-32m": (32_000_204, 200_948, 84_432),
        "ml-latest-small": (100_836, 610, 9724),
    }
    assert set(DATASETS) == set(expected)
    for name, spec in DATASETS.items():
        assert (spec.n_ratings, spec.n_users, spec.n_items) == expected[name]
        assert spec.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert spec.md5 is None or len(spec.md5) == 32
        assert spec.md5 is not None or spec.md5_url == spec.url + ".md5"
        assert spec.scale == ((1, 5) if name in ("ml-100k", "ml-1m") else (0.5, 5))
    assert DATASETS["ml-10m"].folder == "ml-10M100K"
    assert DATASETS["ml-100k"].file_md5 == {"u.data": "6e47046882bad158b0efbb84cd5cb987"}


def test_cache_dir_honours_env_and_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("COLLABKIT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "collabkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "collabkit"


def test_find_dataset_dir_parent_folder_itself_and_cache(fake: Path, tmp_path: Path) -> None:
    assert find_dataset_dir("100k", fake) == fake / "ml-100k"
    assert find_dataset_dir("ml-100k", fake / "ml-100k") == fake / "ml-100k"
    assert find_dataset_dir("100k") is None
    assert find_dataset_dir("100k", tmp_path / "elsewhere") is None
    (fake / "ml-100k").rename(tmp_path / "cache")  # the cache itself is no dataset folder...
    assert find_dataset_dir("100k") is None
    (tmp_path / "cache").rename(tmp_path / "ml-100k")
    (tmp_path / "cache").mkdir()
    (tmp_path / "ml-100k").rename(tmp_path / "cache" / "ml-100k")  # ...but cache/ml-100k is
    assert find_dataset_dir("100k", tmp_path / "elsewhere") == tmp_path / "cache" / "ml-100k"


def test_incomplete_folder_is_not_a_dataset(fake: Path) -> None:
    (fake / "ml-100k" / "u.item").unlink()
    assert find_dataset_dir("100k", fake) is None


def test_dataset_status_lists_every_set(fake: Path) -> None:
    rows = {r["name"]: r for r in dataset_status(fake)}
    assert set(rows) == set(DATASETS)
    assert rows["ml-100k"]["present"] and rows["ml-100k"]["path"] == str(fake / "ml-100k")
    assert not rows["ml-1m"]["present"] and rows["ml-1m"]["path"] is None
    assert rows["ml-1m"]["url"].startswith("https://files.grouplens.org/")


# --- loading the fake ML-100k ---------------------------------------------------------------------
def test_load_fake_100k(fake: Path) -> None:
    data = load_movielens("100k", data_dir=fake, download=False)
    truth = fake_ratings()
    assert len(data) == len(truth) and data.name == "ml-100k"
    assert data.source == str(fake / "ml-100k") and data.scale == (1, 5)
    assert dict(data.frame.dtypes.astype(str)) == {
        "user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64",
    }  # fmt: skip
    np.testing.assert_array_equal(data.frame["rating"], truth["rating"])
    items = data.items
    assert items.loc[2, "title"] == "Café Society (1999)" and items.loc[2, "year"] == 1999
    assert pd.isna(items.loc[3, "year"]) and str(items["year"].dtype) == "Int64"
    assert items.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert items.loc[3, "genres"] == "unknown"
    assert data.users.loc[2, "age"] == 22 and data.users.loc[2, "occupation"] == "writer"
    assert data.users.loc[2, "zip"] == "02123"  # zips stay strings


def test_title_mode_averages_shared_titles_and_says_so(fake: Path) -> None:
    data = load_movielens("100k", data_dir=fake, item_name="title", download=False)
    twin = data.frame[(data.frame.user == 1) & (data.frame.item == "Twin (1999)")]
    assert len(twin) == 1 and twin["rating"].iloc[0] == 3.0
    twins = fake_ratings().query("item in (4, 5)")
    n_merged = len(twins) - twins.user.nunique()  # users who rated both ids of the title
    assert n_merged >= 1 and (data.frame.item == "Twin (1999)").sum() == twins.user.nunique()
    assert len(data) == len(fake_ratings()) - n_merged
    assert any(f"{n_merged} rows were merged" in n for n in data.notes)
    assert data.items.loc["Twin (1999)", "year"] == 1999
    assert data.titles(["Café Society (1999)"]) == ["Café Society (1999)"]


def test_bad_item_name_is_refused(fake: Path) -> None:
    with pytest.raises(ValueError, match="item_name"):
        load_movielens("100k", data_dir=fake, item_name="name")  # type: ignore[arg-type]


def test_count_mismatch_is_an_integrity_error(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_spec(monkeypatch, n_users=943, file_md5={})
    with pytest.raises(DatasetIntegrityError, match="users: expected 943, found 6"):
        load_movielens("100k", data_dir=fake)


def test_u_data_checksum_is_verified(fake: Path) -> None:
    with (fake / "ml-100k" / "u.data").open("a") as f:
        f.write("1\t1\t5\t880000000\n")
    with pytest.raises(DatasetIntegrityError, match="u.data: md5"):
        load_movielens("100k", data_dir=fake)


def test_missing_data_without_download_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_movielens("100k", data_dir=tmp_path / "nowhere", download=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "ml-100k") in message and str(tmp_path / "cache") in message
    assert "collabkit datasets download ml-100k" in message and "--data-dir" in message


def test_canonical_split_fake(fake: Path) -> None:
    train, test = canonical_split("u2", data_dir=fake)
    truth = fake_ratings()
    assert len(train) + len(test) == len(truth) and len(test) == (truth.index % 5 == 1).sum()
    assert train.items is not None and train.items.loc[1, "title"] == "Toy Story (1995)"
    assert train.name == "ml-100k/u2.base" and test.name == "ml-100k/u2.test"
    assert dict(test.frame.dtypes.astype(str))["rating"] == "float32"


def test_canonical_split_title_mode(fake: Path) -> None:
    train, test = canonical_split("ua", data_dir=fake, item_name="title")
    assert train.frame["item"].dtype != np.int64 and "Twin (1999)" in set(train.items.index)
    assert any("merged" in n for n in train.notes)
    assert set(test.frame["item"]) <= set(train.items.index)


def test_canonical_split_rejects_unknown_splits(fake: Path) -> None:
    with pytest.raises(ValueError, match="u1, u2, u3, u4, u5, ua, ub"):
        canonical_split("u6", data_dir=fake)
    with pytest.raises(ValueError, match="only with ml-100k"):
        canonical_split("u1", name="ml-1m", data_dir=fake)


# --- the other formats ----------------------------------------------------------------------------
def test_load_1m_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text(
        "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n"
    )
    movies = "10::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n20::Misérables, Les (1995)::Drama\n"
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    monkeypatch.setitem(
        DATASETS, "ml-1m", replace(DATASETS["ml-1m"], n_ratings=3, n_users=2, n_items=2)
    )
    data = load_movielens("1m", data_dir=tmp_path, download=False)
    assert data.frame["item"].tolist() == [10, 20, 10] and data.frame["rating"].tolist() == [
        5,
        3,
        4,
    ]
    assert data.items.loc[10, "title"] == "Star Wars: Episode IV - A New Hope (1977)"
    assert data.items.loc[10, "year"] == 1977 and data.items.loc[10, "genres"] == "Action|Sci-Fi"
    assert data.items.loc[20, "title"] == "Misérables, Les (1995)"
    assert data.users.loc[1].tolist() == [1, "F", "K-12 student", "48067"]
    assert data.users.loc[2, "occupation"] == "self-employed" and data.scale == (1, 5)


def test_load_10m_format_from_its_odd_folder_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ml-10M100K"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::122::5::838985046\n2::185::3.5::838983525\n")
    (folder / "movies.dat").write_text(
        "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action\n"
    )
    spec = replace(DATASETS["ml-10m"], n_ratings=2, n_users=2, n_items=2)
    monkeypatch.setitem(DATASETS, "ml-10m", spec)
    data = load_movielens("10m", data_dir=tmp_path, download=False)
    assert data.frame["rating"].tolist() == [5.0, 3.5] and data.users is None
    assert data.scale == (0.5, 5) and data.items.loc[185, "year"] == 1995


@pytest.mark.parametrize("name", ["ml-latest-small", "ml-20m", "ml-25m", "ml-32m"])
def test_load_csv_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,0.5,964981247\n7,1,3.5,964982224\n"
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n11,"American President, The (1995)",Comedy\n'
        "12,Untitled,(no genres listed)\n"
    )
    spec = replace(DATASETS[name], n_ratings=3, n_users=2, n_items=2)
    monkeypatch.setitem(DATASETS, name, spec)
    data = load_movielens(name, data_dir=folder, download=False)
    assert data.frame["user"].tolist() == [1, 1, 7] and data.frame["rating"].dtype == np.float32
    assert [str(t) for t in data.frame.dtypes] == ["int32", "int32", "float32", "int64"]  # 20 B
    assert data.frame["timestamp"].tolist() == [964982703, 964981247, 964982224]
    assert data.items.loc[11, "title"] == "American President, The (1995)"
    assert pd.isna(data.items.loc[12, "year"]) and data.name == name


def test_a_malformed_csv_ratings_file_names_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "ml-32m"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,9\n1,2,7.0,9\n")
    (folder / "movies.csv").write_text("movieId,title,genres\n1,A (1995),Drama\n")
    with pytest.raises(DatasetIntegrityError, match=r"line 3: rating outside the scale 0.5..5.0: '7.0'"):
        load_movielens("ml-32m", data_dir=folder, download=False)


# --- downloading ----------------------------------------------------------------------------------
def test_download_extracts_loads_and_never_downloads_twice(
    fake_zip: bytes, server: Server, tmp_path: Path
) -> None:
    server.files["ml-100k.zip"] = fake_zip
    path = fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert path == tmp_path / "dl" / "ml-100k" and (path / "u.data").is_file()
    assert leftovers(tmp_path / "dl") == ["ml-100k"]  # no zip, .part or temp folder left
    assert fetch_movielens("100k", data_dir=tmp_path / "dl", base_url=server.url) == path
    assert load_movielens("100k", data_dir=tmp_path / "dl", download=False).n_users == 6
    assert server.requests == ["ml-100k.zip"]


def test_download_into_cache_via_env_url(
    fake_zip: bytes, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["ml-100k.zip"] = fake_zip
    monkeypatch.setenv(ml.URL_ENV, server.url + "/")
    data = load_movielens("100k", progress=False)
    assert data.source == str(tmp_path / "cache" / "ml-100k") and len(data) == len(fake_ratings())
    load_movielens("100k", progress=False)
    assert server.requests == ["ml-100k.zip"]


def test_download_with_md5_and_size_known(
    fake_zip: bytes, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_spec(monkeypatch, md5=md5(fake_zip), size=len(fake_zip))
    server.files["ml-100k.zip"] = fake_zip
    fetch_movielens("100k", data_dir=tmp_path / "dl", progress=True, base_url=server.url)
    assert find_dataset_dir("100k", tmp_path / "dl") == tmp_path / "dl" / "ml-100k"


def test_truncated_body_is_refused_and_leaves_nothing(
    fake_zip: bytes, server: Server, tmp_path: Path
) -> None:
    server.files["ml-100k.zip"] = fake_zip
    server.truncate["ml-100k.zip"] = 1000
    with pytest.raises(DownloadError, match=f"expected {len(fake_zip)} bytes, got 1000"):
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert leftovers(tmp_path / "dl") == []
    assert find_dataset_dir("100k", tmp_path / "dl") is None
    del server.truncate["ml-100k.zip"]  # a retry then succeeds
    assert fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)


def test_short_body_without_content_length_fails_the_spec_size(
    fake_zip: bytes, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_spec(monkeypatch, size=len(fake_zip))
    server.files["ml-100k.zip"] = fake_zip
    server.no_length.add("ml-100k.zip")
    server.truncate["ml-100k.zip"] = 500
    with pytest.raises(DownloadError, match=f"expected {len(fake_zip)} bytes, got 500"):
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert leftovers(tmp_path / "dl") == []


def test_announced_size_differing_from_spec_is_refused(
    fake_zip: bytes, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_spec(monkeypatch, size=len(fake_zip) + 10)
    server.files["ml-100k.zip"] = fake_zip
    with pytest.raises(DownloadError, match=f"expected {len(fake_zip) + 10} bytes"):
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert leftovers(tmp_path / "dl") == []


def flipped(data: bytes) -> bytes:
    """The zip with a few bytes in the middle (inside u.data's stored body) inverted."""
    mid = len(data) // 4
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 4]) + data[mid + 4 :]


def test_corrupted_zip_fails_the_md5(
    fake_zip: bytes, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_spec(monkeypatch, md5=md5(fake_zip))
    server.files["ml-100k.zip"] = flipped(fake_zip)
    with pytest.raises(DownloadError, match=f"bad checksum.*expected {md5(fake_zip)}"):
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert leftovers(tmp_path / "dl") == []


def test_corrupted_zip_without_md5_fails_as_a_bad_zip(
    fake_zip: bytes, server: Server, tmp_path: Path
) -> None:
    server.files["ml-100k.zip"] = flipped(fake_zip)
    with pytest.raises(DownloadError, match="not a valid zip") as err:
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert isinstance(err.value.__cause__, zipfile.BadZipFile)
    assert server.url + "/ml-100k.zip" in str(err.value) and "ml-100k.zip" in str(err.value)
    assert leftovers(tmp_path / "dl") == []


def test_published_md5_file_is_used_when_no_md5_is_pinned(
    fake_zip: bytes, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_spec(monkeypatch, md5_url=DATASETS["ml-100k"].url + ".md5")
    server.files["ml-100k.zip.md5"] = f"MD5 (ml-100k.zip) = {md5(fake_zip)}\n".encode()
    server.files["ml-100k.zip"] = flipped(fake_zip)
    with pytest.raises(DownloadError, match="bad checksum"):
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    server.files["ml-100k.zip"] = fake_zip
    fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert server.requests == ["ml-100k.zip.md5", "ml-100k.zip"] * 2


def test_missing_md5_file_with_verify_false_warns_and_still_checks_the_zip(
    fake_zip: bytes, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_spec(monkeypatch, md5_url=DATASETS["ml-100k"].url + ".md5")
    server.files["ml-100k.zip"] = fake_zip
    with pytest.warns(UserWarning, match="ml-100k.zip.md5"):
        fetch_movielens(
            "100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url, verify=False
        )
    assert find_dataset_dir("100k", tmp_path / "dl") is not None


def test_http_error_names_the_url(fake_zip: bytes, server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=f"{server.url}/ml-100k.zip: HTTP 404"):
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert leftovers(tmp_path / "dl") == []


def test_unreachable_host_is_a_download_error(fake_zip: bytes, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="could not download http://127.0.0.1:9/ml-100k.zip"):
        fetch_movielens(
            "100k", data_dir=tmp_path / "dl", progress=False, base_url="http://127.0.0.1:9"
        )


def test_stale_part_file_and_temp_folder_are_replaced(
    fake_zip: bytes, server: Server, tmp_path: Path
) -> None:
    root = tmp_path / "dl"
    (root / ".ml-100k.extract-old").mkdir(parents=True)
    (root / ".ml-100k.extract-old" / "u.data").write_text("half")
    (root / "ml-100k.zip.part").write_bytes(b"PK\x03\x04 half a zip")
    assert find_dataset_dir("100k", root) is None
    server.files["ml-100k.zip"] = fake_zip
    path = fetch_movielens("100k", data_dir=root, progress=False, base_url=server.url)
    assert leftovers(root) == ["ml-100k"] and load_movielens("100k", data_dir=path).n_items == 5


def test_verified_zip_already_on_disk_is_extracted_without_network(
    fake_zip: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_spec(monkeypatch, md5=md5(fake_zip), size=len(fake_zip))
    root = tmp_path / "dl"
    root.mkdir()
    (root / "ml-100k.zip").write_bytes(fake_zip)
    path = fetch_movielens("100k", data_dir=root, progress=False, base_url="http://127.0.0.1:9")
    assert (path / "u.data").is_file() and (root / "ml-100k.zip").is_file()  # the user's zip stays


def test_download_into_a_folder_named_like_the_set(
    fake_zip: bytes, server: Server, tmp_path: Path
) -> None:
    server.files["ml-100k.zip"] = fake_zip
    (tmp_path / "dl" / "ml-100k").mkdir(parents=True)  # an empty placeholder
    path = fetch_movielens(
        "100k", data_dir=tmp_path / "dl" / "ml-100k", progress=False, base_url=server.url
    )
    assert path == tmp_path / "dl" / "ml-100k" and (path / "u.data").is_file()


# --- the real ML-100k -----------------------------------------------------------------------------
@pytest.fixture
def ml100k_root() -> Path:
    """Folder holding the real ml-100k, from $COLLABKIT_TEST_DATA; skip without it."""
    root = os.environ.get("COLLABKIT_TEST_DATA")
    if not root or not (Path(root) / "ml-100k" / "u.data").is_file():
        pytest.skip("set COLLABKIT_TEST_DATA to a folder holding ml-100k")
    return Path(root)


def test_real_100k_counts_titles_and_users(ml100k_root: Path) -> None:
    data = load_movielens("100k", data_dir=ml100k_root, download=False)
    assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1682)
    assert data.items.loc[1, "title"] == "Toy Story (1995)" and data.items.loc[1, "year"] == 1995
    assert data.users.loc[1, "age"] == 24 and data.users.loc[1, "occupation"] == "technician"
    assert data.frame["rating"].between(1, 5).all() and data.scale == (1, 5)


def test_real_100k_given_as_its_own_folder(ml100k_root: Path) -> None:
    data = load_movielens("ml-100k", data_dir=ml100k_root / "ml-100k", download=False)
    assert len(data) == 100_000 and data.source == str(ml100k_root / "ml-100k")


def test_real_100k_by_title(ml100k_root: Path) -> None:
    data = load_movielens("100k", data_dir=ml100k_root, item_name="title", download=False)
    assert data.n_users == 943 and data.n_items < 1682 and len(data) < 100_000
    assert "Toy Story (1995)" in set(data.frame["item"])
    assert any("rows were merged" in n and str(100_000 - len(data)) in n for n in data.notes)


def test_real_100k_canonical_split(ml100k_root: Path) -> None:
    train, test = canonical_split("u1", data_dir=ml100k_root)
    assert (len(train), len(test)) == (80_000, 20_000)
    assert test.items.loc[1, "title"] == "Toy Story (1995)"
    train, test = canonical_split("ua", data_dir=ml100k_root / "ml-100k")
    assert len(test) == 9430 and test.frame.groupby("user").size().eq(10).all()


def test_a_data_dir_that_is_a_file_or_a_partial_set_is_named(tmp_path):
    from collabkit.data.movielens import DatasetIntegrityError, fetch_movielens

    not_a_folder = tmp_path / "ok.csv"
    not_a_folder.write_text("user,item,rating\n")
    with pytest.raises(DatasetIntegrityError, match="ok.csv is a file, not a folder"):
        fetch_movielens("ml-100k", not_a_folder, progress=False, base_url="http://127.0.0.1:9")
    partial = tmp_path / "data" / "ml-100k"
    partial.mkdir(parents=True)
    (partial / "u.data").write_text("1\t1\t5\t0\n")
    with pytest.raises(DatasetIntegrityError, match="lacks u.item") as e:
        fetch_movielens("ml-100k", tmp_path / "data", progress=False, base_url="http://127.0.0.1:9")
    assert "u.data" not in str(e.value).split("lacks")[1]
