"""Top-N: score every candidate item for a batch of users at once, drop what they have seen."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from collabkit.data.interactions import Ratings
from collabkit.models.base import SCORE_CELLS, CollabModel


def seen_csr(model: CollabModel, ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Each known user's known items as CSR (indptr over model user indices, item indices)."""
    indptr, items, _ = rated_csr(model, ratings)
    return indptr, items


def rated_csr(model: CollabModel, ratings: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like ``seen_csr`` plus the ratings, aligned with the item indices (for explanations)."""
    u = model.users.lookup(ratings.frame["user"], strict=False)
    i = model.items.lookup(ratings.frame["item"], strict=False)
    r = ratings.frame["rating"].to_numpy(dtype=np.float32)
    keep = (u >= 0) & (i >= 0)
    u, i, r = u[keep], i[keep], r[keep]
    order = np.lexsort((i, u))
    counts = np.bincount(u, minlength=len(model.users))
    return np.r_[0, np.cumsum(counts)], i[order], r[order]


#: top_n scores about this many (user, item) cells per chunk of users (16M floats: 64 MB)
TOPN_CELLS = 1 << 24


def top_n(
    model: CollabModel,
    users: Tensor | np.ndarray,
    n: int = 10,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
    batch_users: int | None = None,
    reprs: Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores), each (U, n), best first, for user indices ``users`` (-1 = unknown user).

    ``seen`` (CSR from ``seen_csr``) removes each user's already-rated items; ``candidates``
    (item indices) restricts the catalogue. Short lists are padded with item -1 and score NaN.
    Ties break towards the lower item index, so results are deterministic. ``reprs`` (U, Du)
    scores these user representations instead of looking the users up (folded-in or fallback
    users); ``users`` then only index the rows of ``seen``. Users are scored ``batch_users`` at a
    time (default: TOPN_CELLS // n_items), so memory is bounded by the chunk, not by U.
    """
    users = torch.as_tensor(np.asarray(users), dtype=torch.int64)
    n_items = len(model.items)
    batch_users = batch_users or max(1, TOPN_CELLS // max(1, n_items))
    allowed = None
    if candidates is not None:
        allowed = torch.zeros(n_items, dtype=torch.bool)
        allowed[torch.as_tensor(np.asarray(candidates), dtype=torch.int64)] = True
    out_items = np.full((len(users), n), -1, dtype=np.int64)
    out_scores = np.full((len(users), n), np.nan, dtype=np.float32)
    score = model.scorer() if reprs is None else None  # the item side, prepared once
    for s in range(0, len(users), batch_users):
        ub = users[s : s + batch_users]
        if score is not None:
            scores = score(ub).float()  # (B, n_items)
        else:
            scores = score_reprs(model, reprs[s : s + batch_users]).float()
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        if seen is not None:
            _mask_seen(scores, ub.numpy(), *seen)
        items, top = _top_k(scores, min(n, n_items))
        keep = torch.isfinite(top)
        k = items.shape[1]
        out_items[s : s + len(ub), :k] = torch.where(keep, items, -1).numpy()
        out_scores[s : s + len(ub), :k] = torch.where(keep, top, float("nan")).numpy()
    return out_items, out_scores


def _top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(B, N) scores -> (items, scores), each (B, k), best first, ties to the lower item index.

    One torch.topk of k + 1 per row: where the k-th and (k+1)-th scores differ the top k are
    settled and only their order needs the tie rule (a sort of k numbers). The rows where they
    tie (or hold a NaN) go through ``_top_k_ties``. Never a sort of the B x N scores.
    """
    n = scores.shape[1]
    if k == 0:
        return torch.zeros(len(scores), 0, dtype=torch.int64), scores[:, :0]
    top, items = torch.topk(scores, min(k + 1, n), dim=1)
    ties = torch.isnan(top).any(1)
    if k < n:
        ties |= top[:, k - 1] == top[:, k]
    top, items = top[:, :k], items[:, :k]
    by_item = items.argsort(1)  # then a stable sort by score keeps equal scores in item order
    items, top = items.gather(1, by_item), top.gather(1, by_item)
    order = torch.sort(-top, dim=1, stable=True).indices
    items, top = items.gather(1, order), top.gather(1, order)
    if ties.any():
        rows = ties.nonzero().squeeze(1)
        items[rows], top[rows] = _top_k_ties(scores[rows], k)
    return items, top


def _top_k_ties(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``_top_k`` for rows tied at the k-th place: every item above the k-th best score t is
    kept, and of the items equal to t the lowest-indexed ones fill the list. NaN ranks last."""
    scores = scores.masked_fill(scores.isnan(), -torch.inf)
    t = torch.topk(scores, k, dim=1, sorted=False).values.min(1, keepdim=True).values  # (B, 1)
    above = scores > t
    tied = scores == t
    need = k - above.sum(1, keepdim=True)
    take = above | (tied & (tied.cumsum(1) <= need))  # exactly k per row, in item order
    items = take.nonzero()[:, 1].view(len(scores), k)
    top = scores.gather(1, items)
    order = torch.sort(-top, dim=1, stable=True).indices  # stable: equal scores keep item order
    return items.gather(1, order), top.gather(1, order)


@torch.no_grad()
def score_reprs(model: CollabModel, ur: Tensor) -> Tensor:
    """(U, Du) user representations -> (U, n_items) scores of every item.

    What ``score_all_items`` does after its lookup: one matrix product for the dot family
    (``_combine_all``), the generic pairwise head otherwise, fed SCORE_CELLS numbers at a time.
    """
    was = model.training
    model.eval()
    ur = ur.to(torch.float32)
    ir = model.item_repr(torch.arange(len(model.items)))
    n = ir.shape[0]
    combine = getattr(model, "_combine_all", None)
    if combine is not None:
        out = combine(ur, ir)
    else:
        step = max(1, SCORE_CELLS // max(1, ur.shape[1] + ir.shape[1]))  # pairs per head call
        total = len(ur) * n
        spans = (torch.arange(s, min(s + step, total)) for s in range(0, total, step))
        flat = [model.head(ur[p // n], ir[p % n]) for p in spans]
        out = torch.cat(flat).view(len(ur), n) if flat else torch.empty(0, n)
    model.train(was)
    return out


def _mask_seen(scores: Tensor, users: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> None:
    """Set scores[b, item] = -inf for every item user b has seen (vectorised over the batch)."""
    known = users >= 0
    starts, ends = (
        np.where(known, indptr[np.maximum(users, 0)], 0),
        np.where(known, indptr[np.maximum(users, 0) + 1], 0),
    )
    counts = ends - starts
    if counts.sum() == 0:
        return
    rows = np.repeat(np.arange(len(users)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = indices[np.repeat(starts, counts) + offsets]
    scores[torch.from_numpy(rows), torch.from_numpy(cols)] = -np.inf
