"""The checks of the conformance suite, one function each: what every model kind must honour.

``test_conformance.py`` runs them on every registered kind; ``test_toy_kind.py`` on a kind
defined only in the tests. A check takes a trained model, the (train, test) data it was trained
on and, where it compares, the global-mean model of the same data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.data.implicit import to_implicit
from collabkit.evaluate.metrics import rank_correlation
from collabkit.models.base import (
    BIASES,
    FACTORS,
    FOLD_IN,
    ITEM_FOLD_IN,
    NEIGHBOURS,
    PROBA,
    RATINGS,
    UPDATE,
    CapabilityError,
    CollabModel,
    supports,
)
from collabkit.recommend.foldin import fold_in_frame

Data = tuple[ck.Ratings, ck.Ratings]

#: fold-in of training users from their own training ratings: the least mean Spearman correlation
#: (over 20 users) of their whole-catalogue scores with the trained users'. Exact solves
#: reproduce training; the MAP solve of the rating kinds shrinks towards the prior (0.90-1.00 on
#: the suite's data); BPR's fold-in minimises the full-catalogue loss, training a sampled one.
FOLD_IN_BOUND = {"als": 0.999, "ease": 0.999, "most-popular": 0.999, "bpr": 0.6}
FOLD_IN_DEFAULT = 0.85
#: item fold-in of training items from their own training ratings: the least mean Spearman
#: correlation (over 20 items) of their scores by every user with the trained items' (as above)
ITEM_FOLD_IN_BOUND = {"als": 0.99, "most-popular": 0.999}


def trained_on(model: CollabModel, data: Data) -> ck.Ratings:
    """What ``model`` was trained on: the ratings, or a ranking kind's positives (>= 4)."""
    return data[0] if supports(model, RATINGS) else to_implicit(data[0], 4.0)


def check_learns(model: CollabModel, data: Data, mean: CollabModel) -> None:
    """Rating kinds beat the global mean on held-out ratings; rankers put liked items above others."""
    train, test = data
    if supports(model, RATINGS):
        assert ck.evaluate_ratings(model, test)["rmse"] < ck.evaluate_ratings(mean, test)["rmse"]
    else:
        liked, positives = to_implicit(test, 4.0), to_implicit(train, 4.0)
        ours = ck.evaluate_ranking(model, positives, liked, 5, None)["hit_rate@5"]
        chance = ck.evaluate_ranking(mean, positives, liked, 5, None)["hit_rate@5"]
        assert ours > chance


def check_batch_scoring(model: CollabModel, data: Data) -> None:
    """Batch == one by one, the all-items path == the pairwise path, and a scorer over some items
    == those columns."""
    f = data[0].frame.head(12)
    batch = model.predict(f["user"], f["item"])
    one = np.array([model.predict([u], [i])[0] for u, i in zip(f["user"], f["item"])])
    np.testing.assert_allclose(batch, one, rtol=1e-5, atol=1e-5)
    users = torch.tensor([0, 3, 7])
    full = model.score_all_items(users)
    n = len(model.items)
    pairs = model.predict_idx(users.repeat_interleave(n), torch.arange(n).repeat(3))
    torch.testing.assert_close(full, pairs.view(3, n), rtol=1e-4, atol=1e-4)
    some = torch.tensor([2, 0, 5])  # a scorer over some of the items scores those columns
    scorer = model.scorer(some)
    with torch.no_grad():
        torch.testing.assert_close(scorer.finish(scorer.rank(model.user_reprs(users))), full[:, some], rtol=1e-4, atol=1e-4)


def check_unknown_ids(model: CollabModel, data: Data) -> None:
    """Unknown ids are scored, never dropped: a rating kind's fallback is the baseline predictor."""
    item, user = data[0].frame["item"].iloc[0], data[0].frame["user"].iloc[0]
    out = model.predict(["nobody", "nobody", user], [item, "no-such-item", "no-such-item"])
    assert np.isfinite(out).all()
    if supports(model, RATINGS):
        u = torch.from_numpy(model.users.lookup(["nobody", "nobody", user], strict=False))
        i = torch.from_numpy(model.items.lookup([item, "no-such-item", "no-such-item"], strict=False))
        np.testing.assert_allclose(out, model.baseline(u, i).numpy(), rtol=1e-6)
        lo, hi = data[0].scale
        assert ((out >= lo) & (out <= hi)).all()
        assert out[1] == pytest.approx(model.meta["global_mean"])


