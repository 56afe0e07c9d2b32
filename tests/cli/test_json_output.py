"""--json output is always one valid JSON object, even when a number is NaN or infinite."""

from __future__ import annotations

import json
import math

import numpy as np

from collabkit.cli.common import print_json


def test_non_finite_numbers_become_null_with_a_warning(capsys):
    print_json({"rmse": math.nan, "mae": np.float32("inf"), "n": 3, "nested": {"x": [1.0, -math.inf]}})
    out, err = capsys.readouterr()
    assert json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c))) == {
        "rmse": None, "mae": None, "n": 3, "nested": {"x": [1.0, None]},
    }
    assert "rmse" in err and "mae" in err and "not finite" in err


def test_finite_output_is_unchanged_and_silent(capsys):
    print_json({"rmse": 0.9, "n": np.int64(3), "ok": True, "name": "x"})
    out, err = capsys.readouterr()
    assert json.loads(out) == {"rmse": 0.9, "n": 3, "ok": True, "name": "x"}
    assert err == ""
