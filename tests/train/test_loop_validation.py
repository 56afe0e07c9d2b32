"""fit_one_cycle refuses settings that would train silently wrong, and never returns a NaN model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collabkit.core.loop import fit_one_cycle
from collabkit.data.interactions import Ratings
from collabkit.models.dot import DotProductBias


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("lr_max", math.nan, "lr"),
        ("lr_max", math.inf, "lr"),
        ("lr_max", 0.0, "lr"),
        ("lr_max", -1e-3, "lr"),
        ("wd", math.nan, "wd"),
        ("wd", -0.1, "wd"),
        ("epochs", 0, "epochs"),
        ("epochs", -3, "epochs"),
        ("bs", 0, "bs"),
        ("bs", -5, "bs"),
    ],
)
def test_bad_settings_are_refused(tiny, option, value, message):
    model = DotProductBias.from_data(tiny, n_factors=4)
    with pytest.raises(ValueError, match=message):
        fit_one_cycle(model, tiny, **{option: value})


def test_diverging_run_raises_instead_of_returning_nan(tiny):
    frame = tiny.frame.copy()
    frame.loc[0, "rating"] = np.float32(3e38)  # finite, but its squared error is not
    data = Ratings(frame, scale=(1.0, 5.0))
    model = DotProductBias.from_data(data, n_factors=4)
    with pytest.raises(ValueError, match="not finite"):
        fit_one_cycle(model, data, epochs=1)


def test_good_settings_still_train(tiny):
    model = DotProductBias.from_data(tiny, n_factors=4)
    history = fit_one_cycle(model, tiny, epochs=1, wd=0.0)
    assert np.isfinite(history.rows[-1]["train_loss"])
