"""Model specs: a kind or preset name with overrides written like a call, and the untrained model it names.

    "dot-bias"  "dot-bias(n_factors=20, epochs=10)"  "nn(layers=(100, 50))"  "best"  "auto(budget=300)"

Every override is a field of the kind's config, training recipe included (``epochs``, ``lr_max``,
``wd``, ``bs``, ``sampler``...), and is checked against the kind's schema (``models.config``) when
the spec is read, before any data. Values are Python literals: numbers, 'text', True, False, None,
tuples and lists of them. A spec must parse completely: anything left over, an unclosed bracket or
an option given twice is an error naming the column where reading stopped. ``check_spec`` is the
one call for code that takes a spec from outside (the service's retrain). ``train.build.build_model``
trains what a spec names.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.files import clip_text
from collabkit.models.base import CollabModel, get_model_class, registry
from collabkit.models.config import (
    ConfigError,
    ModelConfig,
    check_memory,
    check_options,
    check_value,
    estimate,
    schema,
)
from collabkit.models.ensemble import Ensemble
from collabkit.train.presets import PRESETS

AUTO = "auto"
#: the longest spec read: a spec is a line someone typed, or a field of a request
MAX_SPEC_CHARS = 2000
#: tuples nest at most this deep in a value
MAX_DEPTH = 4
HOW = "write kind(name=value, ...), e.g. dot-bias(n_factors=20)"


@dataclass(frozen=True)
class ModelSpec:
    """A kind (or preset) name with config overrides; ``text`` is how it was written."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @property
    def name(self) -> str:
        return self.text or self.kind

    @property
    def is_preset(self) -> bool:
        return (self.kind in PRESETS or self.kind == AUTO) and self.kind not in registry()

    @classmethod
    def parse(cls, text: str | ModelSpec) -> ModelSpec:
        """'kind' or 'kind(name=value, ...)' -> ModelSpec; a spec that does not parse, an unknown
        kind or option, or a value its kind's schema refuses is a one-line ValueError."""
        if isinstance(text, ModelSpec):
            return text
        if not isinstance(text, str):
            # a ValueError like every other bad spec: callers catch one type
            raise ValueError(f"a model spec is text such as 'dot-bias(n_factors=20)', not {clip_text(repr(text), 60)}")  # noqa: TRY004
        text = text.strip()
        if len(text) > MAX_SPEC_CHARS:
            raise ValueError(f"bad model spec: {len(text):,} characters, more than the {MAX_SPEC_CHARS} allowed")
        shown = clip_text(text, 120)
        kind, kw = _Reader(text).spec()
        try:
            if kind in PRESETS and kind not in registry():
                if set(kw) - {"seed"}:
                    raise ValueError("a preset takes no options but seed")
                return cls(kind, _check_seed(kw), text)
            if kind == AUTO:
                if set(kw) - {"seed", "budget", "memory"}:
                    raise ValueError("auto takes only seed, budget (s) and memory (GB)")
                budget = {k: check_value(k, v, float, {"gt": 0}) for k, v in kw.items() if k in ("budget", "memory")}
                return cls(kind, {**_check_seed(kw), **budget}, text)
            if kind not in registry():
                raise ValueError(
                    f"unknown model {kind!r}; kinds: {', '.join(sorted(registry()))}; "
                    f"presets: {', '.join([*sorted(PRESETS), AUTO])}"
                )
            return cls(kind, check_options(get_model_class(kind), kw), text)
        except ConfigError as e:
            raise ValueError(f"bad model spec {shown!r}: {e}") from None
        except ValueError as e:
            raise ValueError(f"bad model spec {shown!r}: {e}" if not str(e).startswith("unknown model") else str(e)) from None

    @classmethod
    def of(cls, kind: str, **options: Any) -> ModelSpec:
        """The spec of ``kind`` with ``options``, written out as text (validated like a parsed one)."""
        plain = {k: v.item() if hasattr(v, "item") else v for k, v in options.items()}  # numpy scalars
        text = ", ".join(f"{k}={v!r}" for k, v in plain.items())
        return cls.parse(f"{kind}({text})" if text else kind)

    def with_options(self, **options: Any) -> ModelSpec:
        """This spec with more config overrides (validated like parsed ones; presets take none).
        An option the spec already sets is an error: neither value silently wins."""
        if not options:
            return self
        if self.is_preset:
            raise ValueError(f"{self.kind} is a preset, a whole recipe: it takes no options")
        twice = sorted(set(options) & set(self.config))
        if twice:
            raise ValueError(f"option {', '.join(twice)} is given twice: in the spec {clip_text(self.name, 120)!r} and again")
        return ModelSpec.of(self.kind, **{**self.config, **options})


