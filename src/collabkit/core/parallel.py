"""Data-parallel training: what the one-cycle engine does differently when it runs on several ranks.

Like the device, this is a setting of the running command, not of a model: ``train.distributed``
joins torchrun's process group and runs ``model.fit`` inside ``use(Ranks())``; the engine
(``core.loop``) and the baseline sweep read ``current()``. Each rank holds a full replica started
from the same seed and trains on its own shard. What changes:

- the batches: the same number on every rank (collectives must pair up), each ~bs / world rows
  of the rank's shard, so a step is the single-process step at batch size bs;
- the optimiser: ``ExchangeRowAdamW`` swaps the batch's gradient rows between ranks (all_gather
  of O(batch x F) numbers, never a table), sums them and applies the same RowAdamW update
  everywhere, so the replicas stay identical;
- sums (losses, the baseline's counts) are added over the ranks.

Why rows: a step touches a few thousand rows of tables of hundreds of thousands. Shipping the
touched rows costs what a row-sharded lookup would (both O(batch x F) numbers) without a second
model layout; a dense all-reduce of the tables costs O(table). On this 2-core machine, 2 ranks on
gloo/127.0.0.1 (under load): the row exchange took 3.3 ms per step at 512 rows per rank and
12.5 ms at 4096; an all-reduce of ML-32M-sized tables (287k x 51 floats) took 155 ms per step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from collabkit.core.optim import RowAdamW


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group torchrun started."""

    rank: int
    world: int

    def batch_bounds(self, n_local: int, bs: int) -> list[tuple[int, int]]:
        """(start, end) of this rank's batches: the same count on every rank, ~bs / world rows each."""
        counts = torch.tensor([n_local, n_local], dtype=torch.int64)
        dist.all_reduce(counts[:1])  # total ratings
        dist.all_reduce(counts[1:], dist.ReduceOp.MIN)  # the smallest shard
        n_batches = max(1, min(math.ceil(int(counts[0]) / bs), int(counts[1])))
        cuts = np.linspace(0, n_local, n_batches + 1).astype(np.int64)
        return [(int(s), int(e)) for s, e in itertools.pairwise(cuts)]

    def sum(self, x: Tensor) -> Tensor:
        """x added over every rank (a new tensor; CPU numbers go over gloo)."""
        out = x.clone()
        dist.all_reduce(out)
        return out


_current: ContextVar[Ranks | None] = ContextVar("collabkit_ranks", default=None)


def current() -> Ranks | None:
    """The data-parallel run this process is part of, or None (one process)."""
    return _current.get()


@contextmanager
def use(ranks: Ranks) -> Iterator[Ranks]:
    """Train data-parallel inside the block (see the module docstring)."""
    token = _current.set(ranks)
    try:
        yield ranks
    finally:
        _current.reset(token)


def total(x: Tensor) -> Tensor:
    """x summed over the ranks of the current run; x itself in one process."""
    ranks = current()
    return x if ranks is None else ranks.sum(x)


class ExchangeRowAdamW(RowAdamW):
    """RowAdamW whose step first averages the ranks' gradients: row gradients by all_gather of
    (rows, gradient) and a sum over equal rows, other parameters by all_reduce."""

    @torch.no_grad()
    def step(
        self, lr: float, beta1: float, wd: float, rows: dict[int, tuple[Tensor, Tensor, Tensor]] | None = None
    ) -> None:
        world = dist.get_world_size()
        if world > 1:
            rows = self._exchange(rows or {}, world)
        super().step(lr, beta1, wd, rows)

    def _exchange(self, rows: dict[int, tuple[Tensor, Tensor, Tensor]], world: int) -> dict[int, tuple[Tensor, Tensor, Tensor]]:
        by_id = {id(p): p for p in self.params}
        keys = list(rows)  # the model's table order: the same on every rank
        dense = [p for p in self.params if id(p) not in rows and p.grad is not None]
        sizes = torch.tensor([len(rows[k][0]) for k in keys], dtype=torch.int64)
        all_sizes = _gather(sizes, world)  # (world, tables)
        kmax = all_sizes.max(0).values.tolist()
        idx = torch.cat([_pad(rows[k][0], m, -1) for k, m in zip(keys, kmax)])
        flat = [_pad(rows[k][1], m, 0.0).flatten() for k, m in zip(keys, kmax)]
        grads = torch.cat(flat + [p.grad.flatten() for p in dense])
        all_idx, all_grads = _gather(idx, world), _gather(grads, world)  # (world, ...)
        out: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        i_off = g_off = 0
        for t, (k, m) in enumerate(zip(keys, kmax)):
            width = rows[k][1].shape[1]
            got_i = torch.cat([all_idx[w, i_off : i_off + int(all_sizes[w, t])] for w in range(world)])
            block = all_grads[:, g_off : g_off + m * width].view(world, m, width)
            got_g = torch.cat([block[w, : int(all_sizes[w, t])] for w in range(world)])
            union, inv = torch.unique(got_i, return_inverse=True)
            g = torch.zeros(len(union), width, dtype=got_g.dtype, device=got_g.device).index_add_(0, inv, got_g) / world
            out[k] = (union, g, by_id[k].detach()[union])
            i_off, g_off = i_off + m, g_off + m * width
        for p in dense:  # every rank's copy, summed, averaged
            n = p.grad.numel()
            p.grad = all_grads[:, g_off : g_off + n].sum(0).view_as(p.grad) / world
            g_off += n
        return out


def _pad(x: Tensor, n: int, value: float) -> Tensor:
    return torch.cat([x, x.new_full((n - len(x), *x.shape[1:]), value)]) if len(x) < n else x


def _gather(x: Tensor, world: int) -> Tensor:
    """(world, *x.shape): every rank's x (same shape everywhere)."""
    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x)
    return torch.stack(out)
