"""Rating and ranking metrics against hand computations, a loop reference and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collabkit.evaluate.metrics import (
    hits_matrix,
    per_user_ranking_metrics,
    ranking_metrics,
    rating_metrics,
)

L2 = math.log2
BOUNDED = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage")


def to_csr(relevant: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    counts = [len(r) for r in relevant]
    return np.r_[0, np.cumsum(counts)].astype(np.int64), np.concatenate(
        [np.asarray(r, dtype=np.int64) for r in relevant] + [np.empty(0, np.int64)]
    )


# ----------------------------------------------------------------------------- rating metrics


def test_rating_metrics_hand_values() -> None:
    # errors = pred - true = [0.5, -1, 2, 0]
    # mse = (0.25 + 1 + 4 + 0) / 4 = 1.3125; rmse = sqrt(1.3125); mae = (0.5 + 1 + 2 + 0) / 4 = 0.875
    out = rating_metrics(np.array([3.0, 4.0, 1.0, 5.0]), np.array([3.5, 3.0, 3.0, 5.0]))
    assert out == pytest.approx({"mse": 1.3125, "rmse": math.sqrt(1.3125), "mae": 0.875})
    assert set(out) == {"mse", "rmse", "mae"}


def test_rating_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="y_pred"):
        rating_metrics(np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="at least one"):
        rating_metrics(np.array([]), np.array([]))


# ----------------------------------------------------------------------------- ranking: hand cases


def test_known_case_k5() -> None:
    # rec [1,2,3,4,5], relevant {1,3,6}, k=5: hits at ranks 1 and 3.
    # precision = 2/5; recall = 2/3; DCG = 1/log2(2) + 1/log2(4) = 1 + 1/2
    # IDCG over min(3,5)=3 items = 1 + 1/log2(3) + 1/log2(4)
    # AP = (P@1 + P@3) / min(3,5) = (1 + 2/3) / 3; mrr = 1/1; hit_rate = 1
    out = ranking_metrics(np.array([[1, 2, 3, 4, 5]]), [np.array([1, 3, 6])], k=5)
    assert out["precision@5"] == pytest.approx(0.4)
    assert out["recall@5"] == pytest.approx(2 / 3)
    assert out["ndcg@5"] == pytest.approx((1 + 1 / L2(4)) / (1 + 1 / L2(3) + 1 / L2(4)))
    assert out["map@5"] == pytest.approx((1 + 2 / 3) / 3)
    assert out["mrr@5"] == 1.0
    assert out["hit_rate@5"] == 1.0
    assert out["n_users"] == 1
    assert set(out) == {f"{m}@5" for m in BOUNDED if m != "coverage"} | {"n_users"}


def test_perfect_ranking_scores_one() -> None:
    # Every top-k item is relevant and |R| >= k, or all of R sits at the top: ndcg = map = 1.
    rec = np.array([[7, 8, 9, 0], [4, 5, 1, 2]])
    relevant = [np.array([9, 8, 7]), np.array([5, 4, 6, 3, 1])]  # user 1: |R|=5 > k=3
    out = ranking_metrics(rec, relevant, k=3)
    assert out["ndcg@3"] == pytest.approx(1.0)
    assert out["map@3"] == pytest.approx(1.0)
    assert out["precision@3"] == pytest.approx(1.0)
    assert out["mrr@3"] == 1.0
    # recall: user 0 -> 3/3, user 1 -> 3/5; mean 0.8
    assert out["recall@3"] == pytest.approx(0.8)


def test_user_without_relevant_items_is_excluded() -> None:
    # user 0: rec [1,2], R={2}: hit at rank 2 -> precision 1/2, recall 1, mrr 1/2,
    #   ndcg = (1/log2 3) / 1, map = (1/2) / 1
    # user 1: R = {} -> excluded entirely (would otherwise drag every mean to half)
    # user 2: rec [3,4], R={3}: hit at rank 1 -> precision 1/2, recall 1, everything else 1
    rec = np.array([[1, 2], [1, 2], [3, 4]])
    relevant = [np.array([2]), np.array([], dtype=np.int64), np.array([3])]
    out = ranking_metrics(rec, relevant, k=2)
    assert out["n_users"] == 2
    assert out["precision@2"] == pytest.approx(0.5)
    assert out["recall@2"] == pytest.approx(1.0)
    assert out["mrr@2"] == pytest.approx((0.5 + 1) / 2)
    assert out["ndcg@2"] == pytest.approx((1 / L2(3) + 1) / 2)
    assert out["map@2"] == pytest.approx((0.5 + 1) / 2)
    frame = per_user_ranking_metrics(rec, relevant, k=2)
    assert list(frame.index) == [0, 2]
    assert list(frame["n_relevant"]) == [1, 1]


def test_k_larger_than_list_and_padding() -> None:
    # L = 3 < k = 5. user 0: rec [4, 2, -1], R = {2, 9}:
    #   hit at rank 2 only; precision = 1/5 (k, not list length); recall = 1/2
    #   DCG = 1/log2(3); IDCG over min(2,5)=2 items = 1 + 1/log2(3)
    #   AP = (1/2) / 2 = 1/4; mrr = 1/2
    # user 1: rec [-1, -1, -1] (no candidates), R = {0}: everything 0
    rec = np.array([[4, 2, -1], [-1, -1, -1]])
    relevant = [np.array([2, 9]), np.array([0])]
    frame = per_user_ranking_metrics(rec, relevant, k=5)
    u0, u1 = frame.loc[0], frame.loc[1]
    assert u0["precision@5"] == pytest.approx(1 / 5)
    assert u0["recall@5"] == pytest.approx(1 / 2)
    assert u0["ndcg@5"] == pytest.approx((1 / L2(3)) / (1 + 1 / L2(3)))
    assert u0["map@5"] == pytest.approx(1 / 4)
    assert u0["mrr@5"] == pytest.approx(1 / 2)
    assert (u1.drop(["n_relevant"]) == 0).all()
    assert hits_matrix(rec, relevant, k=5).shape == (2, 3)  # (n_users, min(k, L))


def test_padding_never_hits() -> None:
    # -1 is padding, not an item: with R = {0}, a padded row has no hits.
    rec = np.array([[-1, 0, -1]])
    hits = hits_matrix(rec, [np.array([0])], k=3)
    assert hits.tolist() == [[False, True, False]]


def test_hits_matrix_truncates_to_k() -> None:
    rec = np.array([[5, 6, 7, 8], [8, 7, 6, 5]])
    relevant = [np.array([8]), np.array([8, 6])]
    # k=2: user 0 top [5,6] -> no hits; user 1 top [8,7] -> hit at rank 1
    assert hits_matrix(rec, relevant, k=2).tolist() == [[False, False], [True, False]]


def test_duplicate_relevant_items_count_once() -> None:
    out = ranking_metrics(np.array([[1, 2]]), [np.array([1, 1, 3])], k=2)
    assert out["recall@2"] == pytest.approx(1 / 2)  # |R| = |{1, 3}| = 2


def test_map_uses_min_relevant_k_denominator() -> None:
    # rec [0,1,2], R = {2,5,6,7}, k=3: hit at rank 3, P@3 = 1/3, AP = (1/3)/min(4,3) = 1/9
    out = ranking_metrics(np.array([[0, 1, 2]]), [np.array([2, 5, 6, 7])], k=3)
    assert out["map@3"] == pytest.approx(1 / 9)
    assert out["mrr@3"] == pytest.approx(1 / 3)


def test_coverage() -> None:
    # Top-2 over the *evaluated* users: user 0 {0,1}, user 2 {1,3}; user 1 (no R) not counted,
    # its items 4,5 ignored; item 2 of user 0 is beyond k. Union {0,1,3} -> 3/10.
    rec = np.array([[0, 1, 2], [4, 5, -1], [1, 3, -1]])
    relevant = [np.array([0]), np.array([], dtype=np.int64), np.array([9])]
    out = ranking_metrics(rec, relevant, k=2, n_items=10)
    assert out["coverage@2"] == pytest.approx(3 / 10)
    # appearances over the 10 items: item 1 twice, items 0 and 3 once, 7 items never:
    # sorted ascending, sum (2k - n - 1) x_k = 5*1 + 7*1 + 9*2 = 30, over n * total = 10 * 4
    assert out["gini@2"] == pytest.approx(0.75)
    # padding is not an item: user with only [-1,-1] shows nothing
    out = ranking_metrics(
        np.array([[-1, -1], [2, -1]]), [np.array([0]), np.array([0])], k=2, n_items=4
    )
    assert out["coverage@2"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="catalogue"):
        ranking_metrics(np.array([[0, 7]]), [np.array([0])], k=2, n_items=5)


def test_novelty() -> None:
    # counts per item 0..4: [10, 50, 50, 1, 20] -> popularity ranks (ties share the best):
    #   item1=1, item2=1, item4=3, item0=4, item3=5
    # user 0 top-2 [3, 1] -> (5 + 1) / 2 = 3
    # user 1 top-2 [0, -1] -> 4 / 1 = 4 (padding skipped)
    # user 2 top-2 [-1, -1] -> undefined, left out of the mean
    # novelty = (3 + 4) / 2 = 3.5
    pop = np.array([10, 50, 50, 1, 20])
    rec = np.array([[3, 1, 2], [0, -1, -1], [-1, -1, -1]])
    relevant = [np.array([0]), np.array([0]), np.array([0])]
    out = ranking_metrics(rec, relevant, k=2, item_popularity=pop)
    assert out["novelty@2"] == pytest.approx(3.5)
    frame = per_user_ranking_metrics(rec, relevant, k=2, item_popularity=pop)
    assert frame["novelty@2"].tolist()[:2] == [3.0, 4.0]
    assert math.isnan(frame["novelty@2"].iloc[2])
    assert "coverage@2" not in out and "gini@2" not in out


def test_popularity_bias_arp_and_aplt() -> None:
    # counts [10, 50, 50, 1, 20], total 131: the head holding 80% (104.8) is items 1, 2 (100) and
    # 4 (120); the long tail is items 0 and 3.
    # user 0 top-2 [3, 1]: ARP (1 + 50) / 2 = 25.5, APLT 1/2; user 1 [0]: ARP 10, APLT 1
    pop = np.array([10, 50, 50, 1, 20])
    rec = np.array([[3, 1, 2], [0, -1, -1], [-1, -1, -1]])
    relevant = [np.array([0]), np.array([0]), np.array([0])]
    frame = per_user_ranking_metrics(rec, relevant, k=2, item_popularity=pop)
    assert frame["arp@2"].tolist()[:2] == [25.5, 10.0] and math.isnan(frame["arp@2"].iloc[2])
    assert frame["aplt@2"].tolist()[:2] == [0.5, 1.0]
    out = ranking_metrics(rec, relevant, k=2, item_popularity=pop)
    assert out["arp@2"] == pytest.approx(17.75) and out["aplt@2"] == pytest.approx(0.75)


def test_list_and_csr_give_identical_results() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 50, 30
    rec = np.stack([rng.permutation(n_items)[:8] for _ in range(n_users)])
    rec[rng.random(rec.shape) < 0.1] = -1  # sprinkle padding (positions still distinct)
    relevant = [rng.choice(n_items, size=rng.integers(0, 6), replace=False) for _ in range(n_users)]
    pop = rng.integers(0, 100, n_items)
    a = ranking_metrics(rec, relevant, k=5, n_items=n_items, item_popularity=pop)
    b = ranking_metrics(rec, to_csr(relevant), k=5, n_items=n_items, item_popularity=pop)
    assert a == b
    assert np.array_equal(hits_matrix(rec, relevant, 10), hits_matrix(rec, to_csr(relevant), 10))


def test_ranking_metrics_is_mean_of_per_user() -> None:
    rec = np.array([[1, 2, 3], [3, 2, 1], [0, 4, -1]])
    relevant = [np.array([2]), np.array([1, 3]), np.array([4, 0, 1])]
    frame = per_user_ranking_metrics(rec, relevant, k=3)
    out = ranking_metrics(rec, relevant, k=3)
    for name in ("precision@3", "recall@3", "ndcg@3", "map@3", "hit_rate@3", "mrr@3"):
        assert out[name] == pytest.approx(frame[name].mean())


def test_ranking_input_errors() -> None:
    rec = np.array([[0, 1]])
    with pytest.raises(ValueError, match="no user"):
        ranking_metrics(rec, [np.array([], dtype=np.int64)], k=2)
    with pytest.raises(ValueError, match="rows"):
        ranking_metrics(rec, [np.array([0]), np.array([1])], k=2)
    with pytest.raises(ValueError, match="indptr"):
        ranking_metrics(rec, (np.array([0, 1, 2]), np.array([0, 1])), k=2)
    with pytest.raises(ValueError, match="k must"):
        ranking_metrics(rec, [np.array([0])], k=0)
    with pytest.raises(ValueError, match="repeat"):
        ranking_metrics(np.array([[0, 0]]), [np.array([0])], k=2)
    with pytest.raises(ValueError, match="negative"):
        ranking_metrics(np.array([[0, -2]]), [np.array([0])], k=2)
    with pytest.raises(ValueError, match="2-D"):
        ranking_metrics(np.array([0, 1]), [np.array([0])], k=2)


# ----------------------------------------------------------------------------- reference + properties


def reference(rec: np.ndarray, relevant: list[np.ndarray], k: int) -> list[dict[str, float]]:
    """Textbook per-user loop, straight from the definitions."""
    rows = []
    for items, rel in zip(rec, relevant):
        rel_set = {int(x) for x in rel}
        if not rel_set:
            continue
        top = [int(x) for x in items[:k]]
        hit = [x != -1 and x in rel_set for x in top]
        n_hits, m = sum(hit), min(len(rel_set), k)
        dcg = sum(1 / L2(r + 2) for r, h in enumerate(hit) if h)
        idcg = sum(1 / L2(r + 2) for r in range(m))
        ap = sum(sum(hit[: r + 1]) / (r + 1) for r, h in enumerate(hit) if h) / m
        first = next((r + 1 for r, h in enumerate(hit) if h), None)
        rows.append(
            {
                "n_relevant": len(rel_set),
                "precision": n_hits / k,
                "recall": n_hits / len(rel_set),
                "ndcg": dcg / idcg,
                "map": ap,
                "hit_rate": float(n_hits > 0),
                "mrr": 1 / first if first else 0.0,
            }
        )
    return rows


@st.composite
def ranking_case(draw: st.DrawFn) -> tuple[np.ndarray, list[np.ndarray], int, int]:
    n_items = draw(st.integers(1, 12))
    n_users = draw(st.integers(1, 6))
    width = draw(st.integers(0, n_items))
    k = draw(st.integers(1, 8))
    rows, relevant = [], []
    for _ in range(n_users):
        perm = draw(st.permutations(range(n_items)))
        n_real = draw(st.integers(0, width))
        row = list(perm[:n_real]) + [-1] * (width - n_real)
        rows.append(row)
        relevant.append(
            np.array(draw(st.lists(st.integers(0, n_items - 1), max_size=6)), dtype=np.int64)
        )
    rec = np.array(rows, dtype=np.int64).reshape(n_users, width)
    return rec, relevant, k, n_items


@settings(max_examples=150, deadline=None)
@given(ranking_case(), st.data())
def test_properties_and_reference(
    case: tuple[np.ndarray, list[np.ndarray], int, int], data: st.DataObject
) -> None:
    rec, relevant, k, n_items = case
    pop = np.array(data.draw(st.lists(st.integers(0, 5), min_size=n_items, max_size=n_items)))
    frame = per_user_ranking_metrics(rec, relevant, k, item_popularity=pop)
    expected = reference(rec, relevant, k)
    assert len(frame) == len(expected)
    for (_, got), want in zip(frame.iterrows(), expected):
        assert got["n_relevant"] == want["n_relevant"]
        for name in BOUNDED[:-1]:
            assert got[f"{name}@{k}"] == pytest.approx(want[name])
            assert 0.0 <= got[f"{name}@{k}"] <= 1.0 + 1e-12
        # precision * k == hits == recall * |R|
        assert got[f"precision@{k}"] * k == pytest.approx(got[f"recall@{k}"] * got["n_relevant"])
    if not expected:
        with pytest.raises(ValueError):
            ranking_metrics(rec, relevant, k, n_items=n_items, item_popularity=pop)
        return
    out = ranking_metrics(rec, relevant, k, n_items=n_items, item_popularity=pop)
    assert out["n_users"] == len(expected)
    for name in BOUNDED:
        assert 0.0 <= out[f"{name}@{k}"] <= 1.0 + 1e-12
    novelty = out[f"novelty@{k}"]
    assert math.isnan(novelty) or 1.0 <= novelty <= n_items