def check_spec(text: Any) -> ModelSpec:
    """The spec ``text`` names, fully checked (syntax, kind, option names, types and ranges), for
    callers that take a spec from outside (the service's retrain); any problem is a ValueError
    with a one-line message. Sizes are checked later, against the data, by ``build_untrained``."""
    return ModelSpec.parse(text)


def _check_seed(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: check_value(k, v, *schema(ModelConfig)["seed"]) for k, v in kw.items() if k == "seed"}


def parse_options(text: str) -> dict[str, Any]:
    """'n_factors=20, layers=(10, 5)' -> {'n_factors': 20, 'layers': (10, 5)}: Python literals only."""
    return _Reader(text, "settings", "write name=value, ...").options_only()


# --- reading a spec -----------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>[+-]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)
      | (?P<text>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
      | (?P<name>[A-Za-z_]\w*(?:-\w+)*)
      | (?P<punct>[()\[\],=])""",
    re.VERBOSE,
)
_WORDS = {"True": True, "False": False, "None": None}


class _Reader:
    """A spec's tokens, read left to right; every error names the column (1-based) where it stopped."""

    def __init__(self, text: str, what: str = "model spec", how: str = HOW) -> None:
        self.text, self.at, self.what, self.how = text, 0, what, how
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, column)
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                self._fail(f"unexpected character {text[pos]!r}", pos + 1)
            if match.lastgroup != "space":
                self.tokens.append((match.lastgroup or "", match.group(), pos + 1))
            pos = match.end()
        self.tokens.append(("end", "", len(text) + 1))

    def spec(self) -> tuple[str, dict[str, Any]]:
        """kind [ '(' options ')' ], and nothing after it."""
        kind = self._take("name", "a model kind or preset name")[1]
        options: dict[str, Any] = {}
        if self._at("("):
            self.at += 1
            options = self._options(")")
        self._take("end", "the end of the spec")
        return kind, options

    def options_only(self) -> dict[str, Any]:
        return self._options("")

    def _options(self, close: str) -> dict[str, Any]:
        """name=value, ... up to ``close`` (')', or '' for the end of the text)."""
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        closer = f"{close!r}" if close else "the end"
        while not self._at(close):
            _, name, col = self._take("name", f"an option name (name=value) or {closer}")
            self._take("punct", f"'=' after {name}", "=")
            if name in seen:
                self._fail(f"option {name} is given again (first at column {seen[name]})", col)
            out[name], seen[name] = self._value(0), col
            if self._at(","):
                self.at += 1
            elif not self._at(close):
                self._take("punct", f"',' or {closer}", ",")
        self.at += 1
        return out

    def _value(self, depth: int) -> Any:
        kind, text, col = self._peek()
        self.at += 1
        if kind in ("number", "text"):
            try:
                if len(text) > 100 and kind == "number":
                    raise ValueError
                return ast.literal_eval(text)
            except (SyntaxError, ValueError):
                self._fail(f"{clip_text(text, 40)} is not a {kind} as Python writes one", col)
        if kind == "name" and text in _WORDS:
            return _WORDS[text]
        if kind == "punct" and text in "([":
            if depth >= MAX_DEPTH:
                self._fail(f"tuples nested more than {MAX_DEPTH} deep", col)
            close, items, comma = ")" if text == "(" else "]", [], False
            while not self._at(close):
                items.append(self._value(depth + 1))
                if not self._at(","):
                    break
                self.at += 1
                comma = True
            self._take("punct", f"',' or {close!r}", close)
            # Python's rule: (x) is x, (x,) a tuple; [x] a list (kept as a tuple)
            return items[0] if text == "(" and len(items) == 1 and not comma else tuple(items)
        self._fail("expected a value (a number, 'text', True, False, None, or a tuple of them)", col)

    def _peek(self) -> tuple[str, str, int]:
        return self.tokens[self.at]

    def _at(self, punct: str) -> bool:
        """The next token is ``punct`` ('' : the end of the text)."""
        kind, text, _ = self._peek()
        return kind == "end" if punct == "" else (kind == "punct" and text == punct)

    def _take(self, kind: str, what: str, text: str | None = None) -> tuple[str, str, int]:
        token = self._peek()
        if token[0] != kind or (text is not None and token[1] != text):
            found = "the end" if token[0] == "end" else repr(clip_text(token[1], 40))
            self._fail(f"expected {what}, found {found}", token[2])
        self.at += 1
        return token

    def _fail(self, problem: str, col: int) -> Any:
        raise ValueError(f"bad {self.what} {clip_text(self.text, 120)!r}: {problem} at column {col}; {self.how}")


