"""Shared fixtures: small generated ratings everywhere, the real ML-100k when $COLLABKIT_TEST_DATA has it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collabkit.data.interactions import Ratings


def make_ratings(n_users: int = 60, n_items: int = 40, density: float = 0.3, n_factors: int = 3, seed: int = 0) -> Ratings:
    """Ratings 1..5 from a hidden low-rank taste model plus biases, so models have something to learn."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n_users, n_factors))
    V = rng.normal(size=(n_items, n_factors))
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # everyone rates something
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True  # every item is rated
    u, i = np.nonzero(mask)
    score = 3 + (U[u] * V[i]).sum(1) * 0.6 + bu[u] + bi[i] + rng.normal(0, 0.3, len(u))
    frame = pd.DataFrame(
        {
            "user": u + 1,
            "item": i + 101,
            "rating": np.clip(np.round(score), 1, 5).astype(np.float32),
            "timestamp": rng.integers(8e8, 9e8, len(u)),
        }
    )
    items = pd.DataFrame({"title": [f"Movie {k} ({1980 + k % 20})" for k in range(n_items)]}, index=pd.Index(np.arange(n_items) + 101, name="item"))
    return Ratings(frame, items=items, scale=(1.0, 5.0), name="synthetic")


def run_cli(*args: object, code: int = 0) -> str:
    """Run ``collabkit ARGS`` in-process and check its exit code: its stdout, or on an expected
    failure everything it printed (the error)."""
    from typer.testing import CliRunner

    from collabkit.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.output


@pytest.fixture
def tiny() -> Ratings:
    return make_ratings()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder holding ml-100k, from $COLLABKIT_TEST_DATA; tests that need it skip without it."""
    root = os.environ.get("COLLABKIT_TEST_DATA")
    if not root or not (Path(root) / "ml-100k" / "u.data").exists():
        pytest.skip("set COLLABKIT_TEST_DATA to a folder holding ml-100k (e.g. ../shared/data)")
    return Path(root)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the real ML-100k are slow by definition: ``make test`` runs them, plain
    ``pytest`` (the fast tier) does not."""
    for item in items:
        if "data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def peak_rss(fn, *args, **kw) -> tuple[object, int]:
    """(fn's result, the bytes by which the process's peak resident memory rose while it ran).

    Linux only: writing 5 to /proc/self/clear_refs resets the peak (VmHWM) to the current RSS,
    so the rise counts every allocation fn made, torch's included (tracemalloc sees none of them).
    glibc is first told to map every block of 64 KB or more on its own (mallopt), so a freed block
    goes back to the system and cannot hide a later allocation inside already-resident memory.
    """
    _map_large_blocks()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pytest.skip("peak memory needs a writable /proc/self/clear_refs (Linux)")
    before = _status_kb("VmRSS")
    out = fn(*args, **kw)
    return out, (_status_kb("VmHWM") - before) * 1024


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def _map_large_blocks() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: fixed at 64 KB
    except (OSError, AttributeError):
        pass


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """End the run with what it did not run: each reason tests were skipped for (a missing
    Chromium or PostgreSQL, no GPU, no ML-100k), how many, and what would run them."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return
    terminalreporter.section("skipped tiers (not run)")
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{n:4d} skipped: {reason}")
    terminalreporter.write_line("each line says what its tests need; as root, `make test` installs Chromium and PostgreSQL itself")
