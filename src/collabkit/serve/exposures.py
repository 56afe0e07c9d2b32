"""Buffered exposure log: what each recommendation response showed, written in batches.

Rows wait in memory until ``buffer`` of them are pending (the request that fills the buffer
writes it) or ``flush_seconds`` have passed (a background thread writes it). Writing holds the
lock, so pending rows never exceed ``buffer``: a crash loses at most ``buffer`` exposures (and at
most the last ``flush_seconds`` of them when traffic is light). Ratings are never buffered.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from collabkit.serve.store import add_exposures

log = logging.getLogger("collabkit.serve")


class ExposureLog:
    def __init__(self, engine: Engine, buffer: int = 1000, flush_seconds: float = 1.0) -> None:
        self.engine, self.buffer, self.flush_seconds = engine, max(1, buffer), flush_seconds
        self.pending: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def log(self, rows: list[dict[str, Any]]) -> None:
        """Queue exposure rows; writes them first when the buffer is full."""
        with self.lock:
            self.pending.extend(rows)
            if len(self.pending) >= self.buffer:
                self._write()

    def flush(self) -> None:
        with self.lock:
            self._write()

    def _write(self) -> None:
        if not self.pending:
            return
        try:
            with Session(self.engine) as session:
                add_exposures(session, self.pending)
            self.written += len(self.pending)
        except Exception:  # the exposure log must never fail a recommendation
            log.exception("exposure log: dropped %d rows", len(self.pending))
        self.pending = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="exposure-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
