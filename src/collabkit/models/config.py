"""Model configs: each kind's typed schema, checked wherever options enter, and its memory estimate.

A kind's ``Config`` dataclass IS its schema. The field types say what a value may be, per-field
metadata says its range::

    n_factors: int = field(default=50, metadata={"min": 1})

Metadata keys: ``min``/``max`` (inclusive) and ``gt``/``lt`` (exclusive) bound a number, or every
number of a tuple; ``increasing`` asks a tuple's numbers to rise strictly (a (low, high) range).
A subclass that redeclares a field only to change its default keeps the parent's metadata.
The types are read strictly: a bool is not an int, 2.5 and 50.0 are not ints, the text '1e-3' is
not a float, a float must be finite, a tuple field takes a list or tuple of its element type.

Every way in goes through the same check, ``check_value``: building a config (the Python API,
``Model.from_data(data, **config)``), ``updated``, ``from_json`` (a saved config.json), and
``check_options`` (specs and CLI flags, before any data is read). A bad value is a ``ConfigError``
(a ValueError) naming the field, what it takes and what it got, on one line.

Memory: ``estimate`` builds the model on PyTorch's meta device (shapes, no storage) to count its
weights and adds the config's ``fit_bytes``, what training allocates beside them (optimiser
moments, dense temporaries); ``check_memory`` refuses the total above ``max_model_bytes()``
(COLLABKIT_MAX_MODEL_BYTES) before anything real is allocated.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
import types
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch

from collabkit.files import clip_text

#: the memory limit when COLLABKIT_MAX_MODEL_BYTES is not set: 8 GiB
DEFAULT_MAX_MODEL_BYTES = 8 * 2**30


class ConfigError(ValueError):
    """A config value that does not fit its field: ``field`` names it, ``problem`` says the rest."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.field = name
        self.problem = problem


@dataclass
class ModelConfig:
    """Hyper-parameters shared by the factor models; subclasses add their own (module docstring)."""

    n_factors: int = field(default=50, metadata={"min": 1})  # length of each user/item embedding
    # sigmoid output range (low, high); None = unbounded
    y_range: tuple[float, float] | None = field(default=None, metadata={"increasing": True})
    seed: int = field(default=42, metadata={"min": 0, "max": 2**32 - 1})  # seeds the initial weights

    def __post_init__(self) -> None:
        """Check every field against the schema; lists become tuples, ints in float fields floats."""
        for f in fields(self):
            setattr(self, f.name, check_value(f.name, getattr(self, f.name), *schema(type(self))[f.name]))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, **changes: Any) -> ModelConfig:
        """A checked copy with ``changes``; a name the config does not have is a ValueError."""
        _check_names(type(self), changes)
        return replace(self, **changes)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ModelConfig:
        """The config saved as ``obj`` (config.json's "config"); a missing field takes its default,
        an unknown one is a ValueError, a malformed one a ConfigError."""
        if not isinstance(obj, dict):
            raise ConfigError("config", f"must be an object of options, got {_shown(obj)}")
        _check_names(cls, obj)
        return cls(**obj)

    def fit_bytes(self, n_users: int, n_items: int, n_ratings: int, weight_bytes: int) -> int:
        """Bytes training allocates beside the weights (``estimate``); none by default."""
        return 0

    def members_of(self) -> list[tuple[type, ModelConfig]]:
        """(kind class, config) of the models a model of this config holds (an ensemble's
        members), for ``estimate``; none by default."""
        return []


@dataclass
class SGDConfig(ModelConfig):
    """A gradient-trained model's config: its shape plus the one-cycle recipe (the chapter's)."""

    epochs: int = field(default=5, metadata={"min": 1})  # passes over the training ratings
    # peak learning rate, given for batches of 256 (scaled up above)
    lr_max: float = field(default=5e-3, metadata={"gt": 0})
    wd: float = field(default=0.1, metadata={"min": 0})  # decoupled weight decay
    bs: int | None = field(default=None, metadata={"min": 1})  # batch size; None: the model's default_bs

    def fit_bytes(self, n_users: int, n_items: int, n_ratings: int, weight_bytes: int) -> int:
        """AdamW keeps two moments per weight (core.optim.RowAdamW)."""
        return 2 * weight_bytes


