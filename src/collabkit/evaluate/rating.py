"""Score a model on held-out ratings, counting ids it never saw (scored by the baseline fallback)."""

from __future__ import annotations

import numpy as np

from collabkit.core.loop import encode
from collabkit.data.interactions import Ratings
from collabkit.evaluate.metrics import rating_metrics
from collabkit.models.base import CollabModel


def evaluate_ratings(model: CollabModel, test: Ratings) -> dict[str, float | int]:
    """RMSE/MAE/MSE on ``test``, the same on known and on fallback rows, and how many rows had an
    unknown user or item.

    Unknown ids are not dropped: such rows are scored by the model's documented fallback (the
    baseline predictor mu + b_u + b_i, ``models.base``); ``rmse_known``/``rmse_fallback`` (left out
    when a part has no rows) and ``n_fallback`` show how much each part weighs in ``rmse``. With
    times in ``test`` a model with time offsets (``models.timeshift``) uses them, and
    ``rmse_without_times`` is its RMSE without them.
    """
    if len(test) == 0:
        raise ValueError(f"{test.name}: no ratings to evaluate")
    enc = encode(model, test, strict=False)
    plain, times = model.predict_idx(enc.users, enc.items), test.times
    timed = plain if times is None else model.at_times(plain, enc.users, times)
    pred = timed.numpy().astype(np.float64)
    true = enc.ratings.numpy().astype(np.float64)
    known = enc.known.numpy()
    parts = {  # only parts that have rows
        f"rmse_{name}": rating_metrics(true[rows], pred[rows])["rmse"]
        for name, rows in (("known", known), ("fallback", ~known))
        if rows.any()
    }
    if timed is not plain:  # the model has time offsets: what they add
        parts["rmse_without_times"] = rating_metrics(true, plain.numpy().astype(np.float64))["rmse"]
    return {
        **rating_metrics(true, pred),
        **parts,
        "n_test": len(test),
        "n_fallback": int((~known).sum()),
        "n_unknown_users": int((enc.users < 0).sum()),
        "n_unknown_items": int((enc.items < 0).sum()),
    }
