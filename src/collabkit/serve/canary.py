"""Canary: a version first serves a fraction of the users, beside the live one, and a rule rolls
it back when it does worse with them (or promotes it to everyone when it does not).

**Arms.** ``arm(user, fraction)`` puts a user in the canary when the first 8 bytes of
sha256(user id), read as a number in [0, 1), are below ``fraction``: the same user always lands
in the same arm, and raising the fraction keeps everyone already in the canary there.

**Figures** of each arm since the canary started (``figures``), from the exposure log (which
version showed which item to whom) and the ratings written after:
    lists           recommendation lists shown
    shown           distinct (user, item) pairs shown
    rated           of those, the pairs the user rated after the item was first shown
    rating_through  rated / shown
    mean_rating     mean of those ratings (``sd``: their standard deviation)

**The rule** (``verdict``), once both arms have ``min_rated`` rated pairs: with
gap = mean_live - mean_canary and se = sqrt(sd_live^2 / n_live + sd_canary^2 / n_canary),
    roll back   when gap > tolerance and gap > Z se   (worse by more than the tolerance, and
                                                       surely worse than live)
    promote     when gap + Z se <= tolerance          (surely not worse by more than the tolerance)
    wait        otherwise (an admin may still promote or roll back by hand).
Z = 1.645: one-sided 95%.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from collabkit.serve import store
from collabkit.serve.rollout import NotServable, checked_load

log = logging.getLogger("collabkit.serve")
Z = 1.645


def arm(user: str, fraction: float) -> Literal["canary", "live"]:
    """The arm ``user`` is in when a canary serves ``fraction`` of the users (deterministic)."""
    point = int.from_bytes(hashlib.sha256(user.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "canary" if point < fraction else "live"


@dataclass
class Figures:
    """One arm's online figures (module docstring)."""

    version: int
    lists: int = 0
    users: int = 0
    shown: int = 0
    rated: int = 0
    rating_through: float | None = None
    mean_rating: float | None = None
    sd: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    action: Literal["wait", "roll back", "promote"]
    reason: str
    gap: float | None = None  # mean_live - mean_canary (positive: the canary does worse)
    se: float | None = None


def verdict(live: Figures, canary: Figures, tolerance: float, min_rated: int) -> Verdict:
    """The rule (module docstring) over both arms' figures."""
    short = [f"{name} has {f.rated}" for name, f in (("live", live), ("canary", canary)) if f.rated < min_rated]
    if short:
        return Verdict("wait", f"each arm needs {min_rated} rated recommendations; " + ", ".join(short))
    gap = live.mean_rating - canary.mean_rating
    se = math.sqrt(live.sd**2 / live.rated + canary.sd**2 / canary.rated)
    said = (f"canary mean rating {canary.mean_rating:.3f} vs live {live.mean_rating:.3f} "
            f"(gap {gap:+.3f}, standard error {se:.3f}, tolerance {tolerance})")  # fmt: skip
    if gap > tolerance and gap > Z * se:
        return Verdict("roll back", "worse beyond the tolerance: " + said, gap, se)
    if gap + Z * se <= tolerance:
        return Verdict("promote", "not worse beyond the tolerance: " + said, gap, se)
    return Verdict("wait", "not sure yet: " + said, gap, se)


# --- the figures, from the store ------------------------------------------------------------------
def figures(session: Session, versions: list[int], since: float) -> dict[int, Figures]:
    """Each version's figures over exposures shown from ``since`` on."""
    E, R = store.Exposure, store.Rating
    window = and_(E.shown_at >= since, E.model_version.in_(versions))
    out = {v: Figures(v) for v in versions}
    lists = select(E.model_version, E.user_id, E.shown_at).where(window).distinct().subquery()
    for v, n in session.execute(select(lists.c.model_version, func.count()).group_by(lists.c.model_version)):
        out[v].lists = int(n)
    pairs = (select(E.model_version.label("v"), E.user_id.label("u"), E.item_id.label("i"),
                    func.min(E.shown_at).label("first"))
             .where(window).group_by(E.model_version, E.user_id, E.item_id).subquery())  # fmt: skip
    q = select(pairs.c.v, func.count(), func.count(distinct(pairs.c.u))).group_by(pairs.c.v)
    for v, n, users in session.execute(q):
        out[v].shown, out[v].users = int(n), int(users)
    rated = (
        select(pairs.c.v, func.count(), func.avg(R.value), func.avg(R.value * R.value))
        .join(R, and_(R.user_id == pairs.c.u, R.item_id == pairs.c.i, R.written_at >= pairs.c.first))
        .group_by(pairs.c.v)
    )
    for v, n, mean, square in session.execute(rated):
        f = out[v]
        f.rated, f.mean_rating = int(n), float(mean)
        f.sd = math.sqrt(max(float(square) - float(mean) ** 2, 0.0) * n / max(n - 1, 1))
    for f in out.values():
        f.rating_through = f.rated / f.shown if f.shown else None
    return out


