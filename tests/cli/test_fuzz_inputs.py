"""Fuzzing the edges: generated specs, config.json fields and command-line values each end in a
trained or loaded model, or in one error line on stderr with exit status 2 — never a traceback.

Hypothesis with a fixed budget (derandomized: the same examples every run), in the fast tier.
Values are drawn from each kind's own schema (``models.config.schema``): in range and out of it,
of the right type and of every wrong one. Counts that make training longer are kept small, so
an accepted example trains in a fraction of a second.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from collabkit.checkpoint import save_model
from collabkit.cli import app
from collabkit.models.base import registry
from collabkit.models.config import options_schema, schema
from collabkit.train.build import build_model
from tests.conftest import make_ratings

BUDGET = settings(
    max_examples=30, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
runner = CliRunner()
#: kinds the fuzzed `train` runs build (ensemble: only as a saved model, it is made of members)
KINDS = sorted(k for k in registry() if k != "ensemble")


def clean_outcome(args: list[str]) -> int:
    """Run ``collabkit ARGS``: exit 0, or exit 2 with exactly one 'error: ' line on stderr."""
    result = runner.invoke(app, args, env={"COLUMNS": "1000"})
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert result.exit_code in (0, 2), (args, result.output)
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert len(lines[0]) <= 2100 and "Traceback" not in result.output
    return result.exit_code


# --- values: from a field's type, in range and out ----------------------------------------------
SMALL_INTS = st.integers(-2, 4)
FLOATS = st.sampled_from([0.0, -1.0, 1e-3, 0.05, 0.5, 0.99, 1.0, 3.0, 1e300, math.nan, math.inf, -math.inf])
JUNK = st.one_of(
    st.none(), st.booleans(), st.text(max_size=6), st.sampled_from([2.5, 50.0, "1e-3", "50", 10**12]),
    st.lists(SMALL_INTS, max_size=3), st.dictionaries(st.text(max_size=3), SMALL_INTS, max_size=2),
)  # fmt: skip


def value_for(tp: Any) -> st.SearchStrategy:
    """Values for a field of type ``tp``: mostly of that type (small counts), sometimes junk."""
    origin, args = get_origin(tp), get_args(tp)
    if args and origin is not tuple and origin is not Literal:  # a union: each alternative
        own = st.one_of(*[value_for(a) for a in args if a is not type(None)], st.none())
    elif origin is Literal:
        own = st.sampled_from([*args, "bogus"])
    elif origin is tuple:
        item = value_for(args[0])
        own = st.tuples(item, item) if args[-1] is not Ellipsis else st.lists(item, max_size=3).map(tuple)
    elif tp is int:
        own = SMALL_INTS
    elif tp is float:
        own = FLOATS
    else:
        own = JUNK
    return st.one_of(own, own, JUNK)


def in_range(tp: Any, meta: dict[str, Any]) -> st.SearchStrategy:
    """Values a field of type ``tp`` with ``meta`` accepts; counts stay small (short runs)."""
    origin, args = get_origin(tp), get_args(tp)
    if args and origin not in (tuple, list, Literal):  # a union
        own = [in_range(a, meta) for a in args if a is not type(None)]
        return st.one_of(*own, *([st.none()] if type(None) in args else []))
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (tuple, list):
        item = in_range(args[0], meta)
        fixed = origin is tuple and args[-1] is not Ellipsis
        seq = st.lists(item, min_size=len(args), max_size=len(args)) if fixed else st.lists(item, max_size=3)
        if meta.get("increasing"):
            seq = seq.map(lambda xs: sorted(set(xs))).filter(lambda xs: not fixed or len(xs) == len(args))
        return seq.map(tuple) if origin is tuple else seq
    if tp is int:
        low = meta.get("min", meta["gt"] + 1 if "gt" in meta else 0)
        return st.integers(low, min(meta.get("max", low + 3), low + 3))
    if tp is float:
        low, high = meta.get("min", meta.get("gt", -3.0)), meta.get("max", meta.get("lt", 5.0))
        return st.floats(low, high, exclude_min="gt" in meta, exclude_max="lt" in meta)
    return st.sampled_from(["title", "genres"]) if tp is str else JUNK


@st.composite
def specs(draw) -> str:
    """A spec text: a kind with options from its schema, in range (half the time) or anything,
    sometimes cut, doubled or garbled."""
    kind = draw(st.sampled_from(KINDS))
    fields = options_schema(registry()[kind])
    if draw(st.booleans()):  # a spec the schema accepts: it must train or fail cleanly
        names = draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))
        options = [f"{name}={draw(in_range(*fields[name]))!r}" for name in names]
        return f"{kind}({', '.join(options)})"
    names = draw(st.lists(st.sampled_from([*sorted(fields), "bogus"]), max_size=3))
    options = []
    for name in names:
        value = draw(value_for(fields[name][0])) if name in fields else draw(JUNK)
        if name in ("epochs", "iterations", "samples", "burn_in") and isinstance(value, int) and value > 3:
            value = 3  # keep accepted runs short
        options.append(f"{name}={value!r}")
    text = f"{kind}({', '.join(options)})" if options or draw(st.booleans()) else kind
    cut = draw(st.integers(0, len(text)))
    return draw(st.sampled_from([text, text, text[:cut], text + ")", text[:cut] + draw(st.text(max_size=3)) + text[cut:]]))


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "r.csv"
    make_ratings(n_users=30, n_items=20).frame.to_csv(path, index=False)
    return path


@BUDGET
@given(text=specs())
def test_a_fuzzed_spec_trains_or_is_one_clear_error(ratings_csv, text):
    clean_outcome(["train", "--ratings", str(ratings_csv), "--split", "none", "--no-progress", "--model", text])


# --- config.json ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Small trained models saved by collabkit, one folder per kind, with the ensemble of two."""
    root, data = tmp_path_factory.mktemp("saved"), make_ratings(n_users=30, n_items=20)
    out = {}
    for spec in ["dot-bias(n_factors=3, epochs=1)", "nn(epochs=1)", "autorec(n_factors=4, epochs=2)",
                 "ordinal(n_factors=3, epochs=1)", "hybrid(n_factors=3, epochs=1)", "als(iterations=1)", "chapter"]:  # fmt: skip
        model, _ = build_model(spec, data)
        out[model.kind if spec != "chapter" else "chapter"] = save_model(model, root / spec.split("(")[0], items=data.items)
    return out


