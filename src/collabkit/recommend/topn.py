"""Top-N: score every candidate item for a batch of users at once, drop what they have seen."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from collabkit.core import device as devices
from collabkit.data.interactions import Ratings
from collabkit.models.base import CollabModel, Scorer


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


#: top_n scores about this many (user, item) cells per chunk of users, summed over the model's
#: parts (16M floats: 64 MB): an ensemble's members each score the chunk, so it holds fewer users
#: (on Epinions' 255 k items, a 7-member blend: recommend-all 339 -> 284 s, 1.30 -> 1.10 GB)
TOPN_CELLS = 1 << 24


def top_n(
    model: CollabModel,
    users: Tensor | np.ndarray,
    n: int = 10,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
    batch_users: int | None = None,
    reprs: Tensor | None = None,
    scorer: Scorer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores), each (U, n), best first, for user indices ``users`` (-1 = unknown user).

    ``seen`` (CSR from ``seen_csr``) removes each user's already-rated items; ``candidates``
    (item indices) restricts the catalogue. Short lists are padded with item -1 and score NaN.
    Ties break towards the lower item index, so results are deterministic. ``reprs`` (U, Du)
    scores these user representations instead of looking the users up (folded-in or fallback
    users); ``users`` then only index the rows of ``seen``. Users are scored ``batch_users`` at a
    time (default: TOPN_CELLS // (n_items x the model's parts)), so memory is bounded by the
    chunk, not by U. Scores and top-k run on ``core.device.current()``; only each chunk's n best
    come back to the CPU.
    ``scorer``: the model's ``scorer()`` prepared once by the caller (the serving engine), on
    the CPU; by default it is prepared here.
    """
    users = torch.as_tensor(np.asarray(users), dtype=torch.int64)
    n_items = len(model.items)
    batch_users = batch_users or max(1, TOPN_CELLS // max(1, n_items * len(model.components())))
    allowed = None
    if candidates is not None:
        allowed = torch.zeros(n_items, dtype=torch.bool)
        allowed[torch.as_tensor(np.asarray(candidates), dtype=torch.int64)] = True
    device = devices.current()
    out_items = np.full((len(users), n), -1, dtype=np.int64)
    out_scores = np.full((len(users), n), np.nan, dtype=np.float32)
    with devices.placed(model, device), devices.factories(device):
        scorer = scorer or model.scorer()  # the item side, prepared once
        if scorer.shared is not None:
            return _top_n_shared(model, scorer, users, n, seen, allowed, reprs)
        if allowed is not None:
            allowed = allowed.to(device)
        for s in range(0, len(users), batch_users):
            ub = users[s : s + batch_users]
            ur = model.user_reprs(ub.to(device)) if reprs is None else reprs[s : s + batch_users].to(device)
            scores = scorer.rank(ur.to(torch.float32)).float()  # (B, n_items), ordered like the scores
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            if seen is not None:
                _mask_seen(scores, ub.numpy(), *seen)
            items, top = _top_k(scores, min(n, n_items))
            keep = torch.isfinite(top)  # -inf: seen or not a candidate
            top = scorer.finish(top)
            k = items.shape[1]
            out_items[s : s + len(ub), :k] = torch.where(keep, items, -1).cpu().numpy()
            out_scores[s : s + len(ub), :k] = torch.where(keep, top, float("nan")).cpu().numpy()
    return out_items, out_scores


#: users per chunk of the shared-ranking path (memory: a few numbers per seen item of the chunk)
SHARED_USERS = 1 << 16


@torch.no_grad()
def _top_n_shared(
    model: CollabModel,
    scorer: Scorer,
    users: Tensor,
    n: int,
    seen: tuple[np.ndarray, np.ndarray] | None,
    allowed: Tensor | None,
    reprs: Tensor | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``top_n`` for a model whose ranking is the same for every user (``Scorer.shared``).

    The catalogue is sorted once (ties to the lower index); a user's j-th unseen item is then at
    rank j + #{i : s_i - i <= j}, where s_0 < s_1 < ... are the ranks of the items they have seen
    (s_i - i does not decrease), so one searchsorted per chunk finds every list. Only the n
    chosen items per user are scored, with the same user representations as the full path.
    """
    order = scorer.order
    if allowed is not None:
        order = order[allowed.numpy()[order]]
    m = len(order)
    rank = np.full(len(model.items), m, dtype=np.int64)  # not a candidate: past every rank
    rank[order] = np.arange(m)
    out_items = np.full((len(users), n), -1, dtype=np.int64)
    u_all = users.numpy()
    j = np.arange(n)
    for s in range(0, len(u_all), SHARED_USERS):
        ub = u_all[s : s + SHARED_USERS]
        b = len(ub)
        if seen is not None:
            rows, cols = seen_cells(ub, *seen)
            r = rank[cols]
            keep = r < m
            key = np.unique(rows[keep] * (m + 1) + r[keep])  # by user, then rank; once each
            start = np.searchsorted(key, np.arange(b) * (m + 1))
            row_of = key // (m + 1)
            adjusted = key - (np.arange(len(key)) - start[row_of])
            queries = np.arange(b)[:, None] * (m + 1) + np.minimum(j, m)[None, :]  # (b, n), in-row
            at = j[None, :] + np.searchsorted(adjusted, queries, side="right") - start[:, None]
        else:
            at = np.broadcast_to(j, (b, n))
        found = at < m
        out_items[s : s + b] = np.where(found, order[np.minimum(at, m - 1)] if m else -1, -1)
    out_scores = np.full((len(users), n), np.nan, dtype=np.float32)
    rows, cols = np.nonzero(out_items >= 0)
    if len(rows):
        who = torch.from_numpy(rows)
        ur = model.user_reprs(users[who]) if reprs is None else reprs[who]
        scored = model.pair_scores(ur, torch.from_numpy(out_items[rows, cols]))
        out_scores[rows, cols] = scored.float().numpy()
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
    if scores.numel() <= SMALL_CELLS and scores.device.type == "cpu":
        items_np, top_np = _top_k_rows(scores.detach().numpy(), k)
        return torch.from_numpy(items_np), torch.from_numpy(top_np)
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


#: up to this many scores (a served request on a small catalogue, one user's recommendations to
#: explain) ``_top_k`` runs in numpy: three calls instead of a dozen torch calls of ~10 us each.
#: Its full sort is ~60 us for 2,000 scores, so larger ones (a batch, a large catalogue) go to
#: torch.topk, which never sorts a row
SMALL_CELLS = 1 << 12


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``_top_k`` for a few rows in numpy, the same rule in one call: a stable sort of the negated
    scores (best first, ties to the lower index), NaN ranking last as -inf."""
    s = np.where(np.isnan(scores), -np.inf, scores)
    items = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return items, np.take_along_axis(s, items, 1)


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


def _mask_seen(scores: Tensor, users: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> None:
    """Set scores[b, item] = -inf for every item user b has seen (vectorised over the batch)."""
    rows, cols = seen_cells(users, indptr, indices)
    if len(rows):
        at = torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)
        scores[at] = -np.inf


def seen_cells(users: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in ``users``, item) of every item each user has seen; an unknown user (-1) has none."""
    if len(users) == 1:  # a served request: one slice
        cols = indices[indptr[users[0]] : indptr[users[0] + 1]] if users[0] >= 0 else indices[:0]
        return np.zeros(len(cols), dtype=np.int64), cols
    known = users >= 0
    starts = np.where(known, indptr[np.maximum(users, 0)], 0)
    counts = np.where(known, indptr[np.maximum(users, 0) + 1], 0) - starts
    rows = np.repeat(np.arange(len(users)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, indices[np.repeat(starts, counts) + offsets]
