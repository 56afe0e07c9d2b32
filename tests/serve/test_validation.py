"""The edge's one rule for ids and values (serve.validation), without a server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collabkit.data.vocab import Vocab
from collabkit.serve import validation as v


def test_ids_are_text_of_bounded_length_without_control_characters():
    assert v.id_problem("5e1") is None and v.id_problem("ÿ") is None and v.id_problem("x" * 64) is None
    assert "at most 64" in v.id_problem("x" * 65)
    assert "control" in v.id_problem("a\x00b") and "empty" in v.id_problem("")
    assert "UTF-8" in v.id_problem("a\udcffb") and "text" in v.id_problem(50)


def test_non_utf8_bytes_are_named():
    assert v.utf8_problem("ÿ".encode()) is None
    assert "byte 1" in v.utf8_problem(b"a\xffb") and v.utf8_problem(b"\xed\xa0\x80") is not None


@pytest.mark.parametrize(
    ("scale", "good", "bad"),
    [
        (v.Scale(1, 5, 1), [1, 3, 5], [0, 5.5, 2.5, 6, np.nan, np.inf, 999999, 4.9999999, 4.0000001]),
        (v.Scale(0.5, 5, 0.5), [0.5, 2.5, 5], [0, 0.75, 5.5, -np.inf]),
        (v.Scale(1, 5), [1, 2.7, 5], [0.99, 5.01]),
        (v.Scale(0.1, 1, 0.1), [0.1, 0.3, 0.7, 1.0], [0.15, 0.30001]),  # 0.3 is 0.1 + 2 steps, give or take 1e-16
        (v.Scale(0, None, None, "interactions"), [0, 1, 250], [-1, np.nan, 2e6]),
    ],
)
def test_scale_accepts_finite_values_in_range_and_on_step(scale, good, bad):
    assert scale.ok(np.array(good, dtype=float)).all()
    assert not scale.ok(np.array(bad, dtype=float)).any()
    assert v.value_problem(scale, float(good[0])) is None
    problem = v.value_problem(scale, float(bad[0]))
    assert problem is not None and scale.describe() in problem


def test_first_problem_names_the_field_and_the_range():
    field, message = v.first_problem(v.Scale(1, 5, 1), [("a", 3.0), ("b", 7.0), ("c", 9.0)])
    assert field == "b" and message == "b: 7 is outside the store's scale: allowed from 1 to 5 in steps of 1"


def test_steps_are_inferred_from_the_values():
    assert v.infer_step(np.array([1.0, 5.0, 3.0])) == 1.0
    assert v.infer_step(np.array([0.5, 4.5, 3.0])) == 0.5
    assert v.infer_step(np.array([1.2, 3.0])) is None
    assert v.scale_of(0.5, 5, np.array([0.5, 5.0])).step == 0.5
    assert v.scale_of(1, 5, None, ratings=False).kind == "interactions"


def test_usable_counts_the_rows_that_break_the_rule():
    frame = pd.DataFrame({"user": ["a", "b", "c", "x" * 65, "e\x00", "a b"], "item": ["1", "1e400", "2", "3", "4", " 5"],
                          "rating": [4.0, 3.0, 999999.0, 3.0, 3.0, 3.0]})  # fmt: skip
    keep, reasons = v.usable(frame, v.Scale(1, 5, 1))
    assert keep.tolist() == [True, True, False, False, False, False]
    assert reasons == {"bad id": 3, "value not from 1 to 5 in steps of 1": 1}


def test_exact_matches_only_the_text_of_a_known_id():
    vocab = Vocab([50, 101], name="item")
    assert v.exact(vocab, ["50", "5e1", "050", "50.0", "1e400", "101", "x"]).tolist() == [0, -1, -1, -1, -1, 1, -1]
    assert v.exact(Vocab(["a", "5e1"]), ["5e1", "50"]).tolist() == [0, -1]


def test_the_vocabulary_does_not_parse_numeric_looking_text():
    """'42' finds 42 (a command line's id); '5e1' and '1e400' find nothing instead of 50 or a crash."""
    vocab = Vocab([42, 50])
    assert vocab.lookup(["42", "5e1", "1e400", "042", "inf", "nan"], strict=False).tolist() == [0, -1, -1, -1, -1, -1]
    assert vocab.lookup(np.array([50.0, np.inf, np.nan, 42.5]), strict=False).tolist() == [1, -1, -1, -1]
