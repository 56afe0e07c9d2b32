"""`recommend-all --out` is written whole: a SIGKILL at any point leaves the old file or the new one."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
import torch
from conftest import make_ratings

from collabkit.checkpoint import save_model
from collabkit.cli import app
from collabkit.models.dot import DotProductBias


def _run(model_dir, out, n: int) -> None:
    app(["recommend-all", str(model_dir), "--out", str(out), "-n", str(n), "--include-seen", "--no-explain", "--json"],
        standalone_mode=False)  # fmt: skip


def _forked(work, kill_after: float | None) -> float:
    """Run ``work`` in a forked child; SIGKILL it after ``kill_after`` s. Seconds it ran (0: not killed)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            torch.set_num_threads(1)  # OpenMP's pool does not survive a fork
            work()
        finally:
            os._exit(0)
    if kill_after is None:
        os.waitpid(pid, 0)
        return time.perf_counter() - start
    time.sleep(kill_after)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return float(os.WIFSIGNALED(status))


@pytest.mark.slow
def test_sigkill_during_recommend_all_leaves_old_or_new_file(tmp_path, capsys):
    model = DotProductBias.from_data(make_ratings(2000, 200, density=0.02), n_factors=8)
    save_model(model, tmp_path / "m")
    out = tmp_path / "recs.csv"
    _run(tmp_path / "m", out, 30)
    old = out.read_bytes()
    took = _forked(lambda: _run(tmp_path / "m", out, 40), None)  # a whole run, as a child
    new = out.read_bytes()
    capsys.readouterr()
    assert old != new and len(new) > len(old)
    rng, kills, seen = random.Random(1), 0, set()
    for _ in range(120):  # at least 24 kills that left each of the two outcomes (timing varies)
        if kills >= 24 and len(seen) == 2:
            break
        out.write_bytes(old)
        delay = rng.uniform(0.3 * took, 1.3 * took)  # mostly inside the write, at the end
        status = _forked(lambda: _run(tmp_path / "m", out, 40), delay)
        now = out.read_bytes()
        whole = now in (old, new)
        assert whole, f"a partial file of {len(now)} bytes"
        if status:
            kills += 1
            seen.add("old" if now == old else "new")
            if now == old and "new" not in seen:
                took *= 1.1  # every kill came before the rename so far: reach further
        else:
            took *= 0.9  # the child finished first: the machine is faster than the first run
    assert kills >= 24 and seen == {"old", "new"}
