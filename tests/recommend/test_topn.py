"""Top-N by chunked scoring and top-k: the same lists as a full sort, memory bounded by the chunk."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit.data.interactions import Ratings
from collabkit.models.base import SCORE_CELLS
from collabkit.models.dot import BiasOnly, DotProduct, DotProductBias, GlobalMean
from collabkit.models.implicit import MostPopular
from collabkit.models.neural import EmbeddingNN
from collabkit.recommend.topn import _top_k, seen_csr, top_n
from tests.conftest import make_ratings, peak_rss


def full_sort_top_n(scores: torch.Tensor, n: int, seen=None, users=None):
    """The reference: the whole (U, N) matrix, seen items at -inf, a stable sort of every row."""
    scores = scores.double().clone()
    if seen is not None:
        indptr, idx = seen
        for row, u in enumerate(users):
            scores[row, idx[indptr[u] : indptr[u + 1]]] = -np.inf
    order = torch.sort(-scores, dim=1, stable=True).indices[:, :n]
    top = torch.gather(scores, 1, order)
    items = torch.where(torch.isfinite(top), order, -1)
    return items.numpy(), torch.where(torch.isfinite(top), top, np.nan).float().numpy()


def sparse_ratings(n_users: int, n_items: int, per_user: int = 5) -> Ratings:
    """Every user rates ``per_user`` random items (and every item is rated): a big catalogue, fast."""
    rng = np.random.default_rng(0)
    u = np.r_[np.repeat(np.arange(n_users), per_user), rng.integers(0, n_users, n_items)]
    i = np.r_[rng.integers(0, n_items, n_users * per_user), np.arange(n_items)]
    frame = pd.DataFrame({"user": u, "item": i, "rating": np.float32(4)}).drop_duplicates(["user", "item"])
    return Ratings(frame, scale=(1.0, 5.0))


def pairwise_scores(model, users: torch.Tensor) -> torch.Tensor:
    """The old score_all_items: every user row repeated once per item through the pairwise head."""
    ir = model.item_repr(torch.arange(len(model.items)))
    n = len(ir)
    ur = model.user_repr(users)
    return model.head(ur.repeat_interleave(n, 0), ir.repeat(len(users), 1)).view(len(users), n)


@pytest.fixture(scope="module")
def ratings():
    return make_ratings(n_users=50, n_items=30)


@pytest.mark.parametrize("cls", [DotProductBias, EmbeddingNN, MostPopular, BiasOnly, GlobalMean])
@pytest.mark.parametrize("batch_users", [1, 7, None])
def test_top_n_equals_a_full_sort(ratings, cls, batch_users, monkeypatch):
    """Also for the kinds with a shared ranking (one sort of the catalogue, not of every row)."""
    model = cls.from_data(ratings).eval()
    if cls is MostPopular:  # every user gets the same scores, many of them tied
        model.popularity.copy_(torch.randint(0, 4, (len(model.items),)).float())
    if batch_users == 7:
        monkeypatch.setattr(sys.modules[top_n.__module__], "SHARED_USERS", 7)
    users = torch.cat([torch.arange(len(model.users)), torch.tensor([-1])])  # and an unknown user
    seen = seen_csr(model, ratings)
    with torch.no_grad():  # the same chunks as top_n: BLAS may round a product of another shape apart
        scores = torch.cat([model.score_all_items(c) for c in users.split(batch_users or len(users))])
    for n in (1, 10, len(model.items) + 3):
        items, top = top_n(model, users, n, seen=seen, batch_users=batch_users)
        ref_items, ref_top = full_sort_top_n(scores, n, seen, users.numpy())
        k = min(n, len(model.items))
        np.testing.assert_array_equal(items[:, :k], ref_items)
        # the squash (and, for a shared ranking, the score) is applied to the chosen cells only:
        # equal to the full matrix's up to the last bit of vectorised sigmoid
        np.testing.assert_allclose(top[:, :k], ref_top, rtol=1e-6)
        assert (items[:, k:] == -1).all() and np.isnan(top[:, k:]).all()


def test_ties_go_to_the_lower_item_index():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, float("nan")], [-np.inf] * 3 + [0.0] * 3])
    items, top = _top_k(scores, 4)
    assert items.tolist() == [[1, 2, 4, 3], [3, 4, 5, 0]]
    assert top[0].tolist() == [3.0, 3.0, 3.0, 2.0]


def test_generic_head_scores_equal_the_pairwise_path(ratings):
    model = EmbeddingNN.from_data(ratings).eval()
    users = torch.arange(len(model.users))
    with torch.no_grad():
        torch.testing.assert_close(model.score_all_items(users), pairwise_scores(model, users))


def test_top_n_memory_is_bounded_by_the_chunk():
    """4000 users x 10000 items: the score matrix would be 160 MB; chunks of 200 users hold 8 MB."""
    big = sparse_ratings(4000, 10_000)
    model = DotProduct.from_data(big, n_factors=16).eval()
    seen = seen_csr(model, big)
    chunk = 200 * len(model.items) * 4
    peaks = []
    for n_users in (500, 4000):
        _, peak = peak_rss(top_n, model, np.arange(n_users), 10, seen=seen, batch_users=200)
        peaks.append(peak)
    assert peaks[1] < 8 * chunk + (8 << 20), peaks  # scores, masks, the tie cumsum (int64)
    assert peaks[1] < peaks[0] + (8 << 20), peaks  # 8x the users, no more memory


def test_generic_head_memory_is_bounded_by_score_cells():
    """An MLP head on 400 users x 5000 items: the old pairwise block was 400 x 5000 x 2F floats."""
    big = sparse_ratings(400, 5000)
    model = EmbeddingNN.from_data(big, n_factors=32, layers=(32,)).eval()
    users = torch.arange(400)
    # the least of three: a thread left by an earlier test can allocate during one measurement
    # (one CI run saw 182 MB once; alone it is 56-64 MB)
    runs = [peak_rss(model.score_all_items, users) for _ in range(3)]
    out, peak = runs[0][0], min(p for _, p in runs)
    old_block = 400 * 5000 * 64 * 4  # 512 MB
    # the output (8 MB) plus a few SCORE_CELLS-sized slices (16 MB each): inputs, hidden layer
    assert peak < out.numel() * 4 + 6 * SCORE_CELLS * 4, peak
    assert peak < old_block / 4


@pytest.mark.parametrize("cls", [BiasOnly, MostPopular, GlobalMean])
def test_shared_ranking_path_equals_the_full_path_with_candidates_and_reprs(ratings, cls, monkeypatch):
    model = cls.from_data(ratings).eval()
    users = np.r_[np.arange(len(model.users)), -1]
    seen = seen_csr(model, ratings)
    candidates = np.arange(0, len(model.items), 3)
    reprs = model.user_repr(torch.from_numpy(np.maximum(users, 0))).detach() + 0.25
    fast = [top_n(model, users, 6, seen=seen, candidates=candidates, reprs=r) for r in (None, reprs)]
    scorer = model.scorer
    monkeypatch.setattr(model, "scorer", lambda: dataclasses.replace(scorer(), shared=None))
    full = [top_n(model, users, 6, seen=seen, candidates=candidates, reprs=r) for r in (None, reprs)]
    for (items, top), (ref_items, ref_top) in zip(fast, full):
        np.testing.assert_array_equal(items, ref_items)
        np.testing.assert_allclose(top, ref_top, rtol=1e-6)
        assert set(items[items >= 0].tolist()) <= set(candidates.tolist())


def test_the_numpy_path_for_a_few_rows_follows_the_same_rule(monkeypatch):
    """A served request's top-k (a few rows, numpy) equals the batch path's (torch): ties to the
    lower index, NaN last, -inf (seen) kept in place, on tie-heavy scores."""
    from collabkit.recommend import topn

    rng = np.random.default_rng(0)
    for _ in range(500):
        b, n = int(rng.integers(1, 17)), int(rng.integers(1, 60))
        scores = rng.integers(0, 6, size=(b, n)).astype(np.float32)
        scores[rng.random((b, n)) < 0.1] = -np.inf
        scores[rng.random((b, n)) < 0.05] = np.nan
        k = int(rng.integers(1, n + 1))
        small = topn._top_k(torch.from_numpy(scores.copy()), k)
        monkeypatch.setattr(topn, "SMALL_CELLS", 0)
        batch = topn._top_k(torch.from_numpy(scores.copy()), k)
        monkeypatch.undo()
        np.testing.assert_array_equal(small[0].numpy(), batch[0].numpy())
        np.testing.assert_array_equal(small[1].numpy(), batch[1].numpy())


def test_an_ensembles_chunk_holds_fewer_users_as_every_member_scores_it(ratings, monkeypatch):
    """TOPN_CELLS bounds the cells of a chunk summed over the parts that score it."""
    from collabkit.models.ensemble import Ensemble

    members = [DotProductBias.from_data(ratings, n_factors=4, seed=s).eval() for s in range(3)]
    blend = Ensemble.of(members, [0.2, 0.3, 0.5])
    monkeypatch.setattr(sys.modules[top_n.__module__], "TOPN_CELLS", 10 * len(blend.items) * 3)  # 10 users x 3
    for model, chunk in ((members[0], 30), (blend, 10)):
        rows, scorer = [], model.scorer()
        rank = scorer.rank
        scorer.rank = lambda ur, rank=rank, rows=rows: rows.append(len(ur)) or rank(ur)
        items, _ = top_n(model, np.arange(50), 5, scorer=scorer)
        assert max(rows) == chunk and sum(rows) == 50
        reference, _ = top_n(model, np.arange(50), 5, batch_users=50)
        np.testing.assert_array_equal(items, reference)
