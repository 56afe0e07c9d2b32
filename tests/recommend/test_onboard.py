"""The onboarding questionnaire: asks informative, answerable items once each, and places the user."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import collabkit as ck
from collabkit.recommend import Questionnaire
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def setup():
    data = make_ratings(n_users=80, n_items=50, density=0.4)
    model = ck.DotProductBias.from_data(data, n_factors=4, seed=0)
    ck.fit_one_cycle(model, data, epochs=20, lr_max=1e-2, wd=0.01, bs=32, progress=False)
    return data, model, model.user_prior(data)


def test_asks_every_item_once_then_stops(setup):
    data, model, prior = setup
    q = Questionnaire(model, data, prior)
    asked = []
    while (item := q.next_item()) is not None:
        asked.append(item)
        q.answer(item, 4.0 if len(asked) % 3 == 0 else None)
    assert sorted(asked) == sorted(model.items.ids)


def test_skips_change_nothing_and_answers_fold_in(setup):
    data, model, prior = setup
    q = Questionnaire(model, data, prior)
    first = q.next_item()
    q.answer(first, None)
    torch.testing.assert_close(q.user_repr(), prior.mean)
    assert q.next_item() != first
    second = q.next_item()
    q.answer(second, 5.0)
    expected = model.fold_in(
        torch.from_numpy(model.items.lookup([second])),
        torch.tensor([5.0], dtype=torch.float64),
        prior,
    )
    torch.testing.assert_close(q.user_repr(), expected)
    assert q.answers.to_dict("list") == {"item": [second], "rating": [5.0]}


def test_never_asks_what_nobody_rated(setup):
    data, model, prior = setup
    rare = list(model.items.ids[::10])  # nobody in the popularity ratings rated these
    q = Questionnaire(model, data.subset(~data.frame["item"].isin(rare).to_numpy()), prior)
    asked = []
    for _ in range(len(model.items) - len(rare)):
        asked.append(q.next_item())
        q.answer(asked[-1], None)
    assert not set(asked) & set(rare)  # popularity 0: no chance of an answer, asked last


def test_an_answer_devalues_items_pointing_the_same_way(setup):
    """After item i is answered, the items most similar to i lose more of their gain than most items."""
    data, model, prior = setup
    q = Questionnaire(model, data, prior)
    before = q.expected_gains()
    item = q.next_item()
    q.answer(item, 5.0)
    ratio = q.expected_gains() / before
    idx = int(model.items.lookup([item])[0])
    v = torch.nn.functional.normalize(model.item_factors.weight.detach(), dim=1)
    similar = torch.argsort(v @ v[idx], descending=True)[1:4]
    assert (
        ratio[idx] == -torch.inf and (ratio[similar] < ratio[torch.isfinite(ratio)].median()).all()
    )


def test_ensembles_add_their_members_gains_weighted_by_w_squared(setup):
    from collabkit.models.ensemble import Ensemble

    data, model, _ = setup
    other = ck.DotProductBias.from_data(data, n_factors=3, seed=1)
    ck.fit_one_cycle(other, data, epochs=5, lr_max=1e-2, bs=32, progress=False)
    ens = Ensemble.of([model, other], [0.7, 0.3])
    q = Questionnaire(ens, data)
    alone = [Questionnaire(m, data).expected_gains() for m in (model, other)]
    torch.testing.assert_close(q.expected_gains(), 0.49 * alone[0] + 0.09 * alone[1])
    first = q.next_item()
    q.answer(first, 5.0)
    assert q.user_repr().shape == (ens.user_repr(torch.zeros(1, dtype=torch.int64)).shape[1],) and q.next_item() != first


def test_ratings_outside_the_scale_are_refused(setup):
    data, model, prior = setup
    q = Questionnaire(model, data, prior)
    with pytest.raises(ValueError, match="outside the scale"):
        q.answer(q.next_item(), 9.0)
    with pytest.raises(ck.UnknownIdError):
        q.answer("no such item", 3.0)


def test_first_question_is_popular_and_divisive_on_movielens(data_root):
    data = ck.load_movielens("100k", data_dir=data_root, progress=False)
    model = ck.DotProductBias.from_data(data, n_factors=8, seed=0)
    ck.fit_one_cycle(model, data, epochs=1, progress=False)
    q = Questionnaire(model, data, model.user_prior(data, noise_var=0.3))
    counts = data.frame["item"].value_counts()
    firsts = []
    for _ in range(5):
        firsts.append(q.next_item())
        q.answer(firsts[-1], None)
    assert all(counts[i] >= np.quantile(counts, 0.9) for i in firsts)
