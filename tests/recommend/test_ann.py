"""Approximate search for large catalogues (``recommend.ann``): recall against exact search, exact
scores, seen items masked, exact search below the threshold and for kinds that rank otherwise."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit.data.vocab import Vocab
from collabkit.models.dot import DotProductBias
from collabkit.models.neural import EmbeddingNN
from collabkit.recommend.ann import recall_at
from collabkit.serve.engine import Engine
from tests.conftest import make_ratings

N_USERS, N_ITEMS, RANK, CLUSTERS = 300, 4000, 8, 40


def clustered_model(seed: int = 0) -> tuple[DotProductBias, pd.DataFrame, np.ndarray]:
    """A dot-bias model whose factors look trained (items in CLUSTERS taste clusters of a rank-RANK
    subspace, norms and biases spread like popularity; users mix two clusters), and a store where
    each user rated 5 items near the top of their list and 10 of their main cluster; and each
    item's cluster."""
    rng = np.random.default_rng(seed)
    f = 16
    basis = rng.normal(size=(RANK, f)) / np.sqrt(RANK)
    centres = rng.normal(size=(CLUSTERS, RANK)) @ basis
    popularity = rng.lognormal(0, 0.5, N_ITEMS)
    cluster = rng.integers(0, CLUSTERS, N_ITEMS)
    items = (centres[cluster] + 0.5 * rng.normal(size=(N_ITEMS, RANK)) @ basis + 0.1 * rng.normal(size=(N_ITEMS, f)))
    items *= 0.3 * np.sqrt(popularity)[:, None]
    taste = rng.integers(0, CLUSTERS, (N_USERS, 2))
    users = 0.6 * centres[taste[:, 0]] + 0.4 * centres[taste[:, 1]] + 0.3 * rng.normal(size=(N_USERS, RANK)) @ basis
    model = DotProductBias.from_vocabs(Vocab(np.arange(N_USERS), "user"), Vocab(np.arange(N_ITEMS) + 10_000, "item"),
                                       (1.0, 5.0), 3.5, n_factors=f)  # fmt: skip
    with torch.no_grad():
        model.user_factors.weight[:] = torch.tensor(users, dtype=torch.float32)
        model.item_factors.weight[:] = torch.tensor(items, dtype=torch.float32)
        model.user_bias.weight[:, 0] = torch.tensor(rng.normal(0, 0.3, N_USERS), dtype=torch.float32)
        model.item_bias.weight[:, 0] = torch.tensor(rng.normal(0, 0.3, N_ITEMS) + 0.2 * np.log(popularity), dtype=torch.float32)
    best = np.argsort(-(users @ items.T + np.log(popularity) * 0.2), 1)[:, :30]  # near each user's top
    rows = {(u, i) for u in range(N_USERS) for i in rng.choice(best[u], 5, replace=False)}
    rows |= {(u, i) for u in range(N_USERS) for i in rng.choice(np.flatnonzero(cluster == taste[u, 0]), 10, replace=False)}
    u, i = np.array(sorted(rows)).T
    store = pd.DataFrame({"user": u.astype(str), "item": (i + 10_000).astype(str), "rating": rng.integers(1, 6, len(u)).astype(float)})
    return model.eval(), store, cluster


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    """(approximate, exact) engines of the same version: the threshold below and above its 4,000 items."""
    model, store, _ = clustered_model()
    return Engine(1, "", 100.0, model, None, store, top_k=20, ann_items=1000), Engine(1, "", 100.0, model, None, store, top_k=20)


def exact_scores(engine: Engine, reprs: torch.Tensor, items: np.ndarray) -> np.ndarray:
    """Every item scored by the kind's own scorer, at ``items`` (-1: NaN)."""
    full = engine.scorer.finish(engine.scorer.rank(reprs)).numpy()
    return np.where(items >= 0, np.take_along_axis(full, items.clip(min=0), 1), np.nan)