def check_fold_in(model: CollabModel, data: Data, bound: float | None = None) -> None:
    """A new user is recommended from their answers (never what they answered), or the kind
    refuses naming those that can; a training user folded in from their own ratings lands near
    what training learned for them (``FOLD_IN_BOUND``)."""
    train = trained_on(model, data)
    answers = train.frame[train.frame["user"] == train.frame["user"].iloc[0]][["item", "rating"]]
    answers = dict(zip(answers["item"], answers["rating"]))
    if not supports(model, FOLD_IN):
        with pytest.raises(CapabilityError, match="kinds that do"):
            ck.recommend_new_users(model, answers, n=3)
        return
    recs = ck.recommend_new_users(model, answers, n=3)
    assert len(recs) == 3 and not set(recs["item"]) & set(answers)
    users = np.unique(train.frame["user"])[:20]
    raw, reprs = fold_in_frame(model, train.frame[train.frame["user"].isin(users)], model.user_prior(train), users)
    scorer = model.scorer()
    with torch.no_grad():
        folded = scorer.finish(scorer.rank(reprs.float())).double().numpy()
        trained = model.score_all_items(torch.from_numpy(model.users.lookup(raw))).double().numpy()
    rho = np.nanmean([rank_correlation(a, b) if np.ptp(b) > 0 else 1.0 for a, b in zip(folded, trained)])
    assert rho >= (bound or FOLD_IN_BOUND.get(model.kind, FOLD_IN_DEFAULT)), (model.kind, rho)


def check_recommend_with_reasons(model: CollabModel, data: Data) -> None:
    """Top-n never repeats what the user rated; kinds with factors or item similarities say why
    ("because you rated"), kinds with item biases alone by the item's bias."""
    train = trained_on(model, data)
    user = train.frame["user"].iloc[0]
    recs = ck.recommend(model, train, [user], n=4)
    rated = set(train.frame.loc[train.frame["user"] == user, "item"])
    assert len(recs) == 4 and not set(recs["item"]) & rated
    assert recs["score"].is_monotonic_decreasing
    if supports(model, FACTORS) or supports(model, NEIGHBOURS):
        assert recs["because"].str.startswith("because you rated").any()
    elif supports(model, BIASES):
        b = model.biases("item")[torch.from_numpy(model.items.lookup(recs["item"]))].tolist()
        assert recs["because"].tolist() == [f"rated {'above' if x >= 0 else 'below'} average overall (item bias {x:+.2f})" for x in b]
    if supports(model, PROBA):
        assert recs["p_love"].between(0, 1).all()


def check_similar_and_pca(model: CollabModel, data: Data) -> None:
    from collabkit.interpret.pca import item_pca
    from collabkit.interpret.similar import similar_items

    item = data[0].frame["item"].iloc[0]
    if not supports(model, FACTORS) and not supports(model, NEIGHBOURS):
        with pytest.raises(CapabilityError, match="kinds that do"):
            similar_items(model, item, 3)
        return
    near = similar_items(model, item, 3)
    assert len(near) == 3 and item not in set(near["item"])
    if supports(model, FACTORS) and model.factors("item").shape[1] >= 2:
        assert len(item_pca(model, 2, data[0]).coords) > 0


def check_biases(model: CollabModel, data: Data) -> None:
    from collabkit.interpret.biases import bias_table

    if not supports(model, BIASES):
        with pytest.raises(CapabilityError, match="kinds that do"):
            bias_table(model)
        return
    table = bias_table(model, ratings=data[0])
    assert len(table) == len(model.items) and table["bias"].is_monotonic_decreasing