def split_specs(text: str) -> list[str]:
    """'mean,bias,nn(layers=(100, 50))' -> ['mean', 'bias', 'nn(layers=(100, 50))']: commas outside brackets."""
    return [p.strip() for p in _entries(text) if p.strip()]


def parse_specs(text: str, option: str) -> list[ModelSpec]:
    """The comma-separated specs given to ``option`` (e.g. '--models'), every one parsed before any
    is trained; '' is none. An empty entry, a spec that does not parse, or one given twice (the
    same kind and options) is a one-line ValueError naming ``option``: nothing is dropped."""
    if not text.strip():
        return []
    specs: list[ModelSpec] = []
    for n, entry in enumerate(_entries(text), start=1):
        if not entry.strip():
            raise ValueError(f"{option}: entry {n} is empty")
        try:
            spec = ModelSpec.parse(entry)
        except ValueError as e:
            raise ValueError(f"{option}: {e}") from None
        first = next((s for s in specs if (s.kind, s.config) == (spec.kind, spec.config)), None)
        if first is not None:
            again = "" if first.name == spec.name else f" (as {clip_text(first.name, 120)!r} first)"
            raise ValueError(f"{option}: {clip_text(spec.name, 120)!r} is given twice{again}")
        specs.append(spec)
    return specs


def _entries(text: str) -> list[str]:
    """``text`` cut at the commas outside brackets, empty pieces kept."""
    parts, depth, start = [], 0, 0
    for pos, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:pos])
            start = pos + 1
    parts.append(text[start:])
    return parts


# --- building -------------------------------------------------------------------------------------
def build_untrained(spec: str | ModelSpec, train: Ratings, seed: int = 42) -> CollabModel:
    """The model ``spec`` names, sized to ``train``'s users and items, not yet trained.

    A preset with several members becomes an Ensemble of them (member k seeded ``seed + k``);
    their memory is checked together before the first is built.
    """
    spec = ModelSpec.parse(spec)
    seed = spec.config.get("seed", seed)
    if spec.kind == AUTO:
        raise ValueError("auto chooses its members while it trains: build it with build_model")
    if not spec.is_preset:
        return get_model_class(spec.kind).from_data(train, **{"seed": seed, **spec.config})
    preset = PRESETS[spec.kind]
    _check_members_memory(spec.kind, [ModelSpec.parse(m) for m in preset.members], train, seed)
    members = [build_untrained(m, train, seed + k) for k, m in enumerate(preset.members)]
    if len(members) == 1:
        return members[0]
    return Ensemble.of(members, list(preset.weights), times=preset.times)


def _check_members_memory(name: str, members: list[ModelSpec], train: Ratings, seed: int) -> None:
    """Refuse a preset whose members would not fit in memory together (``models.config.check_memory``)."""
    users, items = Vocab(train.frame["user"], "user"), Vocab(train.frame["item"], "item")
    estimates = []
    for k, m in enumerate(members):
        cls = get_model_class(m.kind)
        built_by_from_data = set(inspect.signature(cls.from_data).parameters)  # e.g. feature names
        options = {key: v for key, v in m.config.items() if key not in built_by_from_data}
        estimates.append(estimate(cls, cls.Config(**{"seed": seed + k, **options}), users, items, len(train)))
    check_memory(estimates, f"the preset {name}")