def test_above_the_threshold_an_index_with_high_recall(engines):
    ann, exact = engines
    assert ann.index is not None and exact.index is None
    assert ann.index.recall >= 0.95
    assert recall_at(ann.top_items[:, :10], exact.top_items[:, :10]) >= 0.95


def test_returned_scores_are_the_exact_ones(engines):
    ann, _ = engines
    reprs = ann.model.user_reprs(torch.arange(N_USERS))
    np.testing.assert_allclose(ann.top_scores, exact_scores(ann, reprs, ann.top_items), rtol=2e-6, atol=2e-6)
    assert (np.diff(ann.top_scores, axis=1) <= 0).all()  # best first


def test_seen_items_are_never_returned(engines):
    ann, exact = engines
    indptr, seen = ann.seen[0], ann.seen[1]
    for u in range(N_USERS):
        assert not np.isin(ann.top_items[u], seen[indptr[u] : indptr[u + 1]]).any()
    # the masking matters: without it, the exact lists would hold seen items
    free = exact.scorer.finish(exact.scorer.rank(exact.model.user_reprs(torch.arange(N_USERS))))
    top = torch.topk(free, 20, 1).indices.numpy()
    assert sum(np.isin(top[u], seen[indptr[u] : indptr[u + 1]]).any() for u in range(N_USERS)) > N_USERS * 0.9


def test_fold_in_requests_match_exact_search(engines):
    """New users who rated 10 items of each of two clusters, as a taste would lead them to."""
    ann, exact = engines
    cluster = clustered_model()[2]
    rng = np.random.default_rng(1)
    got, want = [], []
    for _ in range(100):
        a, b = rng.choice(CLUSTERS, 2, replace=False)
        idx = np.sort(np.r_[rng.choice(np.flatnonzero(cluster == a), 10, replace=False), rng.choice(np.flatnonzero(cluster == b), 10, replace=False)])
        vals = rng.integers(1, 6, 20).astype(np.float64)
        a, e = ann.for_answers(idx, vals, 10), exact.for_answers(idx, vals, 10)
        assert a.mode == e.mode == "fold-in" and len(a.items) == 10
        assert not np.isin(a.items, idx).any()
        _, ia, ie = np.intersect1d(a.items, e.items, return_indices=True)
        np.testing.assert_allclose(a.scores[ia], e.scores[ie], rtol=2e-6, atol=2e-6)
        got.append(a.items), want.append(e.items)
    assert recall_at(np.array(got), np.array(want)) >= 0.95


def test_too_few_probes_would_fail(engines):
    """The recall test can fail: one probe of the index misses much of the exact top-10."""
    ann, _ = engines
    index = ann.index
    reprs = ann.model.user_reprs(torch.arange(N_USERS))
    truth = torch.topk(index.scorer.rank(reprs), 10, 1).indices.numpy()
    nprobe = index.index.nprobe
    try:
        index.index.nprobe = 1
        assert recall_at(index.search(reprs, 10), truth) < 0.9
    finally:
        index.index.nprobe = nprobe
    assert recall_at(index.search(reprs, 10), truth) >= 0.95


def test_below_the_threshold_exact_search():
    model, store, _ = clustered_model()
    engine = Engine(1, "", 100.0, model, None, store, top_k=20, ann_items=N_ITEMS + 1)
    assert engine.index is None


def test_kinds_that_do_not_rank_by_inner_product_keep_exact_search():
    data = make_ratings(40, 30)
    model = EmbeddingNN.from_data(data, n_factors=4, layers=(8,)).eval()
    store = data.frame.astype({"user": str, "item": str})[["user", "item", "rating"]]
    assert Engine(1, "", 100.0, model, None, store, top_k=5, ann_items=1).index is None


def test_faiss_searches_on_one_thread_and_is_imported_only_for_an_index(engines):
    import faiss

    assert faiss.omp_get_max_threads() == 1
    code = "import sys, collabkit, collabkit.serve.engine; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
