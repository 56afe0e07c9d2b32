"""The simulator's own measures (truth-based) and a round's row, which uses the shared exposure metrics."""

import numpy as np
import pandas as pd
import pytest

from collabkit.evaluate import exposure
from collabkit.simulate import metrics as m


def shown(lists: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(u, i, p) for u, items in lists.items() for p, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user", "item", "position"])


def test_utility_and_rmse():
    consumed = pd.DataFrame({"user": [1, 1, 2], "item": [0, 1, 0], "true": [4.0, 2.0, 5.0]})
    assert m.utility(consumed, np.array([1])) == pytest.approx(3.0)
    assert m.utility(consumed) == pytest.approx(11 / 3)
    assert m.rmse(np.array([1.0, 3.0]), np.array([2.0, 3.0])) == pytest.approx(np.sqrt(0.5))


def test_round_metrics_names():
    ex = shown({1: [0, 1], 2: [0, 2]})
    consumed = pd.DataFrame(
        {"user": [1, 2], "item": [0, 2], "rating": [4.0, 2.0], "true": [4.0, 2.0]}
    )
    row = m.round_metrics(
        ex, consumed, consumed, 5, minority=np.array([2]), favourites=np.array([0])
    )
    assert row["fav_share_majority"] == pytest.approx(0.5)
    assert row["utility_majority"] == pytest.approx(4.0)
    assert row["utility_minority"] == pytest.approx(2.0)
    assert row["gini"] == pytest.approx(exposure.gini(np.array([2, 1, 1, 0, 0])))
    # the majority (user 1) was shown items 0 and 1 once each: (0, 0, 0, 1, 1) -> (2*1 + 4*1) / (5*2)
    assert row["gini_majority"] == pytest.approx(0.6)
    assert row["top1_share"] == pytest.approx(0.5)  # one item of 5 (item 0) holds 2 of 4 slots
    assert row["top1_share_majority"] == pytest.approx(0.5)
    assert row["coverage"] == pytest.approx(3 / 5)
    # popularity in the training log (items 0 and 2 once each): both in the head, 1, 3, 4 the tail
    # lists (0, 1) and (0, 2): ARP mean of (1 + 0) / 2 and (1 + 1) / 2; APLT mean of 1/2 and 0
    assert row["arp"] == pytest.approx(0.75)
    assert row["aplt"] == pytest.approx(0.25)


def test_ndcg_truth_hand_computed():
    # low 1: gains = truth - 1 = (0, 4, 2, 1); item 3 is seen, item 4 unknown to the model (-inf)
    truth = np.array([[1.0, 5.0, 3.0, 2.0, 5.0]])
    seen = np.array([[False, False, False, True, False]])
    scores = np.array([[3.0, 2.0, 1.0, 10.0, -np.inf]])
    # model's top 2 unseen: items 0, 1 -> 0 + 4 / log2(3); ideal: items 1 and 4 (gain 4 each)
    dcg, idcg = 4 / np.log2(3), 4 + 4 / np.log2(3)
    assert m.ndcg_truth(scores, truth, seen, 2, 1.0) == pytest.approx(dcg / idcg)
    assert m.ndcg_truth(truth, truth, seen, 2, 1.0) == pytest.approx(1.0)  # ranks as taste does
    assert np.isnan(m.ndcg_truth(scores[:0], truth[:0], seen[:0], 2, 1.0))



def test_rank_correlation_hand_computed():
    assert m.rank_correlation(np.arange(5), np.arange(5) ** 2) == pytest.approx(1.0)
    assert m.rank_correlation(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    # ties share a rank: (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5)
    assert m.rank_correlation([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.sqrt(0.9))
    assert np.isnan(m.rank_correlation([1, 1, 1], [1, 2, 3]))
