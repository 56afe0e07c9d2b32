"""What a model kind can do beyond scoring: the capability names it declares (``models.base``).

Kept apart from the contract so that the modules ``models.base`` builds on (``models.linear``,
``models.incremental``) can ask a model what it can do without importing the contract.
"""

from __future__ import annotations

from typing import Any

FOLD_IN = "fold-in"  # new users from a few answers, without retraining (recommend.foldin)
ITEM_FOLD_IN = "item-fold-in"  # new items from their first ratings, the users fixed (models.incremental)
UPDATE = "update"  # trains on from its weights: new ratings plus a replay of old ones (models.incremental)
FACTORS = "factors"  # latent vectors per item and user: similar items/users, the PCA map
RATINGS = "ratings"  # scores are ratings on the data's scale (else ranking scores, implicit data)
PROBA = "proba"  # a probability for each rating level (config.levels; predict_proba, proba_repr)
BIASES = "biases"  # one learned offset per item and user (biases)
NEIGHBOURS = "neighbours"  # its own item-item similarities (item_similarity): similar items, reasons
CAPABILITIES = (FOLD_IN, ITEM_FOLD_IN, UPDATE, FACTORS, RATINGS, PROBA, BIASES, NEIGHBOURS)


class CapabilityError(TypeError, ValueError):
    """A model was asked for something its kind does not declare (see ``models.base.require``)."""


def supports(model: Any, capability: str) -> bool:
    """True when ``model`` (a model or a kind's class) declares ``capability``."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}; one of {CAPABILITIES}")
    return capability in model.capabilities
