"""Approximate top-N for large catalogues: an inverted-file index over the items' inner-product keys.

A kind whose ranking is an inner product declares it (``Scorer.user_side``/``item_side``:
rank(ur) = user_side(ur) @ item_side.T, the scores an increasing map of it). For such a kind the
serving engine builds an ``ItemIndex`` when its catalogue holds ANN_ITEMS items or more; below
that, or for any other kind, search stays exact.

The maximum-inner-product search becomes a nearest-neighbour one (Bachrach et al., RecSys 2014):
each key k gets one more coordinate sqrt(M - |k|^2), M the largest |k|^2, and each query a 0, so
|q - k'|^2 = |q|^2 + M - 2 q.k ranks items like q.k. The keys live in a faiss IndexIVFFlat
(L2; 4 sqrt(N) lists, k-means on a sample): measured on clustered low-rank factors it needs half
the probes of the same index searched by inner product for the same recall. ``nprobe`` is set at
build: raised by half from MIN_PROBES until recall@10 against exact search, on a sample of the model's
own users, reaches RECALL. A search over-fetches n + (the user's seen items) candidates, drops the
seen ones and scores the rest exactly with the scorer's own sides: every returned score is the
exact one, only which items make the list is approximate.

faiss is imported only when an index is built, so importing collabkit is not slowed by it; it
builds on every core, then searches on one (a serving worker has one core).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from collabkit.models.base import CollabModel, Scorer
from collabkit.recommend.topn import seen_cells

#: catalogues of this many items or more are searched approximately (the serving setting's default)
ANN_ITEMS = 1_000_000
#: recall@10 against exact search that the calibration of nprobe aims for (the promise is 0.95)
RECALL = 0.97
MIN_PROBES = 8
#: users whose exact top-10 calibrates nprobe
CALIBRATION_USERS = 256
#: k-means trains on this many keys per list (faiss asks for at least 39)
TRAIN_PER_LIST = 40
#: users per search batch (the exact re-scoring holds B x 2n x D numbers)
BATCH_USERS = 1024


def indexable(scorer: Scorer) -> bool:
    """True when the kind declares an inner-product ranking and it varies by user."""
    return scorer.item_side is not None and scorer.user_side is not None and scorer.shared is None


class ItemIndex:
    """An IVF index over a scorer's item side, with nprobe calibrated on ``users`` (U, Du) user
    representations (see the module docstring); ``recall`` is the calibration's recall@10."""

    def __init__(self, scorer: Scorer, users: Tensor, seed: int = 0) -> None:
        import faiss  # only here: a large catalogue (module docstring)

        t0 = time.perf_counter()
        self.scorer = scorer
        keys = scorer.item_side.detach().float().cpu().numpy()  # (N, D)
        norms = (keys.astype(np.float64) ** 2).sum(1)
        lifted = np.hstack([keys, np.sqrt(norms.max() - norms)[:, None]]).astype(np.float32)
        n, d = lifted.shape
        self.nlist = max(1, min(int(4 * np.sqrt(n)), n // TRAIN_PER_LIST))
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        try:
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, self.nlist, faiss.METRIC_L2)
            rng = np.random.default_rng(seed)
            sample = rng.choice(n, min(n, self.nlist * TRAIN_PER_LIST), replace=False)
            self.index.train(lifted[np.sort(sample)])
            self.index.add(lifted)
            self.nprobe, self.recall = self._calibrate(users)
        finally:
            faiss.omp_set_num_threads(1)
        self.build_seconds = time.perf_counter() - t0

    @property
    def bytes(self) -> int:
        """Memory held by the index: the lifted keys, their ids and the list centroids."""
        return self.index.ntotal * (self.index.d * 4 + 8) + self.nlist * self.index.d * 4

    def search(self, queries: Tensor, k: int) -> np.ndarray:
        """(U, Du) user representations -> (U, k) candidate item indices, nearest first (-1: none)."""
        q = self.scorer.user_side(queries.float()).cpu().numpy()
        q = np.hstack([q, np.zeros((len(q), 1), np.float32)])
        return self.index.search(np.ascontiguousarray(q, dtype=np.float32), k)[1]

    def top_n(self, model: CollabModel, users: np.ndarray, n: int, seen: tuple[np.ndarray, np.ndarray] | None = None,
              reprs: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """``topn.top_n`` for this index (same arguments and answers): candidates from the
        index, ``users`` BATCH_USERS at a time, scored exactly."""
        users = torch.as_tensor(np.asarray(users), dtype=torch.int64)
        out_items = np.full((len(users), n), -1, dtype=np.int64)
        out_scores = np.full((len(users), n), np.nan, dtype=np.float32)
        for s in range(0, len(users), BATCH_USERS):
            ub = users[s : s + BATCH_USERS]
            ur = model.user_reprs(ub) if reprs is None else reprs[s : s + BATCH_USERS]
            rows, cols = seen_cells(ub.numpy(), *seen) if seen is not None else (np.zeros(0, np.int64),) * 2
            extra = int(np.bincount(rows).max()) if len(rows) else 0  # over-fetch: room for the seen
            found = self.search(ur, min(n + extra, self.index.ntotal))
            drop = (found < 0) | np.isin(np.arange(len(ub))[:, None] * self.index.ntotal + found, rows * self.index.ntotal + cols)
            first = np.argsort(drop, axis=1, kind="stable")[:, : 2 * n]  # the unseen, nearest first
            items, scores = self._rescored(ur, np.take_along_axis(found, first, 1), np.take_along_axis(drop, first, 1), n)
            out_items[s : s + len(ub), : items.shape[1]] = items
            out_scores[s : s + len(ub), : items.shape[1]] = scores
        return out_items, out_scores

    def _rescored(self, reprs: Tensor, found: np.ndarray, drop: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The best n of candidates ``found`` (B, m) but the ``drop``ped ones by their exact
        score (ties to the lower index; -1 and NaN pad short rows), through the scorer's ``finish``."""
        q = self.scorer.user_side(reprs.float())  # (B, D)
        keys = self.scorer.item_side[torch.from_numpy(found.clip(min=0))]  # (B, m, D)
        z = torch.bmm(keys, q.unsqueeze(2)).squeeze(2).numpy()  # (B, m): rank's numbers
        z = np.where(drop, -np.inf, z)
        order = np.lexsort((found, -z), axis=-1)[:, :n]  # by score, then by item index
        top, items = np.take_along_axis(z, order, 1), np.take_along_axis(found, order, 1)
        keep = np.isfinite(top)
        scores = self.scorer.finish(torch.from_numpy(np.where(keep, top, 0).astype(np.float32))).numpy()
        return np.where(keep, items, -1), np.where(keep, scores, np.nan).astype(np.float32)

    def _calibrate(self, users: Tensor) -> tuple[int, float]:
        """The fewest probes (MIN_PROBES, then half as many more each step) whose recall@10 on
        ``users`` reaches RECALL, and that recall (1.0 when there are no users to measure on)."""
        if not len(users):
            self.index.nprobe = min(self.nlist, 4 * MIN_PROBES)
            return self.index.nprobe, 1.0
        users = users[:CALIBRATION_USERS]
        exact = torch.topk(self.scorer.user_side(users.float()) @ self.scorer.item_side.T, min(10, self.index.ntotal), 1).indices.numpy()
        probes = MIN_PROBES
        while True:
            self.index.nprobe = min(probes, self.nlist)
            got = self.search(users, exact.shape[1])
            recall = recall_at(got, exact)
            if recall >= RECALL or probes >= self.nlist:
                return self.index.nprobe, recall
            probes += probes // 2


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |found_u ∩ exact_u| / |exact_u| (rows of item indices, -1 = none)."""
    hits = [len(set(f[f >= 0]) & set(e[e >= 0])) / max(1, (e >= 0).sum()) for f, e in zip(found, exact)]
    return float(np.mean(hits)) if hits else 1.0


def describe(index: ItemIndex | None) -> dict[str, Any]:
    """What the engine's search is, for logs and benchmarks."""
    if index is None:
        return {"search": "exact"}
    return {"search": "ivf", "lists": index.nlist, "nprobe": index.nprobe, "calibrated_recall": index.recall,
            "build_seconds": index.build_seconds, "index_mb": index.bytes / 1e6}  # fmt: skip
