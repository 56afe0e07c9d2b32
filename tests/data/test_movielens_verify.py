# ruff: noqa: F811  (the fixtures of test_movielens are imported and then requested by name)
"""Downloads are extracted only when verified (or the user says --no-verify); zip bombs are refused."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from test_movielens import DATASETS, Server, fake_zip, isolated, md5, server, use_spec  # noqa: F401
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.data.movielens import DownloadError, fetch_movielens, find_dataset_dir


def test_missing_md5_file_refuses_to_extract(fake_zip, server, tmp_path, monkeypatch):
    use_spec(monkeypatch, md5_url=DATASETS["ml-100k"].url + ".md5")
    server.files["ml-100k.zip"] = fake_zip
    with pytest.raises(DownloadError, match=r"ml-100k.zip.md5.*HTTP 404.*verify=False.*--no-verify"):
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url)
    assert find_dataset_dir("100k", tmp_path / "dl") is None
    assert "ml-100k.zip" not in server.requests  # refused before downloading anything


def test_no_verify_accepts_an_unverified_download_with_a_warning(fake_zip, server, tmp_path, monkeypatch):
    use_spec(monkeypatch, md5_url=DATASETS["ml-100k"].url + ".md5")
    server.files["ml-100k.zip"] = fake_zip
    with pytest.warns(UserWarning, match="ml-100k.zip.md5"):
        fetch_movielens("100k", data_dir=tmp_path / "dl", progress=False, base_url=server.url, verify=False)
    assert find_dataset_dir("100k", tmp_path / "dl") is not None


def test_cli_no_verify_flag(fake_zip, server, tmp_path, monkeypatch):
    use_spec(monkeypatch, md5_url=DATASETS["ml-100k"].url + ".md5")
    monkeypatch.setenv("COLLABKIT_MOVIELENS_URL", server.url)
    server.files["ml-100k.zip"] = fake_zip
    runner = CliRunner()
    refused = runner.invoke(app, ["datasets", "download", "ml-100k", "--data-dir", str(tmp_path / "dl")])
    assert refused.exit_code == 2 and "--no-verify" in " ".join(refused.output.split())
    ok = runner.invoke(app, ["datasets", "download", "ml-100k", "--data-dir", str(tmp_path / "dl"), "--no-verify"])
    assert ok.exit_code == 0, ok.output


def test_unverifiable_zip_already_on_disk_is_not_extracted(fake_zip, server, tmp_path, monkeypatch):
    use_spec(monkeypatch, md5_url=DATASETS["ml-100k"].url + ".md5", size=None, md5=None)
    root = tmp_path / "dl"
    root.mkdir()
    (root / "ml-100k.zip").write_bytes(fake_zip)
    with pytest.raises(DownloadError, match="cannot be verified"):
        fetch_movielens("100k", data_dir=root, progress=False, base_url=server.url)
    assert find_dataset_dir("100k", root) is None


def test_zip_on_disk_is_checked_against_the_published_md5(fake_zip, server, tmp_path, monkeypatch):
    use_spec(monkeypatch, md5_url=DATASETS["ml-100k"].url + ".md5", size=None, md5=None)
    server.files["ml-100k.zip.md5"] = f"MD5 (ml-100k.zip) = {md5(fake_zip)}\n".encode()
    root = tmp_path / "dl"
    root.mkdir()
    (root / "ml-100k.zip").write_bytes(fake_zip)
    path = fetch_movielens("100k", data_dir=root, progress=False, base_url=server.url)
    assert (path / "u.data").is_file() and server.requests == ["ml-100k.zip.md5"]


def _bomb(size: int) -> bytes:
    buf = io.BytesIO()
    zf = zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
    with zf, zf.open("ml-100k/u.data", "w") as fh:
        for _ in range(size >> 20):
            fh.write(bytes(1 << 20))
    return buf.getvalue()


def test_zip_bomb_is_refused_before_extracting(tmp_path, monkeypatch, fake_zip):
    bomb = _bomb(256 << 20)
    assert len(bomb) < 2 << 20
    root = tmp_path / "dl"
    root.mkdir()
    (root / "ml-100k.zip").write_bytes(bomb)
    use_spec(monkeypatch, size=len(bomb), md5=md5(bomb))  # even a "verified" zip is bounded
    with pytest.raises(DownloadError, match="expands to"):
        fetch_movielens("100k", data_dir=root, progress=False, base_url="http://127.0.0.1:9")
    assert sorted(p.name for p in Path(root).iterdir()) == ["ml-100k.zip"]
