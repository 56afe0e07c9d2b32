"""Score a model on held-out ratings, counting ids it never saw (scored by its zero fallback)."""

from __future__ import annotations

import numpy as np

from collabkit.data.interactions import Ratings
from collabkit.evaluate.metrics import rating_metrics
from collabkit.models.base import CollabModel
from collabkit.train.loop import encode


def evaluate_ratings(model: CollabModel, test: Ratings) -> dict[str, float | int]:
    """RMSE/MAE/MSE on ``test`` plus how many rows had a user or item unknown to the model.

    Unknown ids are not dropped: they are scored by the model's documented fallback (the all-zero
    user or item representation, e.g. item bias alone for an unknown user).
    """
    if len(test) == 0:
        raise ValueError(f"{test.name}: no ratings to evaluate")
    enc = encode(model, test, strict=False)
    pred = model.predict_idx(enc.users, enc.items).numpy().astype(np.float64)
    return {
        **rating_metrics(enc.ratings.numpy().astype(np.float64), pred),
        "n_test": len(test),
        "n_unknown_users": int((enc.users < 0).sum()),
        "n_unknown_items": int((enc.items < 0).sum()),
    }
