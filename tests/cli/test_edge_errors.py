"""Issue 28's cases at the command line: every bad input is one error line with exit 2, found before
the work where it can be, and no user's file is lost."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from collabkit import files
from collabkit.cli import app
from tests.conftest import make_ratings

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})


def _error(*args) -> str:
    """The one error line (stderr; progress goes to stdout) of a command that must fail cleanly."""
    return _failed(_run(*args))


def _failed(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs as root (who ignores permissions),
    else a folder without write permission."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=False, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("a read-only folder as root needs mount")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


# --- model options: flags and specs --------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--n-factors", "-1"], "--n-factors must be a whole number >= 1, got -1"),
        (["--n-factors", "100000000"], "would need about"),  # refused before 37 GiB is allocated
        (["--model", "nn", "--layers", "0"], "--layers must be a tuple of whole numbers >= 1"),
        (["--model", "nn", "--layers", "-5"], "--layers must be a tuple of whole numbers >= 1"),
        (["--model", "nn", "--layers", "a,b"], "--layers takes whole numbers separated by commas"),
        (["--model", "dot-bias(n_factors='x')"], "got 'x' (str)"),
        (["--model", "dot-bias(n_factors=2.5)"], "got 2.5"),
        (["--model", "dot-bias(n_factors=True)"], "got True (bool)"),
        (["--model", "dot-bias(y_range='ab')"], "y_range must be"),
        (["--model", "dot-bias(y_range=(5, 1))"], "low < high"),
        (["--model", "dot-bias(lr_max='1e-3')"], "lr_max must be a finite number"),
        (["--model", "nn(layers=(1000000, 1000000))"], "would need about"),
        (["--model", "dot-bias("], "at column 10"),
        (["--model", "dot-bias(n_factors=3, n_factors=4)"], "given again"),
        (["--model", "dot-bias(n_factors=3)", "--n-factors", "4"], "already sets; give it once"),
        (["--n-factors", "3", "--n-factors", "4"], "--n-factors is given twice"),
        (["--n-factors", "abc"], "Invalid value for '--n-factors'"),
        (["--model", "ease", "--lr", "0.1"], "does not apply to ease"),
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--valid-pct", "0"], "--valid-pct must be between 0 and 1"),  # it became 0.2
        (["--valid-pct", "1.5"], "--valid-pct must be between 0 and 1"),
    ],
)
def test_train_refuses_bad_options_in_one_line(ratings, flags, message):
    result = _run("train", "--ratings", ratings, "--epochs", "1", "--no-progress", *flags)
    assert message in _failed(result) and "train_loss" not in result.output  # before any epoch


def test_a_run_that_trains_prints_its_epochs(ratings):
    """(What the refusals above are checked against: a run that trains shows train_loss.)"""
    assert "train_loss" in _run("train", "--ratings", ratings, "--epochs", "1", "--no-progress").output


def test_a_split_that_leaves_a_part_empty_is_an_error(tmp_path):
    one = tmp_path / "one.csv"
    make_ratings().frame.iloc[:1].to_csv(one, index=False)
    assert "leaves the test part empty" in _error("train", "--ratings", one, "--no-progress")


# --- outputs: owned folders, checked before the work, OS errors ---------------------------------
def test_a_report_never_goes_into_a_model_folder(model_dir):
    before = sorted(p.name for p in model_dir.iterdir())
    assert "holds a collabkit model, not a report" in _error("report", model_dir, "--out", model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == before


def test_a_report_replaces_only_a_report(model_dir, tmp_path):
    out = tmp_path / "rep"
    assert _run("report", model_dir, "--out", out, "--baselines", "").exit_code == 0
    assert files.folder_holds(out) == "report"
    assert _run("report", model_dir, "--out", out, "--baselines", "").exit_code == 0  # again: fine
    (out / "notes.txt").write_text("mine")
    assert "also holds notes.txt" in _error("report", model_dir, "--out", out, "--baselines", "")
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "command",
    [
        lambda m, d, r: ["recommend-all", m, "--out", d / "recs.csv"],
        lambda m, d, r: ["report", m, "--out", d / "rep", "--baselines", ""],
        lambda m, d, r: ["lr-find", "--ratings", r, "--plot", d / "lr.png"],
        lambda m, d, r: ["pca", m, "--png", d / "map.png", "--html", d / "map.html"],
    ],
    ids=["recommend-all", "report", "lr-find", "pca"],
)
def test_an_unwritable_output_is_refused_before_the_work(model_dir, ratings, readonly_dir, command):
    line = _error(*command(model_dir, readonly_dir, ratings))
    assert line.startswith(f"error: cannot write {readonly_dir}") and ("read-only" in line or "permission" in line)


def test_a_full_disk_is_one_line_and_keeps_the_old_file(model_dir, tmp_path, monkeypatch):
    out = tmp_path / "recs.csv"
    out.write_text("user,rank,item,score\n1,1,2,4.5\n")  # an earlier recommend-all output

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "fsync_file", full)
    assert _error("recommend-all", model_dir, "--out", out) == f"error: cannot write {out}: no space left on the device"
    assert out.read_text() == "user,rank,item,score\n1,1,2,4.5\n"
    line = _error("report", model_dir, "--out", tmp_path / "rep", "--baselines", "")
    assert line.startswith(f"error: cannot write {tmp_path / 'rep'}") and line.endswith("no space left on the device")


@pytest.mark.slow
def test_a_file_size_limit_while_saving_weights_is_one_line(ratings, tmp_path):
    """EFBIG for real: the child runs under RLIMIT_FSIZE (Python ignores SIGXFSZ)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "m"
    done = subprocess.run(
        [sys.executable, "-m", "collabkit.cli", "train", "--ratings", str(ratings), "--epochs", "1",
         "--n-factors", "40", "--no-progress", "--out", str(out)],
        check=False, capture_output=True, text=True, preexec_fn=limit, env={**os.environ, "COLUMNS": "1000"},
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: cannot write {out}: file too large (over the file-size limit, see ulimit -f)"


# --- ids, interpret options, the store URL ---------------------------------------------------------
def test_ids_are_text_never_numbers(model_dir):
    line = _error("predict", model_dir, "1e400", "50")
    assert "unknown user '1e400'" in line
    assert "unknown item '1e2'" in _error("predict", model_dir, "1", "1e2")  # not item 100


@pytest.mark.parametrize(
    "args",
    [["biases", "{m}", "--top", "-5"], ["pca", "{m}", "-n", "-4"], ["similar", "{m}", "101", "-k", "0"]],
)
def test_negative_counts_are_refused_not_read_as_all_but(model_dir, args):
    line = _error(*[a.format(m=model_dir) for a in args])
    assert "Invalid value" in line and "greater than or equal to" in line


@pytest.mark.parametrize(
    ("url", "message"),
    [("mysql://x", "a 'mysql' URL"), ("not a url", "'not a url', not a URL")],
)
def test_db_upgrade_refuses_a_store_it_cannot_open(url, message):
    assert message in _error("db", "upgrade", "--db", url)
