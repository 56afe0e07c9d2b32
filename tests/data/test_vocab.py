"""Vocab: raw ids <-> contiguous indices, strict/non-strict lookup, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collabkit.data.vocab import UnknownIdError, Vocab


# --- construction --------------------------------------------------------------------------------
def test_int_ids_are_unique_and_sorted():
    v = Vocab([30, 10, 20, 10, 30], name="user")
    assert v.ids.tolist() == [10, 20, 30]
    assert len(v) == 3
    assert v.name == "user"
    assert "user" in repr(v) and "3" in repr(v)


def test_str_ids_are_unique_and_sorted():
    v = Vocab(["b", "c", "a", "b"], name="item")
    assert v.ids.tolist() == ["a", "b", "c"]


def test_index_i_is_exactly_ids_i_with_no_padding():
    v = Vocab([7, 3, 5])
    assert v.lookup(v.ids).tolist() == [0, 1, 2]
    assert v.decode([0, 1, 2]).tolist() == [3, 5, 7]


@pytest.mark.parametrize(
    "ids",
    [
        np.array([3, 1, 2]),
        pd.Series([3, 1, 2]),
        pd.Index([3, 1, 2]),
        (3, 1, 2),
        {3, 1, 2},
        (i for i in (3, 1, 2)),
    ],
    ids=["ndarray", "series", "index", "tuple", "set", "generator"],
)
def test_accepts_any_iterable(ids):
    assert Vocab(ids).ids.tolist() == [1, 2, 3]


def test_same_ids_in_any_order_give_the_same_vocab():
    a = Vocab([5, 1, 9, 1])
    b = Vocab([9, 9, 5, 1])
    assert a.ids.tolist() == b.ids.tolist()


@pytest.mark.parametrize(
    "ids", [[1.0, np.nan, 2.0], ["a", None, "b"], [1, None], pd.Series(["a", np.nan])]
)
def test_missing_ids_are_rejected(ids):
    with pytest.raises(ValueError, match=r"user vocabulary.*missing"):
        Vocab(ids, name="user")


# --- lookup -------------------------------------------------------------------------------------
def test_lookup_returns_int64_positions():
    v = Vocab([10, 20, 30])
    idx = v.lookup([30, 10, 20, 10])
    assert idx.dtype == np.int64
    assert idx.tolist() == [2, 0, 1, 0]


@pytest.mark.parametrize(
    "raw",
    [[20, 30], np.array([20, 30]), pd.Series([20, 30]), pd.Index([20, 30]), np.array([20.0, 30.0])],
    ids=["list", "ndarray", "series", "index", "float-array"],
)
def test_lookup_accepts_array_likes(raw):
    assert Vocab([10, 20, 30]).lookup(raw).tolist() == [1, 2]


def test_lookup_a_scalar():
    v = Vocab([10, 20, 30])
    assert v.lookup(20).tolist() == [1]
    assert Vocab(["a", "b"]).lookup("b").tolist() == [1]


def test_lookup_of_nothing_is_empty():
    out = Vocab([1, 2]).lookup([])
    assert out.dtype == np.int64 and len(out) == 0


def test_unknown_int_id_strict_raises_naming_the_id():
    v = Vocab([10, 20, 30], name="user")
    with pytest.raises(UnknownIdError) as err:
        v.lookup([10, 999])
    msg = str(err.value)
    assert "999" in msg and "user" in msg
    assert "np.int64" not in msg  # ids shown as the user typed them
    assert "3 users" in msg  # says how many the model knows


def test_unknown_str_id_strict_raises_naming_the_id():
    v = Vocab(["alice", "bob"], name="user")
    with pytest.raises(UnknownIdError, match="carol"):
        v.lookup(["alice", "carol"])


def test_unknown_id_error_is_a_key_error_with_a_readable_message():
    v = Vocab([1], name="item")
    with pytest.raises(KeyError) as err:
        v.lookup([2])
    # KeyError would quote the message; UnknownIdError keeps it as written
    assert str(err.value).startswith("unknown item id")


def test_many_unknown_ids_are_summarised():
    v = Vocab([0], name="item")
    with pytest.raises(UnknownIdError) as err:
        v.lookup(list(range(100, 112)))
    msg = str(err.value)
    assert "100" in msg and "104" in msg
    assert "111" not in msg  # only the first few are listed...
    assert "7 more" in msg  # ...and the rest are counted


def test_unknown_id_non_strict_maps_to_minus_one():
    v = Vocab([10, 20, 30])
    assert v.lookup([20, 999, 10, -5], strict=False).tolist() == [1, -1, 0, -1]
    assert Vocab(["a"]).lookup(["a", "zz"], strict=False).tolist() == [0, -1]


def test_string_42_finds_int_42():
    v = Vocab([7, 42, 100])
    assert v.lookup(["42"]).tolist() == [1]
    assert v.lookup("42").tolist() == [1]
    assert v.lookup(np.array(["100", "7"])).tolist() == [2, 0]
    assert v.lookup(["42", 7]).tolist() == [1, 0]  # mixed str and int


def test_non_numeric_string_is_unknown_in_an_int_vocab():
    v = Vocab([1, 2])
    assert v.lookup(["x", "1.5"], strict=False).tolist() == [-1, -1]
    with pytest.raises(UnknownIdError, match="x"):
        v.lookup(["x"])


@pytest.mark.parametrize("raw", ["1e400", "1e3", "0x2a", "inf", True, 42.5])
def test_ids_are_text_never_parsed_as_numbers(raw):
    """'1e3' is not id 1000 and '1e400' is no overflow: only the reader's canonical integer text
    ('42', ' 42 ', '42.0': how a CSV's integer column reads) finds an int id."""
    vocab = Vocab([1, 42, 1000])
    assert vocab.lookup([raw], strict=False)[0] == -1
    assert list(vocab.lookup(["42", " 42 ", "42.0", 42, 42.0, np.float64(1000)], strict=False)) == [1, 1, 1, 1, 1, 2]


def test_int_42_finds_string_42():
    v = Vocab(["42", "abc"])
    assert v.lookup([42]).tolist() == [0]
    assert v.lookup(np.array([42])).tolist() == [0]


def test_contains_matches_lookup():
    v = Vocab([1, 42])
    assert 42 in v
    assert "42" in v
    assert 43 not in v
    assert "x" not in v
    assert "a" in Vocab(["a"])


# --- decode -------------------------------------------------------------------------------------
def test_decode_round_trip_int():
    v = Vocab([5, 3, 9, 1])
    raw = np.array([9, 1, 1, 5, 3])
    assert v.decode(v.lookup(raw)).tolist() == raw.tolist()


def test_decode_round_trip_str():
    v = Vocab(["x", "b", "m"])
    raw = ["m", "x", "b", "b"]
    assert v.decode(v.lookup(raw)).tolist() == raw


def test_decode_all_indices_gives_ids():
    v = Vocab([4, 2, 8])
    assert v.decode(np.arange(len(v))).tolist() == v.ids.tolist()


@pytest.mark.parametrize("bad", [[-1], [3], [0, 99]])
def test_decode_out_of_range_raises(bad):
    # -1 is what lookup(strict=False) returns for unknown ids: it must not decode to the last id
    v = Vocab([10, 20, 30], name="item")
    with pytest.raises(IndexError, match="item"):
        v.decode(bad)


# --- JSON ---------------------------------------------------------------------------------------
def test_to_json_int_ids():
    obj = Vocab(np.array([3, 1, 2], dtype=np.int64), name="user").to_json()
    assert obj == {"name": "user", "kind": "int", "ids": [1, 2, 3]}
    assert all(type(i) is int for i in obj["ids"])  # plain ints: json.dumps works


def test_to_json_str_ids():
    obj = Vocab(["b", "a"], name="item").to_json()
    assert obj == {"name": "item", "kind": "str", "ids": ["a", "b"]}


@pytest.mark.parametrize(
    "ids", [[3, 1, 2], [10**12, -5, 0], ["b", "a", "c"], ["42", "007", "x y", "é"]]
)
def test_json_round_trip(ids):
    v = Vocab(ids, name="thing")
    back = Vocab.from_json(json.loads(json.dumps(v.to_json())))
    assert back.name == "thing"
    assert back.ids.tolist() == v.ids.tolist()
    assert [type(x) for x in back.ids.tolist()] == [type(x) for x in v.ids.tolist()]
    assert back.lookup(ids).tolist() == v.lookup(ids).tolist()


def test_json_round_trip_keeps_int_kind_for_lookup_by_string():
    back = Vocab.from_json(Vocab([1, 42]).to_json())
    assert back.to_json()["kind"] == "int"
    assert back.lookup(["42"]).tolist() == [1]


@settings(max_examples=50, deadline=None)
@given(
    st.one_of(
        st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=30),
        st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=30),
    )
)
def test_property_lookup_decode_and_json_round_trip(ids):
    v = Vocab(ids)
    assert len(v) == len(set(ids))
    assert v.ids.tolist() == sorted(set(ids))
    idx = v.lookup(ids)
    assert ((idx >= 0) & (idx < len(v))).all()
    assert v.decode(idx).tolist() == list(ids)
    back = Vocab.from_json(json.loads(json.dumps(v.to_json())))
    assert back.ids.tolist() == v.ids.tolist()


