"""Each kind's Config is its schema: wrong types, ranges and orderings are refused by name, wherever
they come from, and a model too large for memory is refused before it is allocated."""

from __future__ import annotations

import math
from typing import get_args, get_origin

import pytest

from collabkit.models.base import registry
from collabkit.models.config import ConfigError, check_options, max_model_bytes, schema
from collabkit.models.ordinal import OrdinalConfig
from tests.conftest import make_ratings, peak_rss


def _bad_values(tp, meta) -> list:
    """Values a field of type ``tp`` must refuse, whatever its metadata says."""
    args = get_args(tp)
    optional = type(None) in args
    core = next((a for a in args if a is not type(None)), tp) if args and get_origin(tp) is not tuple else tp
    bad = [] if optional else [None]
    if core is int:
        bad += [True, 2.5, 50.0, "5", [1, 2]]
    elif core is float:
        bad += [True, "1e-3", math.nan, math.inf, [1.0]]
    elif get_origin(core) is tuple:
        bad += ["ab", 5, {"a": 1}]
        if meta.get("increasing"):
            bad += [(5.0, 1.0) if len(get_args(core)) == 2 else (3.0, 2.0, 1.0)]
    elif core is str:
        bad += [5]
    return bad


@pytest.mark.parametrize("kind", sorted(registry()))
def test_every_field_of_every_kind_refuses_wrong_types_by_name(kind):
    config_cls = registry()[kind].Config
    config_cls()  # the defaults fit the schema
    for name, (tp, meta) in schema(config_cls).items():
        for value in _bad_values(tp, meta):
            with pytest.raises(ConfigError) as caught:
                config_cls(**{name: value})
            assert caught.value.field == name and "got" in str(caught.value), (kind, name, value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"n_factors": -1}, "n_factors must be a whole number >= 1, got -1"),
        ({"n_factors": 2.5}, "got 2.5"),
        ({"n_factors": None}, "got None"),
        ({"n_factors": [1, 2]}, "got [1, 2]"),
        ({"n_factors": True}, "got True (bool)"),
        ({"n_factors": "x"}, "got 'x' (str)"),
        ({"y_range": "ab"}, "y_range must be a (low, high) pair"),
        ({"y_range": (5, 1)}, "low < high"),
        ({"y_range": (math.nan, 5)}, "y_range must be"),
        ({"lr_max": "1e-3"}, "lr_max must be a finite number > 0, got '1e-3' (str)"),
    ],
)
def test_the_issue_values_are_refused_by_name(options, expected):
    with pytest.raises(ConfigError) as caught:
        check_options(registry()["dot-bias"], options)
    assert expected in str(caught.value)


def test_nn_layers_and_unused_factors():
    nn = registry()["nn"]
    for layers in [(0,), -5, (10, -1)]:
        with pytest.raises(ConfigError, match="layers must be a tuple of whole numbers >= 1"):
            check_options(nn, {"layers": layers})
    assert check_options(nn, {"layers": [10, 5]}) == {"layers": (10, 5)}
    with pytest.raises(ConfigError, match="n_factors must be 0 \\(not used"):
        check_options(registry()["ease"], {"n_factors": 5})
    with pytest.raises(ValueError, match="ease has no option wd"):
        check_options(registry()["ease"], {"wd": 0.1})


def test_a_saved_config_is_checked_like_any_other():
    cls = registry()["dot-bias"].Config
    for value in ["50", 50.0, None]:
        with pytest.raises(ConfigError, match="n_factors"):
            cls.from_json({"n_factors": value})
    with pytest.raises(ConfigError, match="y_range"):
        cls.from_json({"y_range": [5, 1]})
    with pytest.raises(ValueError, match="unknown option"):
        cls.from_json({"n_factors": 5, "learning_rate": 1})
    assert cls.from_json({"y_range": [1, 5]}).y_range == (1.0, 5.0)


def test_a_subclass_changing_a_default_keeps_the_parents_range():
    assert OrdinalConfig().epochs == 8
    with pytest.raises(ConfigError, match="epochs must be a whole number >= 1"):
        OrdinalConfig(epochs=0)


def test_hybrid_feature_names_are_checked_as_from_data_takes_them():
    hybrid = registry()["hybrid"]
    assert check_options(hybrid, {"user_features": ["age"]}) == {"user_features": ["age"]}
    with pytest.raises(ConfigError, match="user_features"):
        check_options(hybrid, {"user_features": [1]})


def test_ensemble_members_are_checked():
    cls = registry()["ensemble"].Config
    with pytest.raises(ValueError, match="unknown model 'x'"):
        cls(members=({"kind": "x", "config": {}},), weights=(1.0,))
    with pytest.raises(ConfigError, match="n_factors"):
        cls(members=({"kind": "dot-bias", "config": {"n_factors": "50"}},), weights=(1.0,))
    with pytest.raises(ConfigError, match="one weight per member"):
        cls(members=(), weights=(1.0,))


# --- memory ---------------------------------------------------------------------------------------
def test_a_model_over_the_limit_is_refused_before_it_is_allocated():
    ratings = make_ratings()
    dot_bias = registry()["dot-bias"]
    _, grew = peak_rss(_refused, dot_bias.from_data, ratings, n_factors=100_000_000)
    assert grew < 100 * 2**20  # 37 GiB of weights were never allocated
    with pytest.raises(ValueError, match="the nn model would need"):
        registry()["nn"].from_data(ratings, layers=(1_000_000, 1_000_000))


def _refused(build, *args, **kw) -> None:
    with pytest.raises(ValueError, match="would need about .* over the limit of 8.0 GiB"):
        build(*args, **kw)


def test_autorec_is_refused_by_its_dense_training_blocks(monkeypatch):
    """AutoRec's weights are small; its n_items x n_users training blocks are not."""
    ratings = make_ratings(n_users=400, n_items=2000, density=0.005)
    monkeypatch.setenv("COLLABKIT_MAX_MODEL_BYTES", str(8 * 2**20))
    with pytest.raises(ValueError, match="autorec model .* while training"):
        registry()["autorec"].from_data(ratings, n_factors=8)
    registry()["dot-bias"].from_data(ratings, n_factors=8)  # the same data fits a factor model


def test_a_preset_is_refused_before_its_first_member_is_built(monkeypatch):
    from collabkit.models.bayes import BayesianMF
    from collabkit.train.spec import build_untrained

    def never(*a, **k):
        raise AssertionError("a member was built before the preset's memory was checked")

    monkeypatch.setattr(BayesianMF, "from_data", classmethod(never))
    monkeypatch.setenv("COLLABKIT_MAX_MODEL_BYTES", str(8 * 2**20))
    with pytest.raises(ValueError, match="the preset best would need"):
        build_untrained("best", make_ratings(n_users=400, n_items=2000, density=0.005))


def test_the_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("COLLABKIT_MAX_MODEL_BYTES", "1000")
    assert max_model_bytes() == 1000
    monkeypatch.setenv("COLLABKIT_MAX_MODEL_BYTES", "8G")
    with pytest.raises(ValueError, match="COLLABKIT_MAX_MODEL_BYTES must be a whole number"):
        max_model_bytes()
