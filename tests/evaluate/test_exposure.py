"""Exposure and popularity metrics (evaluate.exposure) against hand-computed cases."""

import numpy as np
import pandas as pd
import pytest

from collabkit.evaluate import exposure as m


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


def test_coverage_share_and_signal():
    ex = shown({1: [0, 1], 2: [0, 2], 3: [0, 9]})
    assert m.coverage(m.exposure_counts(ex, 10)) == pytest.approx(4 / 10)
    assert m.coverage(np.zeros(0)) == 0.0
    assert m.group_share(ex, np.array([1, 2]), np.array([0])) == pytest.approx(0.5)
    assert m.group_share(ex, np.array([3]), np.array([9, 0])) == pytest.approx(1.0)
    assert np.isnan(m.group_share(ex, np.array([7]), np.array([0])))
    log = pd.DataFrame({"user": [1] * 7 + [2, 3, 4], "item": range(10), "rating": 3.0})
    # 4 users; top 1% (at least one user) = user 1 with 7 of 10 rows; top 50% = 2 users = 8 rows
    assert m.top_user_share(log, 0.01) == pytest.approx(0.7)
    assert m.top_user_share(log, 0.5) == pytest.approx(0.8)
    assert np.isnan(m.top_user_share(log.iloc[:0], 0.05))


def test_top_share_of_the_catalogue_counts_items_never_shown():
    # 200 items, 3 shown (60, 30, 10 times): the top 1% is round(2.0) = 2 items, 90 of 100
    counts = np.zeros(200)
    counts[[5, 17, 80]] = [10, 60, 30]
    assert m.top_share(counts, 0.01) == pytest.approx(0.9)
    assert m.top_share(counts[:50], 0.01) == pytest.approx(60 / 70)  # 50 items (5, 17): at least one
    assert m.top_share(np.arange(1, 101), 0.05) == pytest.approx((96 + 97 + 98 + 99 + 100) / 5050)
    assert np.isnan(m.top_share(np.zeros(4), 0.5)) and np.isnan(m.top_share(np.array([]), 0.5))


def test_list_counts_ignore_padding_and_refuse_foreign_items():
    lists = np.array([[2, 0, -1], [2, 1, 3]])
    assert m.list_counts(lists, 5).tolist() == [1, 1, 2, 1, 0]
    assert m.gini(m.list_counts(lists, 5)) == pytest.approx(m.gini(np.array([1, 1, 2, 1, 0])))
    with pytest.raises(ValueError, match="outside the catalogue"):
        m.list_counts(np.array([[5]]), 5)


def test_lists_of_a_log_follow_positions_and_pad():
    log = pd.DataFrame({"user": [7, 3, 7, 3, 3], "item": [4, 1, 2, 0, 9], "position": [1, 2, 0, 0, 1]})
    assert m.lists_of(log).tolist() == [[0, 9, 1], [2, 4, -1]]  # user 3, then user 7


def test_long_tail_is_everything_outside_the_80_percent_head():
    # counts 50, 30, 10, 6, 4 (total 100): 50 + 30 = 80 reaches 80% with two items
    pop = np.array([10, 50, 4, 30, 6])
    assert m.long_tail(pop).tolist() == [True, False, True, False, True]
    # at 81% the head needs a third item (10)
    assert m.long_tail(pop, 0.81).tolist() == [False, False, True, False, True]
    assert m.long_tail(pop, 1.0).tolist() == [False] * 5
    assert m.long_tail(np.array([0, 0])).tolist() == [True, True]  # nothing rated: all tail
    assert m.long_tail(np.array([5, 0, 5]), 1.0).tolist() == [False, True, False]  # unrated: tail
    with pytest.raises(ValueError, match="head_share"):
        m.long_tail(pop, 0.0)


def test_arp_and_aplt_hand_computed():
    pop = np.array([10, 50, 4, 30, 6])
    tail = m.long_tail(pop)  # items 0, 2, 4
    lists = np.array([[1, 3], [0, 2], [1, -1], [-1, -1]])
    # (50 + 30) / 2, (10 + 4) / 2, 50 / 1 (padding skipped), nothing shown: NaN
    assert m.arp(lists, pop)[:3].tolist() == [40.0, 7.0, 50.0] and np.isnan(m.arp(lists, pop)[3])
    assert m.aplt(lists, tail)[:3].tolist() == [0.0, 1.0, 0.0] and np.isnan(m.aplt(lists, tail)[3])
    with pytest.raises(ValueError, match="outside"):
        m.arp(np.array([[5]]), pop)