# --- the store's canary: start, end, read --------------------------------------------------------
def running(session: Session) -> store.Canary | None:
    return session.scalar(select(store.Canary).where(store.Canary.status == "running"))


def latest(session: Session) -> store.Canary | None:
    return session.scalar(select(store.Canary).order_by(store.Canary.id.desc()).limit(1))


def start(engine: Engine, version: int, fraction: float, tolerance: float, min_rated: int,
          load: Any) -> store.Canary:  # fmt: skip
    """Serve ``version`` to ``fraction`` of the users beside the live one, once it has loaded
    and answered (``load(version)`` -> an Engine; NotServable otherwise). LookupError: no such
    version; ValueError: nothing live, it is live, or a canary already runs."""
    with Session(engine, expire_on_commit=False) as session:
        target = session.get(store.ModelVersion, version)
        if target is None:
            raise LookupError(f"no model version {version}")
        live = store.live_version(session)
        if live is None or live.id == version:
            raise ValueError(f"version {version} is live already" if live else "no version is live to compare with")
        other = running(session)
        if other is not None:
            raise ValueError(f"version {other.version} is already a canary: promote or roll it back first")
    checked_load(load, target)
    with Session(engine, expire_on_commit=False) as session:
        row = store.Canary(version=version, live_version=live.id, fraction=fraction, tolerance=tolerance,
                           min_rated=min_rated, status="running", reason="", started_at=store.now())  # fmt: skip
        session.add(row)
        session.commit()
        return row


def end(engine: Engine, outcome: Literal["promoted", "rolled back"], reason: str) -> store.Canary | None:
    """End the running canary (promoted: its version becomes live); the ended row, or None."""
    with Session(engine, expire_on_commit=False) as session:
        row = running(session)
        if row is None:
            return None
        if outcome == "promoted":
            store.set_live(session, row.version)
        row.status, row.reason, row.ended_at = outcome, reason[:2000], store.now()
        session.commit()
        log.warning("canary of version %d %s: %s", row.version, outcome, reason)
        return row


# --- in the server: the loaded canary, the request path's choice, the rule on a timer ------------
@dataclass
class Loaded:
    row: int  # the canaries row
    version: int
    live_version: int
    fraction: float
    served: Any  # an engine.Engine


class Canaries:
    """The canary this server serves beside ``live`` (a ``serve.live.Live``), noticed in the store."""

    def __init__(self, engine: Engine, live: Any, flush: Any = None) -> None:
        self.engine, self.live, self.flush = engine, live, flush or (lambda: None)
        self.current: Loaded | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def route(self, user: str, served: Any) -> Any:
        """The Engine that answers ``user``: the canary's for users in its arm, else ``served``."""
        c = self.current
        if c is None or c.live_version != served.version or arm(user, c.fraction) == "live":
            return served
        return c.served

    def sync(self) -> None:
        """Load the store's running canary (or drop the one served when none runs)."""
        with self._lock:
            with Session(self.engine, expire_on_commit=False) as session:
                row = running(session)
                target = session.get(store.ModelVersion, row.version) if row is not None else None
            if row is None:
                self.current = None
                return
            if self.current is not None and self.current.row == row.id:
                self.current.fraction = row.fraction
                return
            try:
                served = checked_load(self.live.load, target)
            except NotServable as e:
                self.error = str(e)
                end(self.engine, "rolled back", f"this server could not load it: {e}")
                self.current = None
                return
            self.current, self.error = Loaded(row.id, row.version, row.live_version, row.fraction, served), None

    def check(self) -> Verdict | None:
        """Apply the rule to the running canary (rolling it back or promoting it); its verdict."""
        self.flush()  # exposures still buffered count too
        with Session(self.engine) as session:
            row = running(session)
            if row is None:
                return None
            live = store.live_version(session)
            if live is None or live.id != row.live_version:
                found = Verdict("roll back", "the live version changed while the canary ran")
            else:
                f = figures(session, [row.live_version, row.version], row.started_at)
                found = verdict(f[row.live_version], f[row.version], row.tolerance, row.min_rated)
        if found.action != "wait":
            end(self.engine, "promoted" if found.action == "promote" else "rolled back", "by the rule: " + found.reason)
            self.live.sync()
            self.sync()
        return found

    def start_polling(self, seconds: float) -> None:
        if seconds > 0:
            threading.Thread(target=self._poll, args=(seconds,), name="canary", daemon=True).start()

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.sync()
                self.check()
            except Exception:  # the rule must not stop: the canary stays as it is
                log.exception("canary check failed")

    def stop(self) -> None:
        self._stop.set()