def check_save_load_in_a_new_process(models: dict[str, CollabModel], data: Data, root: Path, imports: str = "") -> None:
    """Save, load in a fresh interpreter, identical predictions (no pickle involved). ``imports``:
    Python run first in the new process (a kind defined outside the package is imported there)."""
    f = data[1].frame
    want = {}
    for kind, model in models.items():
        save_model(model, root / kind)
        want[kind] = model.predict(f["user"], f["item"]).tolist()
    pairs = root / "pairs.json"
    pairs.write_text(json.dumps({"user": f["user"].tolist(), "item": f["item"].tolist()}))
    script = (
        f"{imports}\nimport json, sys; from collabkit.checkpoint import load_model\n"
        "root, pairs = sys.argv[1], json.load(open(sys.argv[2]))\n"
        "print(json.dumps({k: load_model(f'{root}/{k}').predict(pairs['user'], pairs['item']).tolist()"
        f" for k in {sorted(models)!r}}}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(root), str(pairs)], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    got = json.loads(proc.stdout)
    for kind, model in models.items():
        np.testing.assert_array_equal(np.array(got[kind]), np.array(want[kind]), err_msg=kind)
        again = load_model(root / kind)
        assert again.capabilities == model.capabilities
        assert pd.Series(again.users.ids).equals(pd.Series(model.users.ids))


def check_engine(model: CollabModel, data: Data) -> None:
    """The serving engine answers what ``recommend`` answers: for a known user (as trained, and
    with a rating deleted since), a user who rated after training (fold-in) and a user with no
    ratings at all: the same items in the same order, scores to float32 precision, reasons. A
    user whose stamp is unchanged gets, without their ratings, what their ratings give."""
    from collabkit.serve.engine import Engine

    train = trained_on(model, data)
    items = train.items
    frame = train.frame
    user, other = frame["user"].iloc[0], frame["user"].iloc[-1]
    store = train.frame.astype({"user": str, "item": str})[["user", "item", "rating"]]
    store["written_at"] = np.where(store["user"] == str(other), 150.0, 50.0)  # other: rated after training
    stamps = {u: k for k, u in enumerate(store["user"].unique())}
    engine = Engine(1, "", 100.0, model, items, store, top_k=15, stamps=stamps)
    mine = frame[frame["user"] == user]

    def same(answer, expected: pd.DataFrame, mode: str) -> None:
        assert answer.mode == mode
        assert engine.item_text[answer.items].tolist() == [str(i) for i in expected["item"]], (model.kind, mode)
        np.testing.assert_allclose(answer.scores, expected["score"].to_numpy(np.float32), rtol=2e-6, atol=2e-6)
        assert answer.because.tolist() == expected["because"].tolist()
        if "p_love" in expected.columns:
            np.testing.assert_allclose(answer.p_love, expected["p_love"].to_numpy(), rtol=1e-5, atol=1e-6)

    def stored(rows: pd.DataFrame, when: float) -> tuple:
        return [str(i) for i in rows["item"]], rows["rating"].to_numpy(np.float64), np.full(len(rows), when)

    n = 6
    got = engine.for_user(str(user), *stored(mine, 50.0), n)  # known, nothing new: its precomputed list
    same(got, ck.recommend(model, train.with_frame(mine), [user], n, items=items), "model")
    assert engine.stamp(str(user)) == stamps[str(user)] and engine.stamp(str(other)) is None
    assert engine.stamp("stranger") is None
    same(engine.answer([engine.unchanged(str(user), n)])[0], ck.recommend(model, train.with_frame(mine), [user], n, items=items), "model")
    fewer = mine.iloc[1:]  # a rating deleted since the load: scored afresh
    got = engine.for_user(str(user), *stored(fewer, 50.0), n)
    same(got, ck.recommend(model, train.with_frame(fewer), [user], n, items=items), "model")
    if supports(model, FOLD_IN):
        got = engine.for_user(str(user), *stored(mine, 150.0), n)  # rated after training: folded in
        answers = mine[["item", "rating"]].assign(user=str(user))
        same(got, ck.recommend_new_users(model, answers, n, prior=engine.prior, items=items, user=str(user)), "fold-in")
        got = engine.for_user("stranger", [], np.zeros(0), np.zeros(0), n)
        expected = ck.recommend(model, None, ["\x00new"], n, exclude_seen=False, unknown="fallback", prior=engine.prior, items=items)
        same(got, expected, "average-taste")
    # requests answered together (the service's batches) get what each gets alone
    theirs = frame[frame["user"] == other]
    asks = [(str(user), *stored(mine, 50.0), n), (str(user), *stored(fewer, 50.0), 3), ("stranger", [], np.zeros(0), np.zeros(0), n),
            (str(user), *stored(mine, 150.0), n), (str(other), *stored(theirs, 150.0), 4), (str(other), *stored(theirs.iloc[:2], 150.0), 5)]  # fmt: skip
    for ask, got in zip(asks, engine.answer([engine.place(*ask) for ask in asks]), strict=True):
        alone = engine.for_user(*ask)
        assert got.mode == alone.mode and got.items.tolist() == alone.items.tolist(), (model.kind, ask[0], got.mode)
        np.testing.assert_allclose(got.scores, alone.scores, rtol=1e-6, atol=1e-6)
        assert got.because.tolist() == alone.because.tolist()
        assert (got.p_love is None) == (alone.p_love is None)
        if got.p_love is not None:
            np.testing.assert_allclose(got.p_love, alone.p_love, rtol=1e-5, atol=1e-6)
    # similar items: the service's are interpret.similar's (a kind's own similarities or its factors)
    if supports(model, NEIGHBOURS) or (supports(model, FACTORS) and model.factors("item").shape[1] >= 2):
        from collabkit.interpret.similar import similar_items

        item = frame["item"].iloc[0]
        near, sims = engine.similar(str(item), 5)
        expected = similar_items(model, item, 5)
        assert engine.item_text[near].tolist() == [str(i) for i in expected["item"]]
        np.testing.assert_allclose(sims, expected["similarity"], rtol=1e-6)


def _copies(model: CollabModel, items: np.ndarray) -> dict:
    """{item: a new id for a copy of it} in the type of the model's item ids."""
    ids = model.items.ids
    if pd.api.types.is_integer_dtype(ids.dtype):
        return dict(zip(items, int(ids.max()) + 1 + np.arange(len(items))))
    return {i: f"copy of {i}" for i in items}


def check_item_fold_in(model: CollabModel, data: Data) -> None:
    """Items the model never saw are placed from their ratings (ITEM_FOLD_IN), or the kind refuses
    naming those that can: 20 training items copied under new ids, folded in from their own
    training ratings, land near what training learned for them (``ITEM_FOLD_IN_BOUND``, as user
    fold-in); known items keep their indices and scores; the copies reach recommend, similar
    items and the serving engine, which marks them."""
    from collabkit.interpret.similar import similar_items
    from collabkit.serve.engine import Engine

    train = trained_on(model, data)
    f = train.frame
    copies = _copies(model, np.unique(f["item"])[:20])
    rows = f[f["item"].isin(list(copies))]
    new = train.with_frame(rows.assign(item=rows["item"].map(copies)))
    if not supports(model, ITEM_FOLD_IN):
        with pytest.raises(CapabilityError, match="kinds that do"):
            model.with_items(new)
        return
    grown = model.with_items(new, 1, model.item_prior(train))
    n = len(model.items)
    assert list(grown.items.ids[:n]) == list(model.items.ids) and len(grown.items) == n + len(copies)
    users = torch.arange(len(model.users))
    with torch.no_grad():
        scores = grown.score_all_items(users).double().numpy()
        np.testing.assert_allclose(scores[:, :n], model.score_all_items(users).double().numpy(), rtol=1e-5, atol=1e-5)
    orig, copy = model.items.lookup(list(copies)), grown.items.lookup(list(copies.values()))
    rho = np.nanmean([rank_correlation(scores[:, c], scores[:, o]) if np.ptp(scores[:, o]) > 0 else 1.0 for o, c in zip(orig, copy)])
    assert rho >= ITEM_FOLD_IN_BOUND.get(model.kind, FOLD_IN_DEFAULT), (model.kind, rho)
    everything = train.with_frame(pd.concat([f, new.frame]))
    user = f["user"].iloc[0]
    recs = ck.recommend(grown, everything, [user], n=len(grown.items))
    assert set(recs["item"]) & set(copies.values())  # the new items are recommendable
    if supports(model, FACTORS) and model.factors("item").shape[1] >= 2:
        first = next(iter(copies.values()))
        near = similar_items(grown, first, 3)
        assert len(near) == 3 and first not in set(near["item"])
    store = everything.frame.astype({"user": str, "item": str})[["user", "item", "rating"]]
    engine = Engine(1, "", 100.0, model, train.items, store, top_k=15, new_items=1)
    assert sorted(engine.item_text[engine.new_item]) == sorted(str(c) for c in copies.values())
    assert engine.new_item[engine.top_items[engine.top_items >= 0]].any()  # some list holds a new item
    mine = everything.frame[everything.frame["user"] == user]
    got = engine.for_user(str(user), [str(i) for i in mine["item"]], mine["rating"].to_numpy(np.float64), np.full(len(mine), 50.0), 6)
    expected = ck.recommend(engine.model, everything.with_frame(mine), [user], 6, items=train.items)
    assert engine.item_text[got.items].tolist() == [str(i) for i in expected["item"]]


def check_update(model: CollabModel, data: Data) -> None:
    """An update (UPDATE) with no new ratings changes no prediction; one with new users and items
    grows the vocabularies without re-indexing a known id, scores the newcomers from what they
    rated, and its lineage is saved and read back. Kinds without UPDATE refuse, naming those
    that can."""
    train, test = data
    if not supports(model, UPDATE):
        with pytest.raises(CapabilityError, match="kinds that do"):
            model.update(test, train)
        return
    f = test.frame
    nothing = model.update(test.with_frame(f.iloc[:0]), train)
    np.testing.assert_allclose(nothing.predict(f["user"], f["item"]), model.predict(f["user"], f["item"]), rtol=1e-6, atol=1e-6)
    assert nothing.meta["lineage"][-1]["added"]["ratings"] == 0
    users = {u: int(model.users.ids.max()) + 1 + k for k, u in enumerate(np.unique(f["user"])[:4])}
    items = _copies(model, np.unique(f["item"])[:3])
    renamed = f.assign(user=f["user"].map(users).fillna(f["user"]).astype(f["user"].dtype),
                       item=f["item"].map(items).fillna(f["item"]).astype(f["item"].dtype))  # fmt: skip
    new = test.with_frame(renamed)
    updated = model.update(new, train, epochs=2)
    for vocab, grown, added in ((model.users, updated.users, users), (model.items, updated.items, items)):
        assert list(grown.ids[: len(vocab)]) == list(vocab.ids)  # no known id moves
        assert sorted(grown.ids[len(vocab) :].tolist()) == sorted(added.values())
    step = updated.meta["lineage"][-1]
    assert (step["added"]["ratings"], step["added"]["new_users"], step["added"]["new_items"]) == (len(f), len(users), len(items))
    assert step["parent"]["items"] == len(model.items) and step["mix"]["new"] == len(f)
    pairs = renamed[renamed["user"].isin(users.values()) | renamed["item"].isin(items.values())]
    out = updated.predict(pairs["user"], pairs["item"])
    u, i = (torch.from_numpy(v.lookup(pairs[c])) for v, c in ((updated.users, "user"), (updated.items, "item")))
    assert np.isfinite(out).all() and not np.allclose(out, updated.baseline(u, i).numpy())  # scored, not the fallback
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        save_model(updated, root + "/m")
        again = load_model(root + "/m")
    assert again.meta["lineage"] == json.loads(json.dumps(updated.meta["lineage"]))
    assert list(again.users.ids) == list(updated.users.ids) and list(again.items.ids) == list(updated.items.ids)
    np.testing.assert_array_equal(again.predict(pairs["user"], pairs["item"]), out)
