"""Crash a writer at every step that touches the file system, and at random times.

A writer runs in forked children; in the k-th child the k-th call to one of the patched steps
(fsync, rename, replace, unlink, rmdir and any ``extra`` functions) SIGKILLs the child just
before or just after the call. Every boundary of the write is hit once, whatever the machine's
speed: timing-based kills missed the instant after the final rename on fast and slow machines.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from types import ModuleType

import torch

STEPS: list[tuple[ModuleType, str]] = [
    (os, name) for name in ("fsync", "rename", "replace", "unlink", "rmdir")
]


def _child(
    write: Callable[[], None],
    steps: list[tuple[object, str]],
    kill_at: int | None,
    after: bool,
    report: int | None,
) -> None:
    """Run ``write`` with every step counted; SIGKILL at step ``kill_at``. Never returns."""
    try:
        torch.set_num_threads(1)  # OpenMP's pool does not survive a fork
        calls = [0]

        def counted(original: Callable) -> Callable:
            def step(*args, **kwargs):
                calls[0] += 1
                hit = calls[0] == kill_at
                if hit and not after:
                    os.kill(os.getpid(), signal.SIGKILL)
                result = original(*args, **kwargs)
                if hit:
                    os.kill(os.getpid(), signal.SIGKILL)
                return result

            return step

        for owner, name in steps:
            setattr(owner, name, counted(getattr(owner, name)))
        write()
        if report is not None:
            os.write(report, str(calls[0]).encode())
    finally:
        os._exit(0)


def _run(write, steps, kill_at: int | None = None, after: bool = False) -> tuple[int, int]:
    """Fork a child that runs ``write``: (its wait status, steps it counted when not killed)."""
    read, report = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(write, steps, kill_at, after, report)
    os.close(report)
    with os.fdopen(read) as fh:
        counted = fh.read()
    _, status = os.waitpid(pid, 0)
    return status, int(counted or 0)


def kill_at_every_step(
    write: Callable[[], None], check: Callable[[], str], extra: list[tuple[object, str]] = ()
) -> list[str]:
    """SIGKILL ``write`` before and after each of its file-system steps; ``check()`` after each kill.

    ``check`` asserts the target is whole, resets it, and says which version it found ("old" or
    "new"). Returns those answers in step order. Forking keeps this process's imports, so a kill
    costs milliseconds.
    """
    steps = [*STEPS, *extra]
    status, n_steps = _run(write, steps)
    assert os.WIFEXITED(status) and n_steps > 0, "the writer took no file-system step"
    assert check() == "new", "an uninterrupted write did not produce the new version"
    outcomes = []
    for k in range(1, n_steps + 1):
        for after in (False, True):
            status, _ = _run(write, steps, kill_at=k, after=after)
            assert os.WIFSIGNALED(status), f"step {k} was not reached"
            outcomes.append(check())
    return outcomes


def kill_at_random_times(write: Callable[[], None], check: Callable[[], str], n_kills: int = 20, seed: int = 0) -> list[str]:
    """SIGKILL ``write`` after random delays until ``n_kills`` children died mid-run; ``check()``
    after each. The delays span one timed run, shrinking when a child finishes first (the
    machine got faster); which version each kill left is returned but not required, since the
    instant a random kill lands depends on the machine (``kill_at_every_step`` covers each step).
    """
    rng = random.Random(seed)
    start = time.perf_counter()
    status, _ = _run(write, [])
    took = time.perf_counter() - start
    check()
    outcomes: list[str] = []
    for _ in range(50 * n_kills):
        if len(outcomes) >= n_kills:
            break
        pid = os.fork()
        if pid == 0:
            _child(write, [], None, False, None)
        time.sleep(rng.uniform(0, took))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        result = check()
        if os.WIFSIGNALED(status):
            outcomes.append(result)
        else:
            took *= 0.8
    assert len(outcomes) >= n_kills, f"only {len(outcomes)} of the children were killed mid-run"
    return outcomes
