"""One rule for ids and values, wherever they enter the store: the API, onboarding, `db import`.

Ids are text exactly as given: 1 to ``ID_LENGTH`` characters of valid UTF-8 with no control
characters (C0 and C1; NUL included: PostgreSQL refuses it), no invisible ones (zero-width space,
byte-order mark, direction overrides, soft hyphen: "50" and "50" + U+200B would look like one id)
and no ``/`` (an API path could not name the id, so it could be written but never read back or
forgotten). ``"5e1"`` is the id ``5e1``, never the number 50: an id is matched to a model's ids
only when it is the text of one of them (``exact``).

A value must be finite and on the store's **scale**, which the store records (``Scale``: from the
imported model or data, e.g. 1 to 5 in steps of 1, or 0.5 to 5 in half steps; interactions are
counts >= 0). Rows already stored that break the rule (written before it, or by hand) are never
fatal: ``usable`` marks them, and the store skips and counts them when it reads all ratings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

ID_LENGTH = 64  # longest user or item id accepted (API, import and database agree)
#: what no id may hold: control characters (C0, DEL, C1), invisible ones, and "/"
NOT_IN_IDS = r"\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff/"
# no blank at either end: files' ids are read stripped, so " 5" could never meet its ratings there
ID_PATTERN = rf"^[^{NOT_IN_IDS}\s](?:[^{NOT_IN_IDS}]*[^{NOT_IN_IDS}\s])?$"  # UTF-8 is checked before this
TEXT_PATTERN = rf"^[^{NOT_IN_IDS}]+$"  # search text: the same characters, blanks anywhere
BOUND = 1e6  # no value beyond this, even before a store has a scale
_CONTROL = re.compile(rf"[{NOT_IN_IDS}]")
_NOT_UTF8 = re.compile(r"[\ud800-\udfff]")  # lone surrogates: a str that has no UTF-8 encoding


@dataclass(frozen=True)
class Scale:
    """The values a store accepts: low..high (``high`` None: no top), on ``step`` when set."""

    low: float
    high: float | None
    step: float | None = None
    kind: Literal["ratings", "interactions"] = "ratings"
    source: str = ""  # where it came from: "model", "data", "set by hand"

    def describe(self) -> str:
        if self.kind == "interactions":
            return "an interaction count >= 0"
        steps = f" in steps of {_num(self.step)}" if self.step else ""
        return f"from {_num(self.low)} to {_num(self.high)}{steps}"

    def ok(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the values this scale accepts (finite, in range, on a step)."""
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):  # NaN and inf compare False: refused below anyway
            good = np.isfinite(v) & (v >= self.low) & (np.abs(v) <= BOUND)
            if self.high is not None:
                good &= v <= self.high
            if self.step:
                k = (v - self.low) / self.step
                good &= np.abs(k - np.round(k)) < 1e-9  # round-off of steps such as 0.1, not 4.9999999
        return good

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Scale:
        return cls(**{k: obj[k] for k in ("low", "high", "step", "kind", "source") if k in obj})


#: what a store accepts before it has recorded a scale: any finite value within +-BOUND
UNRECORDED = Scale(-BOUND, BOUND, None, "ratings", "none recorded yet")


def _num(x: float | None) -> str:
    return "none" if x is None else (str(int(x)) if float(x).is_integer() else f"{x:g}")


def infer_step(values: np.ndarray) -> float | None:
    """1 when every value is whole, 0.5 when every value is a half; otherwise no step."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    for step in (1.0, 0.5):
        if len(v) and np.all(np.abs(v / step - np.round(v / step)) < 1e-6):
            return step
    return None


def scale_of(low: float, high: float, values: np.ndarray | None = None, *, ratings: bool = True,
             source: str = "") -> Scale:  # fmt: skip
    """A ratings scale low..high (the step inferred from ``values``), or counts for interactions."""
    if not ratings:
        return Scale(0.0, None, None, "interactions", source)
    step = infer_step(values) if values is not None else None
    if step is not None and not (float(low) / step).is_integer():
        step = None  # a step that does not start at the bottom of the scale is no step
    return Scale(float(low), float(high), step, "ratings", source)


# --- ids ------------------------------------------------------------------------------------------
def id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid id, or None when it is one."""
    if not isinstance(value, str):
        return f"an id is text, not {type(value).__name__}"
    if not value:
        return "an id must not be empty"
    if len(value) > ID_LENGTH:
        return f"an id has at most {ID_LENGTH} characters, this one has {len(value)}"
    if _NOT_UTF8.search(value):
        return "an id must be valid UTF-8 text"
    if "/" in value:
        return "an id must not hold '/' (an API path could not name it)"
    if _CONTROL.search(value):
        return "an id must not hold control or invisible characters (NUL, newline, zero-width space, byte-order mark, ...)"
    if value != value.strip():
        return "an id must not start or end with a space or other blank (ids read from files never do)"
    return None


def utf8_problem(raw: bytes) -> str | None:
    """Why a percent-decoded path or query string is not UTF-8 text, or None."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"byte {e.start} ({raw[e.start:e.start + 1]!r}) is not valid UTF-8: ids are UTF-8 text"
    return None


# --- values ---------------------------------------------------------------------------------------
def value_problem(scale: Scale, value: float) -> str | None:
    """Why ``value`` is not on ``scale``, or None when it is."""
    if not math.isfinite(value):
        return f"{value} is not a finite number; allowed: {scale.describe()}"
    if not scale.ok(np.array([value]))[0]:
        return f"{_num(value)} is outside the store's scale: allowed {scale.describe()}"
    return None


def first_problem(scale: Scale, fields: Iterable[tuple[str, float]]) -> tuple[str, str] | None:
    """(field, message) of the first value off the scale, or None: a request is all or nothing."""
    for field, value in fields:
        problem = value_problem(scale, value)
        if problem is not None:
            return field, f"{field}: {problem}"
    return None


# --- rows already stored --------------------------------------------------------------------------
def usable(frame: pd.DataFrame, scale: Scale) -> tuple[np.ndarray, dict[str, int]]:
    """(mask of the rows of a ratings frame (user, item, rating) that follow the rule, counts of
    the others by reason). A row is counted once, under the first rule it breaks."""
    ids_ok = np.ones(len(frame), dtype=bool)
    for col in ("user", "item"):
        text = frame[col].astype(str)
        lengths = text.str.len().to_numpy()
        ids_ok &= (lengths >= 1) & (lengths <= ID_LENGTH)
        ids_ok &= ~text.str.contains(rf"[{NOT_IN_IDS}\ud800-\udfff]", regex=True).to_numpy(dtype=bool)
        ids_ok &= (text.str.strip() == text).to_numpy(dtype=bool)
    values_ok = scale.ok(frame["rating"].to_numpy(dtype=np.float64))
    reasons = {"bad id": int((~ids_ok).sum()),
               f"value not {scale.describe()}": int((ids_ok & ~values_ok).sum())}  # fmt: skip
    return ids_ok & values_ok, {k: n for k, n in reasons.items() if n}


def exact(vocab: Any, ids: list[str]) -> np.ndarray:
    """Indices of text ``ids`` in a model's vocabulary, -1 unless the id is exactly the text of a
    known id: "050" or "5e1" never finds item 50, though the vocabulary's lookup lets "50" find it."""
    idx = vocab.lookup(np.asarray(ids, dtype=object), strict=False)
    raw = vocab.ids
    return np.array(
        [k if k >= 0 and str(raw[k]) == i else -1 for k, i in zip(idx.tolist(), ids)],
        dtype=np.int64,
    )