@st.composite
def config_edits(draw) -> tuple[str, list[str], Any]:
    """(model, path to a key of config.json, new value): a config field from the kind's schema,
    a top-level key, or a manifest entry."""
    folder = draw(st.sampled_from(["dot-bias", "nn", "autorec", "ordinal", "hybrid", "als"]))
    fields = schema(registry()[folder].Config)
    where = draw(st.sampled_from(["config", "config", "top", "manifest", "vocab"]))
    if where == "config":
        name = draw(st.sampled_from([*sorted(fields), "bogus"]))
        return folder, ["config", name], draw(value_for(fields[name][0]) if name in fields else JUNK)
    if where == "top":
        key = draw(st.sampled_from(["format", "kind", "config", "meta", "users", "items", "files", "data", "train"]))
        return folder, [key], draw(st.one_of(JUNK, st.sampled_from([1, 2, True, "dot", "ensemble", {}, []])))
    if where == "manifest":
        key = draw(st.sampled_from(["size", "sha256"]))
        return folder, ["files", "model.safetensors", key], draw(st.one_of(JUNK, st.sampled_from([0, 10**12, -1, "0" * 64])))
    return folder, ["users", draw(st.sampled_from(["ids", "kind", "name"]))], draw(JUNK)


@BUDGET
@given(edit=config_edits())
def test_a_fuzzed_config_json_loads_or_is_one_clear_error(saved, edit):
    folder, path, value = edit
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(saved[folder], Path(tmp) / "m"))
        config = json.loads((copy / "config.json").read_text())
        target = config
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            target[path[-1]] = value
        (copy / "config.json").write_text(json.dumps(config))
        clean_outcome(["predict", str(copy), "1", "101"])


# --- command-line values -------------------------------------------------------------------------
NUMBER_TEXT = st.one_of(
    SMALL_INTS.map(str), st.floats(-3, 5, allow_nan=False).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "1e-400", "abc", "", " ", "0x10", "5.", "1_000", "-0", "10000000000"]),
)  # fmt: skip
FLAGS = ["--n-factors", "--epochs", "--lr", "--wd", "--bs", "--valid-pct", "--seed", "--layers", "--threshold", "-k"]


@BUDGET
@given(values=st.dictionaries(st.sampled_from(FLAGS), NUMBER_TEXT, min_size=1, max_size=3))
def test_fuzzed_option_values_train_or_are_one_clear_error(ratings_csv, values):
    args = ["train", "--ratings", str(ratings_csv), "--no-progress"]
    if "--layers" in values:
        args += ["--model", "nn"]
    if "--threshold" in values or "-k" in values:
        args += ["--implicit"]
    if values.get("--epochs", "").strip().lstrip("+").isdigit() and int(values["--epochs"]) > 3:
        values["--epochs"] = "3"  # keep accepted runs short
    for flag, value in values.items():
        args += [flag, value]
    clean_outcome(args)


@BUDGET
@given(user=st.text(max_size=8), item=st.one_of(st.text(max_size=8), NUMBER_TEXT), n=NUMBER_TEXT)
def test_fuzzed_ids_and_counts_answer_or_are_one_clear_error(saved, user, item, n):
    model = str(saved["dot-bias"])
    clean_outcome(["predict", model, "--", user, item])
    clean_outcome(["recommend", model, "--include-seen", "-n", n, "--", user])