# --- the schema: field types and metadata ---------------------------------------------------------
@functools.cache
def schema(cls: type) -> dict[str, tuple[Any, dict[str, Any]]]:
    """name -> (type, metadata) of every field of the config class ``cls``. A field redeclared
    without metadata (a subclass changing only the default) keeps its nearest parent's."""
    hints = get_type_hints(cls)
    out = {}
    for f in fields(cls):
        declared = [k.__dataclass_fields__[f.name].metadata for k in cls.__mro__ if f.name in getattr(k, "__dataclass_fields__", {})]
        out[f.name] = (hints[f.name], dict(next((m for m in declared if m), {})))
    return out


def options_schema(model_cls: type) -> dict[str, tuple[Any, dict[str, Any]]]:
    """What a spec or flag may set on a kind: its Config's fields, except that a keyword parameter
    of the kind's own ``from_data`` (the hybrid's feature column names) is checked against that
    parameter's annotation, since from_data turns it into the field."""
    out = dict(schema(model_cls.Config))
    hints = get_type_hints(model_cls.from_data)
    for name in inspect.signature(model_cls.from_data).parameters:
        if name in out and name in hints:
            out[name] = (hints[name], {})
    return out


def check_options(model_cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``model_cls``'s schema (``options_schema``), lists as tuples.

    For specs and flags: the values are checked before any data is read; ``from_data`` checks
    the whole config again once it is built.
    """
    known = options_schema(model_cls)
    unknown = sorted(map(str, set(options) - set(known)))
    if unknown:
        raise ValueError(
            f"{model_cls.kind} has no option {clip_text(', '.join(unknown), 100)}; its options: {', '.join(sorted(known))}"
        )
    return {k: check_value(k, v, *known[k]) for k, v in options.items()}


#: options a config saved by an earlier collabkit may hold, and what became of them
RETIRED = {"day_offsets": "its day offsets became time offsets (models.timeshift) on 2026-12-07; retrain it"}


def _check_names(cls: type, options: dict[str, Any]) -> None:
    names = {f.name for f in fields(cls)}
    unknown = sorted(map(str, set(options) - names))
    retired = [RETIRED[name] for name in unknown if name in RETIRED]
    if retired:
        raise ValueError(f"saved by an earlier collabkit: {retired[0]}")
    if unknown:
        raise ValueError(
            f"unknown option(s) {clip_text(', '.join(unknown), 100)}; this model's options: {', '.join(sorted(names))}"
        )


def check_value(name: str, value: Any, tp: Any, meta: dict[str, Any] | None = None) -> Any:
    """``value`` as field ``name`` of type ``tp`` with ``meta``'s bounds holds it, or a ConfigError."""
    meta = meta or {}
    out = _convert(value, tp, meta)
    if out is _BAD:
        raise ConfigError(name, f"must be {describe(tp, meta)}, got {_shown(value)}")
    return out


_BAD = object()  # _convert's "does not fit"


def _convert(value: Any, tp: Any, meta: dict[str, Any]) -> Any:
    """``value`` in ``tp``'s canonical form, or _BAD."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            return None if type(None) in args else _BAD
        for alt in (a for a in args if a is not type(None)):
            out = _convert(value, alt, meta)
            if out is not _BAD:
                return out
        return _BAD
    if origin is Literal:
        return value if any(type(value) is type(a) and value == a for a in args) else _BAD
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return _BAD
        each = [args[0]] * len(value) if origin is list or args[-1] is Ellipsis else list(args)
        if len(each) != len(value):
            return _BAD
        items = [_convert(v, t, meta) for v, t in zip(value, each)]
        if any(v is _BAD for v in items):
            return _BAD
        if meta.get("increasing") and any(a >= b for a, b in itertools.pairwise(items)):
            return _BAD
        return tuple(items) if origin is tuple else items
    if tp is bool:
        return bool(value) if isinstance(value, (bool, np.bool_)) else _BAD
    if tp is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            return _BAD
        return int(value) if _in_bounds(int(value), meta) else _BAD
    if tp is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return _BAD
        number = float(value) if abs(value) < 2**1000 else math.inf
        return number if math.isfinite(number) and _in_bounds(number, meta) else _BAD
    if tp is str:
        return value if isinstance(value, str) else _BAD
    if tp is dict or origin is dict:
        return value if isinstance(value, dict) else _BAD
    raise TypeError(f"collabkit.models.config cannot check a field of type {tp!r}")


def _in_bounds(x: float, meta: dict[str, Any]) -> bool:
    return (
        x >= meta.get("min", -math.inf) and x <= meta.get("max", math.inf)
        and x > meta.get("gt", -math.inf) and x < meta.get("lt", math.inf)
    )  # fmt: skip


def describe(tp: Any, meta: dict[str, Any]) -> str:
    """What a field takes, in words: 'a whole number >= 1', 'a (low, high) pair of numbers, low < high, or None'."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        alts = [describe(a, meta) for a in args if a is not type(None)]
        return " or ".join(alts + (["None"] if type(None) in args else []))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        numbers = _noun(args[0], meta, plural=True)
        if origin is tuple and args[-1] is not Ellipsis:
            if len(args) == 2 and meta.get("increasing"):
                return f"a (low, high) pair of {numbers} with low < high"
            return f"a tuple of {len(args)} {numbers}"
        order = " rising strictly" if meta.get("increasing") else ""
        return f"a {'tuple' if origin is tuple else 'list'} of {numbers}{order}"
    return _noun(tp, meta)


def _noun(tp: Any, meta: dict[str, Any], plural: bool = False) -> str:
    if tp is bool:
        return "True or False"
    if tp is str:
        return "texts" if plural else "a text"
    if tp is dict or get_origin(tp) is dict:
        return "objects" if plural else "an object"
    base = {int: "whole numbers", float: "finite numbers"}.get(tp, str(tp))
    base = base if plural else "a " + base.removesuffix("s")
    bounds = [f"{sym} {meta[key]:{'d' if isinstance(meta[key], int) else 'g'}}" for key, sym in (("min", ">="), ("gt", ">"), ("max", "<="), ("lt", "<")) if key in meta]
    if "min" in meta and meta.get("max") == meta["min"]:
        return f"{meta['min']:g} (not used by this model)"
    return base + (" " + " and ".join(bounds) if bounds else "")


def _shown(value: Any) -> str:
    """A value for an error message: its repr cut short, and its type when the repr could mislead."""
    text = clip_text(repr(value), 60)
    return f"{text} ({type(value).__name__})" if isinstance(value, (str, bool, np.bool_)) else text


# --- memory ---------------------------------------------------------------------------------------
class Estimate(NamedTuple):
    """Bytes a model needs: its weights, and what training allocates beside them."""

    weights: int
    training: int


def max_model_bytes() -> int:
    """The memory limit for one model: COLLABKIT_MAX_MODEL_BYTES (bytes), default 8 GiB."""
    text = os.environ.get("COLLABKIT_MAX_MODEL_BYTES")
    if text is None:
        return DEFAULT_MAX_MODEL_BYTES
    try:
        limit = int(text)
    except ValueError:
        limit = -1
    if limit < 1:
        raise ValueError(f"COLLABKIT_MAX_MODEL_BYTES must be a whole number of bytes >= 1, got {clip_text(repr(text), 40)}")
    return limit


def estimate(model_cls: type, config: ModelConfig, users: Any, items: Any, n_ratings: int = 0) -> Estimate:
    """The weights of ``model_cls(config, users, items)``, counted on the meta device (no storage is
    allocated), and its config's ``fit_bytes`` for ``n_ratings`` training ratings. A model made of
    members (``members_of``) needs the sum of their weights, trained one at a time."""
    parts = [estimate(cls, cfg, users, items, n_ratings) for cls, cfg in config.members_of()]
    if parts:
        return Estimate(sum(p.weights for p in parts), max(p.training for p in parts))
    try:
        with torch.device("meta"):
            shell = model_cls(config, users, items)
    except (RuntimeError, NotImplementedError, TypeError, KeyError, IndexError, AttributeError):
        weights = 0  # cannot be built on the meta device (or malformed: building it says how)
    else:
        weights = sum(t.numel() * t.element_size() for t in [*shell.parameters(), *shell.buffers()])
    return Estimate(weights, config.fit_bytes(len(users), len(items), n_ratings, weights))


def check_memory(estimates: list[Estimate], what: str) -> int:
    """Refuse models that, built and trained one after another and kept, would pass the limit:
    the sum of their weights plus the largest training temporaries. Returns that total."""
    weights = sum(e.weights for e in estimates)
    training = max((e.training for e in estimates), default=0)
    total, limit = weights + training, max_model_bytes()
    if total > limit:
        raise ValueError(
            f"{what} would need about {_gib(total)} of memory ({_gib(weights)} of weights + {_gib(training)} "
            f"while training), over the limit of {_gib(limit)}: use fewer factors or a smaller model, "
            "or raise COLLABKIT_MAX_MODEL_BYTES"
        )
    return total


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"

