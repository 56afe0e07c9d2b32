"""The one builder: a spec such as ``"dot-bias(n_factors=20, epochs=10)"`` or a preset name -> a trained model.

A spec is a registered model kind (``collabkit.models.base.registry()``) or a preset name
(``train.presets.PRESETS``), with optional overrides written like a call, Python literals as
values. Every override is a field of the kind's config, training recipe included (``epochs``,
``lr_max``, ``wd``, ``bs``, ``sampler``...), so the trained model's config records exactly how it
was trained. The CLI, ``compare``, cross-validation, presets and the benchmarks all build here.
"""

from __future__ import annotations

from typing import Any

from collabkit.core.loop import History
from collabkit.data.implicit import to_implicit
from collabkit.data.interactions import Ratings
from collabkit.models.base import RATINGS, CollabModel, supports
from collabkit.train.auto import build_auto
from collabkit.train.spec import AUTO, ModelSpec, build_untrained, parse_options, split_specs

__all__ = ["ModelSpec", "build_model", "build_untrained", "parse_options", "split_specs"]


def build_model(
    spec: str | ModelSpec,
    train: Ratings,
    valid: Ratings | None = None,
    *,
    seed: int = 42,
    threshold: float | None = None,
    console: Any = None,
    progress: bool = False,
) -> tuple[CollabModel, History]:
    """Build ``spec`` on ``train`` and train it; returns (model, History).

    ``valid`` is only reported on (per-epoch valid loss). ``threshold``: for ranking kinds
    given ratings, a rating >= threshold is a positive (``to_implicit``); None trains on
    ``train`` as it is (already interactions, or a rating model).
    """
    spec = ModelSpec.parse(spec)
    if spec.kind == AUTO:  # searches on a validation part of ``train``; ``valid`` is not read
        options = {"seed": seed, **spec.config}
        model, history = build_auto(train, **options, console=console, progress=progress)
        model.meta["spec"] = spec.name
        return model, history
    model = build_untrained(spec, train, seed)
    if threshold is not None and not supports(model, RATINGS):
        train = to_implicit(train, threshold=threshold)
        valid = to_implicit(valid, threshold=threshold) if valid is not None else None
    history = model.fit(train, valid, console=console, progress=progress)
    model.meta["spec"] = spec.name
    model.meta["train"] = {"spec": spec.name, "implicit": threshold is not None and not supports(model, RATINGS), "threshold": threshold}
    return model, history
