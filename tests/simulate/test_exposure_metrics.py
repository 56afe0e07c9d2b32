"""Exposure metrics against hand-computed cases."""

import numpy as np
import pandas as pd
import pytest

from collabkit.simulate import metrics as m


def shown(lists: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(u, i, p) for u, items in lists.items() for p, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user", "item", "position"])


def test_gini_equal_is_zero_and_one_item_is_n_minus_1_over_n():
    assert m.gini(np.full(7, 3)) == pytest.approx(0.0)
    one = np.zeros(5)
    one[2] = 10
    assert m.gini(one) == pytest.approx(4 / 5)
    assert m.gini(np.zeros(4)) == 0.0
    # (1, 3): sorted x = 1, 3; (2*1-3)*1 + (2*2-3)*3 = 2; / (2 * 4) = 0.25
    assert m.gini(np.array([3, 1])) == pytest.approx(0.25)


def test_gini_over_the_catalogue_is_pinned_by_coverage():
    # (0, 0, 1, 3): (1*1 + 3*3) / (4 * 4) = 0.625 = 1 - (2/4) * (1 - gini of the shown (1, 3))
    padded = np.array([0, 0, 1, 3])
    assert m.gini(padded) == pytest.approx(0.625)
    assert m.gini(padded) == pytest.approx(1 - 2 / 4 * (1 - m.gini(np.array([1, 3]))))


def test_top_share_hand_computed():
    # 200 items, top 1% = 2 items: (50 + 30) / 100
    counts = np.zeros(200)
    counts[:4] = [50, 30, 15, 5]
    assert m.top_share(counts, 0.01) == pytest.approx(0.8)
    assert m.top_share(np.full(100, 2.0), 0.01) == pytest.approx(0.01)  # equal: k / n
    assert m.top_share(np.array([0, 0, 7]), 0.01) == pytest.approx(1.0)  # at least one item
    assert np.isnan(m.top_share(np.zeros(3), 0.01))


def test_jaccard_identical_lists_is_one_and_disjoint_is_zero():
    assert m.jaccard_overlap(shown({1: [1, 2, 3], 2: [3, 2, 1], 3: [1, 2, 3]})) == pytest.approx(
        1.0
    )
    assert m.jaccard_overlap(shown({1: [1, 2], 2: [3, 4], 3: [5, 6]})) == pytest.approx(0.0)
    # {1,2} vs {2,3}: 1 / 3
    assert m.jaccard_overlap(shown({1: [1, 2], 2: [2, 3]})) == pytest.approx(1 / 3)
    assert np.isnan(m.jaccard_overlap(shown({1: [1, 2]})))


def test_coverage_share_utility_and_signal():
    ex = shown({1: [0, 1], 2: [0, 2], 3: [0, 9]})
    assert m.coverage(ex, 10) == pytest.approx(4 / 10)
    assert m.group_share(ex, np.array([1, 2]), np.array([0])) == pytest.approx(0.5)
    assert m.group_share(ex, np.array([3]), np.array([9, 0])) == pytest.approx(1.0)
    assert np.isnan(m.group_share(ex, np.array([7]), np.array([0])))
    consumed = pd.DataFrame({"user": [1, 1, 2], "item": [0, 1, 0], "true": [4.0, 2.0, 5.0]})
    assert m.utility(consumed, np.array([1])) == pytest.approx(3.0)
    assert m.utility(consumed) == pytest.approx(11 / 3)
    log = pd.DataFrame({"user": [1] * 7 + [2, 3, 4], "item": range(10), "rating": 3.0})
    # 4 users; top 1% (at least one user) = user 1 with 7 of 10 rows; top 50% = 2 users = 8 rows
    assert m.top_user_share(log, 0.01) == pytest.approx(0.7)
    assert m.top_user_share(log, 0.5) == pytest.approx(0.8)
    assert np.isnan(m.top_user_share(log.iloc[:0], 0.05))
    assert m.rmse(np.array([1.0, 3.0]), np.array([2.0, 3.0])) == pytest.approx(np.sqrt(0.5))


def test_top_share_of_the_catalogue_counts_items_never_shown():
    # 200 items, 3 shown (60, 30, 10 times): the top 1% is round(2.0) = 2 items, 90 of 100
    counts = np.zeros(200)
    counts[[5, 17, 80]] = [10, 60, 30]
    assert m.top_share(counts, 0.01) == pytest.approx(0.9)
    assert m.top_share(counts[:50], 0.01) == pytest.approx(60 / 70)  # 50 items (5, 17): at least one
    assert m.top_share(np.arange(1, 101), 0.05) == pytest.approx((96 + 97 + 98 + 99 + 100) / 5050)
    assert np.isnan(m.top_share(np.zeros(4), 0.5)) and np.isnan(m.top_share(np.array([]), 0.5))


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
    assert row["gini"] == pytest.approx(m.gini(np.array([2, 1, 1, 0, 0])))
    # the majority (user 1) was shown items 0 and 1 once each: (0, 0, 0, 1, 1) -> (2*1 + 4*1) / (5*2)
    assert row["gini_majority"] == pytest.approx(0.6)
    assert row["top1_share"] == pytest.approx(0.5)  # one item of 5 (item 0) holds 2 of 4 slots
    assert row["top1_share_majority"] == pytest.approx(0.5)


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
