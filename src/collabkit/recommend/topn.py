"""Top-N: score every candidate item for a batch of users at once, drop what they have seen."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from collabkit.data.interactions import Ratings
from collabkit.models.base import CollabModel


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


def top_n(
    model: CollabModel,
    users: Tensor | np.ndarray,
    n: int = 10,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
    batch_users: int = 1024,
    reprs: Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores), each (U, n), best first, for user indices ``users`` (-1 = unknown user).

    ``seen`` (CSR from ``seen_csr``) removes each user's already-rated items; ``candidates``
    (item indices) restricts the catalogue. Short lists are padded with item -1 and score NaN.
    Ties break towards the lower item index, so results are deterministic. ``reprs`` (U, Du)
    scores these user representations instead of looking the users up (folded-in or fallback
    users); ``users`` then only index the rows of ``seen``.
    """
    users = torch.as_tensor(np.asarray(users), dtype=torch.int64)
    allowed = None
    if candidates is not None:
        allowed = torch.zeros(len(model.items), dtype=torch.bool)
        allowed[torch.as_tensor(np.asarray(candidates), dtype=torch.int64)] = True
    out_items, out_scores = [], []
    for s in range(0, len(users), batch_users):
        ub = users[s : s + batch_users]
        if reprs is None:
            scores = model.score_all_items(ub).double()  # (B, n_items)
        else:
            scores = score_reprs(model, reprs[s : s + batch_users]).double()
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        if seen is not None:
            _mask_seen(scores, ub.numpy(), *seen)
        k = min(n, scores.shape[1])
        # stable tie-break: subtract a tiny index-proportional amount is fragile; sort instead
        order = torch.sort(-scores, dim=1, stable=True).indices[:, :k]
        top = torch.gather(scores, 1, order)
        items = torch.where(torch.isfinite(top), order, torch.full_like(order, -1))
        top = torch.where(torch.isfinite(top), top, torch.full_like(top, float("nan")))
        if k < n:
            items = torch.cat([items, torch.full((len(ub), n - k), -1)], 1)
            top = torch.cat([top, torch.full((len(ub), n - k), float("nan"), dtype=top.dtype)], 1)
        out_items.append(items.numpy())
        out_scores.append(top.float().numpy())
    if not out_items:
        return np.zeros((0, n), dtype=np.int64), np.zeros((0, n), dtype=np.float32)
    return np.concatenate(out_items), np.concatenate(out_scores)


@torch.no_grad()
def score_reprs(model: CollabModel, ur: Tensor, batch_users: int = 256) -> Tensor:
    """(U, Du) user representations -> (U, n_items) scores of every item.

    What ``score_all_items`` does after its lookup: one matrix product for the dot family
    (``_combine_all``), the generic pairwise head otherwise.
    """
    was = model.training
    model.eval()
    ur = ur.to(torch.float32)
    ir = model.item_repr(torch.arange(len(model.items)))
    combine = getattr(model, "_combine_all", None)
    if combine is not None:
        out = combine(ur, ir)
    else:
        n = ir.shape[0]
        rows = [
            model.head(b.repeat_interleave(n, 0), ir.repeat(len(b), 1)).view(len(b), n)
            for b in ur.split(batch_users)
        ]
        out = torch.cat(rows) if rows else torch.empty(0, n)
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
