"""A spec parses completely or fails naming the column where reading stopped; its values are
checked against the kind's schema before any data is read."""

from __future__ import annotations

import pytest

from collabkit.train.spec import ModelSpec, check_spec, parse_options


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ("dot-bias(", 10, "found the end"),  # used to train plain dot-bias
        ("dot-bias(n_factors=3", 21, "expected ',' or ')'"),  # used to train n_factors=3
        ("dot-bias(n_factors=3, n_factors=4)", 23, "option n_factors is given again (first at column 10)"),
        ("dot-bias(n_factors=3))", 22, "expected the end of the spec"),
        ("dot-bias(n_factors=3) x", 23, "expected the end of the spec, found 'x'"),
        ("dot-bias(20)", 10, "expected an option name"),
        ("dot-bias(n_factors=)", 20, "expected a value"),
        ("dot-bias(n_factors=open('x'))", 20, "expected a value"),
        ("nn(layers=(1, 2)", 17, "expected ',' or ')'"),
        ("dot-bias(n_factors=007)", 20, "not a number"),
        ("dot-bias(n_factors=2 3)", 22, "expected ',' or ')'"),
        ("dot-bias(wd=%)", 13, "unexpected character '%'"),
        ("", 1, "expected a model kind"),
    ],
)
def test_a_spec_that_does_not_parse_names_the_column(text, column, problem):
    with pytest.raises(ValueError) as caught:
        ModelSpec.parse(text)
    message = str(caught.value)
    assert f"at column {column};" in message and problem in message, message
    assert "kind(name=value" in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("dot-bias(n_factors=True)", "n_factors must be a whole number >= 1, got True (bool)"),
        ("dot-bias(n_factors='x')", "got 'x' (str)"),
        ("dot-bias(n_factors=2.5)", "got 2.5"),
        ("dot-bias(n_factors=None)", "got None"),
        ("dot-bias(n_factors=[1, 2])", "got (1, 2)"),
        ("dot-bias(n_factors=1e400)", "got inf"),
        ("dot-bias(y_range=(5, 1))", "low < high"),
        ("dot-bias(y_range='ab')", "y_range must be"),
        ("dot-bias(lr_max='1e-3')", "lr_max must be a finite number > 0"),
        ("nn(layers=(0,))", "layers must be a tuple of whole numbers >= 1"),
        ("best(seed=-1)", "seed must be a whole number >= 0"),
        ("auto(budget=0)", "budget must be a finite number > 0"),
    ],
)
def test_values_are_checked_against_the_kinds_schema(text, problem):
    with pytest.raises(ValueError, match="bad model spec") as caught:
        ModelSpec.parse(text)
    assert problem in str(caught.value)


def test_python_literals_as_before():
    spec = ModelSpec.parse("nn(layers=[10, 5], dropout=0.1, y_range=(1, 5.5),)")
    assert spec.config == {"layers": (10, 5), "dropout": 0.1, "y_range": (1.0, 5.5)}
    assert ModelSpec.parse("nn(layers=(100,))").config == {"layers": (100,)}
    assert ModelSpec.parse("bpr(sampler='popularity', lr_max=1e-2)").config["lr_max"] == 0.01
    assert parse_options("a=1, b='x', c=(2, 3)") == {"a": 1, "b": "x", "c": (2, 3)}
    with pytest.raises(ValueError, match="given again"):
        parse_options("a=1, a=2")


def test_with_options_refuses_an_option_the_spec_sets():
    spec = ModelSpec.parse("dot-bias(n_factors=3)")
    assert spec.with_options(epochs=2).config == {"n_factors": 3, "epochs": 2}
    with pytest.raises(ValueError, match="n_factors is given twice"):
        spec.with_options(n_factors=4)


def test_check_spec_is_one_line_for_anything():
    assert check_spec("dot-bias(n_factors=20)").config == {"n_factors": 20}
    for bad in [None, 5, ["dot"], "x" * 5000, "dot-bias(n_factors=" + "(" * 50, "svd"]:
        with pytest.raises(ValueError) as caught:
            check_spec(bad)
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 600
