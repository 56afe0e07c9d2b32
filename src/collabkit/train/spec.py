"""Model specs: a kind or preset name with overrides written like a call, and the untrained model it names.

    "dot-bias"  "dot-bias(n_factors=20, epochs=10)"  "nn(layers=(100, 50))"  "best"  "auto(budget=300)"

Every override is a field of the kind's config, training recipe included (``epochs``, ``lr_max``,
``wd``, ``bs``, ``sampler``...). ``train.build.build_model`` trains what a spec names.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, fields
from typing import Any

from collabkit.data.interactions import Ratings
from collabkit.models.base import CollabModel, get_model_class, registry
from collabkit.models.ensemble import Ensemble
from collabkit.train.presets import PRESETS

AUTO = "auto"


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
        """'kind' or 'kind(name=value, ...)' -> ModelSpec; unknown kinds and options are ValueErrors."""
        if isinstance(text, ModelSpec):
            return text
        text = text.strip()
        kind, _, rest = text.partition("(")
        kind = kind.strip()
        try:
            kw = parse_options(rest.removesuffix(")")) if rest else {}
        except ValueError as e:
            raise ValueError(
                f"bad model spec {text!r}: write kind(name=value, ...), e.g. dot-bias(n_factors=20) ({e})"
            ) from None
        if kind in PRESETS and kind not in registry():
            if set(kw) - {"seed"}:
                raise ValueError(f"bad model spec {text!r}: a preset takes no options but seed")
            return cls(kind, kw, text)
        if kind == AUTO:
            if set(kw) - {"seed", "budget", "memory"}:
                raise ValueError(f"bad model spec {text!r}: auto takes only seed, budget (s) and memory (GB)")
            return cls(kind, kw, text)
        if kind not in registry():
            raise ValueError(
                f"unknown model {kind!r}; kinds: {', '.join(sorted(registry()))}; "
                f"presets: {', '.join([*sorted(PRESETS), AUTO])}"
            )
        names = {f.name for f in fields(get_model_class(kind).Config)}
        unknown = sorted(set(kw) - names)
        if unknown:
            raise ValueError(
                f"bad model spec {text!r}: {kind} has no option {', '.join(unknown)}; "
                f"its options: {', '.join(sorted(names))}"
            )
        return cls(kind, kw, text)


    @classmethod
    def of(cls, kind: str, **options: Any) -> ModelSpec:
        """The spec of ``kind`` with ``options``, written out as text (validated like a parsed one)."""
        text = ", ".join(f"{k}={v!r}" for k, v in options.items())
        return cls.parse(f"{kind}({text})" if text else kind)

    def with_options(self, **options: Any) -> ModelSpec:
        """This spec with more config overrides (validated like parsed ones; presets take none)."""
        if not options:
            return self
        if self.is_preset:
            raise ValueError(f"{self.kind} is a preset, a whole recipe: it takes no options")
        return ModelSpec.of(self.kind, **{**self.config, **options})


def parse_options(text: str) -> dict[str, Any]:
    """'n_factors=20, layers=(10, 5)' -> {'n_factors': 20, 'layers': (10, 5)}: Python literals only."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise SyntaxError("only name=value arguments")
        kw = {a.arg: ast.literal_eval(a.value) for a in call.keywords}
    except (SyntaxError, ValueError) as e:
        raise ValueError(str(e)) from None
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}


def split_specs(text: str) -> list[str]:
    """'mean,bias,nn(layers=(100, 50))' -> ['mean', 'bias', 'nn(layers=(100, 50))']: commas outside brackets."""
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
    return [p.strip() for p in parts if p.strip()]


def build_untrained(spec: str | ModelSpec, train: Ratings, seed: int = 42) -> CollabModel:
    """The model ``spec`` names, sized to ``train``'s users and items, not yet trained.

    A preset with several members becomes an Ensemble of them (member k seeded ``seed + k``).
    """
    spec = ModelSpec.parse(spec)
    seed = spec.config.get("seed", seed)
    if spec.kind == AUTO:
        raise ValueError("auto chooses its members while it trains: build it with build_model")
    if not spec.is_preset:
        return get_model_class(spec.kind).from_data(train, **{"seed": seed, **spec.config})
    preset = PRESETS[spec.kind]
    members = [build_untrained(m, train, seed + k) for k, m in enumerate(preset.members)]
    if len(members) == 1:
        return members[0]
    return Ensemble.of(members, list(preset.weights))
