"""The live model holder: one reference, swapped atomically, polled for changes made elsewhere.

A request reads ``live.current`` once and uses that snapshot to the end, so a promotion never
mixes two models in one response. A new version is loaded completely (weights, items, fold-in
prior, onboarding questions) before the reference changes: no request waits or fails on a swap.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from collabkit.serve import store
from collabkit.serve.rollout import NotServable, checked_load  # issue 25

if TYPE_CHECKING:
    from collabkit.serve.recommender import Served

log = logging.getLogger("collabkit.serve")


class Live:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.current: Served | None = None
        self.error: str | None = None  # issue 25: why the store's live version is not the one served
        self._failed: int | None = None  # issue 25: that version, not retried on every poll
        self._load_lock = threading.Lock()  # one load at a time (API promote vs poller)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def version(self) -> int | None:
        served = self.current
        return None if served is None else served.version

    def load(self, version: store.ModelVersion) -> Served:
        from collabkit.serve.recommender import load_served

        with Session(self.engine) as session:
            return load_served(version, session)

    def sync(self) -> bool:
        """Serve the store's live version if it is not the one served; True when it swapped."""
        with self._load_lock:
            with Session(self.engine) as session:
                version = store.live_version(session)
            if version is None or version.id in (self.version, self._failed):  # issue 25
                return False
            try:  # issue 25: fully loaded, and answering a smoke request, before anyone sees it
                served = checked_load(self.load, version)
            except NotServable as e:
                self._failed, self.error = version.id, str(e)
                log.error("%s; still serving version %s", e, self.version)
                return False
            self.current, self.error = served, None  # the swap: one reference assignment
            log.info("serving model version %d (%s)", version.id, version.path)
            return True

    def activate(self, version_id: int) -> store.ModelVersion:
        """Load ``version_id``, then make it live in the store and here (promote, rollback)."""
        with self._load_lock:
            with Session(self.engine) as session:
                target = session.get(store.ModelVersion, version_id)
                if target is None:
                    raise LookupError(f"no model version {version_id}")
            # issue 25: a folder that does not load or answer raises NotServable, changing nothing
            served = checked_load(self.load, target)
            with Session(self.engine, expire_on_commit=False) as session:
                version = store.set_live(session, version_id)
            self.current, self.error, self._failed = served, None, None
            return version

    def start_polling(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._thread = threading.Thread(target=self._poll, args=(seconds,), daemon=True)
        self._thread.start()

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.sync()
            except Exception:  # a bad folder must not kill the poller; the old model stays
                log.exception("could not load the live model version")

    def stop(self) -> None:
        self._stop.set()
