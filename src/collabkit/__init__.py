"""collabkit: collaborative filtering you can train, explain and serve.

The public names below load on first use (PEP 562), so that importing a part of the package (the
command line's ``collabkit --help``) does not import torch, pandas and numba first.
"""

import sys
from importlib import import_module
from types import ModuleType
from typing import Any

#: public name -> the module that defines it
_PUBLIC = {
    "load_model": "collabkit.checkpoint", "save_model": "collabkit.checkpoint",
    "History": "collabkit.core.loop", "fit_one_cycle": "collabkit.core.loop",
    "to_implicit": "collabkit.data.implicit", "Ratings": "collabkit.data.interactions",
    "canonical_split": "collabkit.data.movielens", "load_movielens": "collabkit.data.movielens",
    "RatingsFormatError": "collabkit.data.readers", "read_ratings": "collabkit.data.readers",
    "kfold": "collabkit.data.split", "random_split": "collabkit.data.split",
    "temporal_split": "collabkit.data.split", "user_split": "collabkit.data.split",
    "UnknownIdError": "collabkit.data.vocab", "Vocab": "collabkit.data.vocab",
    "compare": "collabkit.evaluate", "evaluate_ranking": "collabkit.evaluate",
    "evaluate_ratings": "collabkit.evaluate",
    "CapabilityError": "collabkit.models.base", "CollabModel": "collabkit.models.base",
    "sigmoid_range": "collabkit.models.base",
    "BiasOnly": "collabkit.models.dot", "DotProduct": "collabkit.models.dot",
    "DotProductBias": "collabkit.models.dot", "GlobalMean": "collabkit.models.dot",
    "Hybrid": "collabkit.models.hybrid",
    "ALS": "collabkit.models.implicit", "BPR": "collabkit.models.implicit",
    "EASE": "collabkit.models.implicit", "MostPopular": "collabkit.models.implicit",
    "EmbeddingNN": "collabkit.models.neural",
    "recommend": "collabkit.recommend", "recommend_new_users": "collabkit.recommend",
    "build_model": "collabkit.train", "lr_find": "collabkit.train.lr_find",
}  # fmt: skip
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'collabkit' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


class _Package(ModuleType):
    """The package module: a subpackage never hides the public name it shares (``recommend``
    stays the function when ``collabkit.recommend`` is imported), as with eager imports."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in _PUBLIC and isinstance(value, ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
