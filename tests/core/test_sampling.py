"""Negative sampling and the BPR loss through the shared one-cycle engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import collabkit as ck
from collabkit.core.sampling import (
    NegativeSampler,
    bpr_loss,
    fit_ranking,
    pairs_batch,
)
from collabkit.data.implicit import Interactions, to_implicit
from collabkit.models.base import get_model_class
from tests.conftest import make_ratings


def csr(rows: list[set[int]], n_items: int) -> Interactions:
    items = [sorted(r) for r in rows]
    flat = np.array([i for r in items for i in r], dtype=np.int64)
    indptr = np.r_[0, np.cumsum([len(r) for r in items])].astype(np.int64)
    return Interactions(indptr, flat, np.ones(len(flat), dtype=np.float32), n_items)


@st.composite
def positive_sets(draw):
    n_items = draw(st.integers(2, 30))
    rows = draw(
        st.lists(
            st.sets(st.integers(0, n_items - 1), max_size=n_items - 1), min_size=1, max_size=12
        )
    )
    return rows, n_items


@settings(max_examples=150, deadline=None)
@given(positive_sets(), st.sampled_from(["uniform", "popularity"]), st.integers(0, 2**31 - 1))
def test_negatives_are_never_a_users_own_positives(case, distribution, seed):
    rows, n_items = case
    sampler = NegativeSampler(csr(rows, n_items), distribution, max_rounds=3)
    users = torch.arange(-1, len(rows)).repeat(20)  # -1: an unknown user, any item will do
    neg = sampler(users, torch.Generator().manual_seed(seed))
    assert neg.shape == users.shape and neg.dtype == torch.int64
    assert ((neg >= 0) & (neg < n_items)).all()
    for u, j in zip(users.tolist(), neg.tolist()):
        assert u < 0 or j not in rows[u]
    assert not sampler.is_positive(users, neg).any()


def test_uniform_sampler_covers_the_complement_evenly():
    rows = [{0, 3, 4, 9}, set()]
    sampler = NegativeSampler(csr(rows, 10), "uniform")
    neg = sampler(torch.zeros(60_000, dtype=torch.int64), torch.Generator().manual_seed(0))
    counts = np.bincount(neg.numpy(), minlength=10)
    assert (counts[[0, 3, 4, 9]] == 0).all()
    free = counts[[1, 2, 5, 6, 7, 8]]
    assert np.abs(free / 10_000 - 1).max() < 0.05  # 6 items, 10,000 expected each


def test_popularity_sampler_prefers_popular_items():
    rows = [{0}] * 30 + [{1}] * 5 + [{2}]  # item 0 in 30 users, item 1 in 5, item 2 in 1
    sampler = NegativeSampler(csr(rows, 4), "popularity", power=1.0)
    neg = sampler(torch.full((20_000,), 35), torch.Generator().manual_seed(0))  # user 35 has item 2
    counts = np.bincount(neg.numpy(), minlength=4)
    assert counts[2] == 0 and counts[3] == 0 and abs(counts[0] / counts[1] - 6) < 0.6


def test_a_user_with_every_item_has_no_negative():
    with pytest.raises(ValueError, match="all 3 items"):
        NegativeSampler(csr([{0, 1, 2}], 3))


def test_bpr_loss_is_minus_log_sigmoid_of_the_margin():
    pos, neg = (
        torch.tensor([2.0, -1.0]),
        torch.tensor([0.5, 0.0, 1.0, -3.0]),
    )  # two negatives per positive
    want = torch.stack(
        [
            -torch.nn.functional.logsigmoid(pos - neg[:2]),
            -torch.nn.functional.logsigmoid(pos - neg[2:]),
        ]
    ).mean(0)
    w = torch.tensor([1.0, 3.0])
    torch.testing.assert_close(bpr_loss(torch.cat([pos, neg]), w), (want * w).sum() / w.sum())


def test_pairs_batch_layout():
    sampler = NegativeSampler(csr([{0}, {1}], 5))
    u, i, w = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.ones(2)
    uu, ii, ww = pairs_batch(sampler, 3)(u, i, w, torch.Generator().manual_seed(0))
    assert uu.tolist() == [0, 1] * 4 and ii[:2].tolist() == [0, 1] and len(ii) == 8 and ww is w


def test_bpr_through_the_shared_engine_learns_and_is_seeded():
    data = to_implicit(make_ratings(seed=2), threshold=4)
    train, valid = ck.user_split(data, 0.2, seed=0)
    runs = []
    for _ in range(2):
        model = get_model_class("bpr").from_data(train, n_factors=8, seed=0)
        history = fit_ranking(model, train, valid, epochs=15, lr_max=3e-2, wd=0.1, bs=64, seed=3)
        runs.append(model.item_factors.weight.detach().clone())
    frame = history.to_frame()
    assert frame["train_loss"].iloc[-1] < 0.7 * frame["train_loss"].iloc[0]
    assert frame["valid_loss"].notna().all()
    torch.testing.assert_close(runs[0], runs[1])
