from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from collabkit.core.kernels import SORT_RATIO, _group, permutation
from collabkit.core.loop import train_step
from collabkit.core.optim import RowAdamW
from collabkit.models.base import registry


def test_compiled_step_is_the_torch_step(tiny):
    """Every kind that hands its tables to the compiled step must end five steps with the weights,
    moments and losses of the torch step (autograd through forward + RowAdamW): a subclass that
    changed the score but kept dot_tables would fail here."""
    checked = []
    gen = torch.Generator().manual_seed(0)
    for kind, cls in registry().items():
        small = {"n_factors": 4} if cls.Config().n_factors else {}  # 0: a kind without factors
        fast = cls.from_data(tiny, **small)
        if fast.dot_tables() is None:
            continue
        slow, start = copy.deepcopy(fast), copy.deepcopy(fast)
        opt_fast, opt_slow = RowAdamW(list(fast.parameters())), RowAdamW(list(slow.parameters()))
        for _ in range(5):  # repeated rows in every batch: their gradients are sums
            u = torch.randint(0, len(fast.users), (12,), generator=gen)
            i = torch.randint(0, len(fast.items), (12,), generator=gen)
            r = torch.randint(1, 6, (12,), generator=gen).float()
            got = train_step(fast, opt_fast, u, i, r, 0.05, 0.9, 0.1)
            want = train_step(slow, opt_slow, u, i, r, 0.05, 0.9, 0.1, compiled=False)
            assert got.item() == pytest.approx(want.item(), rel=1e-5), kind
        for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
            assert torch.allclose(p, q, atol=1e-6), (kind, name)
            assert torch.allclose(opt_fast.moments_of(p), opt_slow.moments_of(q), atol=1e-6), (kind, name)
        assert any(not torch.equal(p, q) for p, q in zip(fast.parameters(), start.parameters()))
        checked.append(kind)
    assert sorted(checked) == ["bias", "dot", "dot-bias"]


@pytest.mark.parametrize("n_rows", [40, 40 * SORT_RATIO * 10])  # counted, then sorted
def test_group_lists_each_rows_positions(n_rows):
    idx = np.random.default_rng(n_rows).integers(0, n_rows, 40) if n_rows == 40 else np.array([7, 3, n_rows - 1, 7, 0] * 8)
    rows, start, order = _group(idx, n_rows)
    np.testing.assert_array_equal(rows, np.unique(idx))
    np.testing.assert_array_equal(np.sort(order), np.arange(len(idx)))
    for j, row in enumerate(rows):
        assert (idx[order[start[j] : start[j + 1]]] == row).all()


@pytest.mark.parametrize("compiled", [True, False])
def test_a_step_at_positions_is_the_step_on_the_gathered_batch(tiny, compiled):
    """fit_one_cycle hands the step the epoch's int32 arrays and the batch's positions."""
    gen = torch.Generator().manual_seed(1)
    users = torch.randint(0, 5, (40,), generator=gen, dtype=torch.int32)
    items = torch.randint(0, 5, (40,), generator=gen, dtype=torch.int32)
    ratings = torch.randint(1, 6, (40,), generator=gen).float()
    at = torch.randperm(40, generator=gen, dtype=torch.int32)[:16]
    a = registry()["dot-bias"].from_data(tiny, n_factors=4)
    b = copy.deepcopy(a)
    opt_a, opt_b = RowAdamW(list(a.parameters())), RowAdamW(list(b.parameters()))
    for _ in range(3):
        got = train_step(a, opt_a, users, items, ratings, 0.05, 0.9, 0.1, compiled=compiled, at=at)
        batch = (users[at].long(), items[at].long(), ratings[at])
        want = train_step(b, opt_b, *batch, 0.05, 0.9, 0.1, compiled=compiled)
        assert got.item() == want.item()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_permutation_is_a_seeded_permutation_whatever_the_threads():
    n = 200_000  # six buckets
    got = permutation(n, 7).numpy()
    np.testing.assert_array_equal(np.sort(got), np.arange(n))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        np.testing.assert_array_equal(permutation(n, 7).numpy(), got)
    finally:
        torch.set_num_threads(threads)
    assert not np.array_equal(permutation(n, 8).numpy(), got)


def test_permutation_moves_every_element_anywhere_evenly():
    """Over 400 seeds, where element 0 lands and what comes first are spread evenly over the
    four quarters (expected 100 each; a bucket-bound or unshuffled order would pile up)."""
    n = 1 << 17  # four buckets
    lands, first = np.zeros(4, int), np.zeros(4, int)
    for seed in range(400):
        p = permutation(n, seed).numpy()
        lands[np.flatnonzero(p == 0)[0] * 4 // n] += 1
        first[p[0] * 4 // n] += 1
    for counts in (lands, first):
        assert ((counts > 60) & (counts < 140)).all(), counts  # 4 sigma around 100


def test_a_frozen_table_stays_as_it_was(tiny):
    """Freezing the item factors (to train users only) sends the step through autograd, which
    leaves what RowAdamW does not hold alone."""
    model = registry()["dot-bias"].from_data(tiny, n_factors=4)
    model.item_factors.weight.requires_grad_(False)
    frozen = model.item_factors.weight.clone()
    assert model.dot_tables() is None
    opt = RowAdamW(list(model.parameters()))
    u, i, r = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 2]), torch.tensor([4.0, 2.0, 5.0])
    before = model.user_factors.weight.clone()
    train_step(model, opt, u, i, r, 0.05, 0.9, 0.1)
    assert torch.equal(model.item_factors.weight, frozen)
    assert not torch.equal(model.user_factors.weight, before)