# --- growing: new ids after the known ones -------------------------------------------------------
def test_extended_keeps_every_known_index_and_numbers_new_ids_after_them():
    old = Vocab([30, 10, 20], "user")
    grown = old.extended([25, 10, 5, 25])
    np.testing.assert_array_equal(grown.lookup([10, 20, 30]), old.lookup([10, 20, 30]))
    assert grown.ids.tolist() == [10, 20, 30, 5, 25] and grown.ids.dtype == np.int64
    assert old.extended([20, 10]) is old  # nothing new: the same vocabulary


def test_extended_matches_ids_as_lookup_does():
    assert Vocab([1, 2], "user").extended(["2", "3"]).ids.tolist() == [1, 2, 3]  # "2" is 2
    assert Vocab(["a"], "item").extended([7]).ids.tolist() == ["a", "7"]


def test_extended_refuses_text_in_a_vocabulary_of_integers():
    with pytest.raises(ValueError, match=r"new user id\(s\) \['x'\] are not integers"):
        Vocab([1, 2], "user").extended(["x"])


def test_a_grown_vocabulary_keeps_its_order_through_json():
    grown = Vocab(["b", "c"], "item").extended(["a"])
    again = Vocab.from_json(json.loads(json.dumps(grown.to_json())))
    assert again.ids.tolist() == ["b", "c", "a"] and again.lookup(["a"]).tolist() == [2]


def test_fits_says_which_ids_a_vocabulary_can_take():
    assert Vocab([1, 2], "item").fits(["3", "x", 4, "5e1"]).tolist() == [True, False, True, False]
    assert Vocab(["a"], "item").fits([1, "b"]).tolist() == [True, True]
