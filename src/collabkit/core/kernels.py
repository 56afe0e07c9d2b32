"""Compiled (numba) kernels for the hot loops torch cannot fuse on CPU.

``dot_mse_step``: the dot-product models' whole MSE training step as one pass. The torch step (``loop.train_step``) gathers a batch's rows, sums their gradients and gathers
their Adam moments into temporaries, then writes all of it back: at ML-32M's size that is about
200 MB of memory traffic a step, and it bounds the step at ~1.2 M ratings/s on 2 cores. Here
each touched row's gradient is summed and its AdamW update applied in place, in one pass over
the rows the batch used. Same maths as the torch step with torch's fused AdamW (checked in
``tests/core/test_kernels.py``).

``lm_step``/``lm_accept``: fold-in's Levenberg-Marquardt steps (``models.linear.map_fold_in``),
one compiled pass a step. A served fold-in is one user of a few dozen answers: in torch its ~60
small calls cost 2.5 ms, here 0.9 ms in all.

``als_cg_``: iALS's conjugate-gradient half-step, row by row (see ``models.implicit.ALS``). In
torch each CG step is a sampled product and a sparse product, two passes over the interactions
and (rows, F) temporaries; here each row's CG runs start to end with its interactions in cache.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FunctionType
from typing import Any

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from torch import Tensor

#: a table this many times larger than the batch is grouped by sorting the batch, not counting
SORT_RATIO = 64
#: rows handed to a thread at a time in the training step (numba's dynamic scheduling)
CHUNK_ROWS = 256
#: rows (or ratings) ahead of the current one whose cache lines the training step prefetches:
#: the step's row reads are random, and waiting for each one in turn leaves memory idle
AHEAD = 8
#: the same for the batch's gather from the epoch's arrays (a few bytes a rating)
GATHER_AHEAD = 32

#: numba's options for every kernel: float sums may be reordered and multiply-adds fused
FAST = {"reassoc", "contract"}

_lock = threading.Lock()  # numba's workqueue threading layer must not be entered twice at once


class Kernel:
    """A compiled kernel in serial and parallel builds, one signature each, cached on disk apart.

    ``threads`` 1 runs the serial build on the calling thread: numba's thread pool is never
    started, so small work never waits for a core that other work holds. More threads run the
    parallel build, its ``prange`` loops spread over numba's pool (started once per process).
    ``signature`` is numba's, ``{f}`` standing for the float type; a build is made for each type
    in ``floats`` that a call asks for (``f=``), float32 by default. ``chunk``: the parallel
    build hands out its loops' iterations this many at a time (0: numba's equal shares).

    A build is loaded on its first use in a process (compiled the first time ever, then read from
    numba's cache), under a lock file beside the cache: concurrent processes never write the
    cache at once, and one signature per build means no entry is ever read for another. Then it
    compiles nothing else, so a call with other types fails loudly instead of compiling anew.
    """

    def __init__(self, fn: Callable[..., Any], signature: str, floats: tuple[str, ...] = ("f4",), chunk: int = 0) -> None:
        self.fn, self.signature, self.floats, self.chunk = fn, signature, floats, chunk
        self._builds: dict[tuple[str, bool], Any] = {}

    def build(self, threads: int, f: str = "f4") -> Any:
        """The (loaded) build for ``threads`` and float type ``f``."""
        key = (f, threads > 1)
        if key not in self._builds:
            self.load(threads, f)
        return self._builds[key]

    def load(self, threads: int, f: str = "f4") -> float:
        """Make the build for ``threads`` and ``f`` ready, and for more than one thread start
        numba's pool: the seconds it took, 0 once done."""
        parallel, key = threads > 1, (f, threads > 1)
        if key in self._builds:
            return 0.0
        if f not in self.floats:
            raise TypeError(f"{self.fn.__name__} has no {f} build (only {', '.join(self.floats)})")
        t0 = time.perf_counter()
        name = f"{f}_{'parallel' if parallel else 'serial'}"
        if parallel:
            _start_pool()  # before compiling or loading: either starts numba's pool
        build = numba.njit(cache=True, parallel=parallel, fastmath=FAST)(_renamed(self.fn, name))
        with _cache_lock(build):
            build.compile(self.signature.format(f=f))
        build.disable_compile()
        self._builds[key] = build
        return time.perf_counter() - t0

    def __call__(self, threads: int, *args: Any, f: str = "f4") -> Any:
        build = self.build(threads, f)
        if threads <= 1:
            return build(*args)
        with _lock, numba.parallel_chunksize(self.chunk):
            numba.set_num_threads(threads)
            return build(*args)


def _start_pool() -> None:
    """Start numba's thread pool (once a process): its workqueue layer unless the user chose one
    (NUMBA_THREADING_LAYER). Its idle threads wait on a condition variable; OpenMP's spin after
    every parallel region (measured: ~3.5 ms of CPU a region), and on a busy machine a dot-bias
    fit at batch 32768 took 2.1-5.7 s on OpenMP's pool against 0.9-1.0 s on workqueue's."""
    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"
    numba.get_num_threads()


def kernel(signature: str, floats: tuple[str, ...] = ("f4",), chunk: int = 0) -> Callable[[Callable[..., Any]], Kernel]:
    """``@kernel(signature)``: ``fn`` as a Kernel."""
    return lambda fn: Kernel(fn, signature, floats, chunk)


def threads() -> int:
    """The threads a kernel runs on: torch's (the caller's rule, ``core.loop.step_threads``),
    at most numba's."""
    return min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)


def _renamed(fn: Callable[..., Any], suffix: str) -> Callable[..., Any]:
    """A copy of ``fn`` named ``<name>_<suffix>``: numba names a cache file after the function,
    and two builds of one function under one name would read each other's entries."""
    twin = FunctionType(fn.__code__, fn.__globals__, f"{fn.__name__}_{suffix}", fn.__defaults__, fn.__closure__)
    twin.__qualname__, twin.__module__, twin.__doc__ = f"{fn.__qualname__}_{suffix}", fn.__module__, fn.__doc__
    return twin


@contextmanager
def _cache_lock(build: Any) -> Iterator[None]:
    """Hold an exclusive lock on a file beside ``build``'s cache (POSIX), so that one process
    compiles and writes a kernel while the others wait and then read it."""
    path = getattr(getattr(build, "_cache", None), "cache_path", None)
    try:
        import fcntl

        f = open(os.path.join(path, "collabkit-kernels.lock"), "a") if path else None  # noqa: SIM115
    except (ImportError, OSError):
        f = None
    if f is None:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def dot_mse_step(
    tables: list[Tensor],
    moments: list[Tensor],
    u: Tensor,
    i: Tensor,
    r: Tensor,
    y_range: tuple[float, float] | None,
    step: int,
    hyper: dict[str, float],
    at: Tensor | None = None,
) -> float:
    """One AdamW step of score = p_u . q_i (+ b_u + b_i), squashed into ``y_range``, on the
    batch (u, i, r), or on the rows ``at`` of them; updates ``tables`` [P, Q] or [P, Q, b_u, b_i]
    and their (2, rows, width) ``moments`` in place and returns the batch's mean squared error.

    ``step`` is the optimiser's step number (1 for the first); ``hyper`` holds lr, beta1,
    beta2, eps and weight_decay (decoupled, applied to the batch's rows only). Taking the batch
    ``at`` its positions in whole-epoch arrays saves gathering it first: the kernel prefetches.
    """
    has_bias = len(tables) == 4
    if not has_bias:  # placeholders of the compiled signature's types, never read
        tables = [*tables, torch.zeros(1, 1), torch.zeros(1, 1)]
        moments = [*moments, torch.zeros(2, 1, 1), torch.zeros(2, 1, 1)]
    lo, hi = y_range if y_range is not None else (0.0, 0.0)
    if at is None:
        at = torch.arange(len(r), dtype=torch.int32)
    u, i, at = (x if x.dtype == torch.int32 else x.int() for x in (u, i, at))  # the signature's types
    arrays = [t.detach().numpy() for t in (*tables, *moments)]
    return _step(
        threads(), u.numpy(), i.numpy(), r.numpy(), at.numpy(), *arrays, has_bias, y_range is not None,
        float(lo), float(hi), hyper["lr"], hyper["beta1"], hyper["beta2"], hyper["eps"], hyper["weight_decay"], step,
    )  # fmt: skip


def load_dot_step(threads_: int | None = None) -> float:
    """Make ``dot_mse_step``'s build for ``threads_`` (default ``threads()``) ready: the seconds
    it took, 0 once loaded."""
    return _step.load(threads() if threads_ is None else threads_)


@kernel(
    "f8(i4[::1], i4[::1], f4[::1], i4[::1], f4[:, ::1], f4[:, ::1], f4[:, ::1], f4[:, ::1], f4[:, :, ::1], "
    "f4[:, :, ::1], f4[:, :, ::1], f4[:, :, ::1], b1, b1, f8, f8, f8, f8, f8, f8, f8, i8)",
    chunk=CHUNK_ROWS,  # rows handed out CHUNK_ROWS at a time, not in equal shares: popular rows cost more
)
def _step(users, items, ratings, at, P, Q, BU, BI, MP, MQ, MBU, MBI, has_bias, squash, lo, hi, lr, beta1, beta2, eps, wd, step):
    n, width = len(at), P.shape[1]
    u, i, r = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32)
    for k in prange(n):  # the batch, from its positions in the epoch's arrays
        if k + GATHER_AHEAD < n:
            ahead = at[k + GATHER_AHEAD]
            _prefetch(users, ahead)
            _prefetch(items, ahead)
            _prefetch(ratings, ahead)
        u[k], i[k], r[k] = users[at[k]], items[at[k]], ratings[at[k]]
    # AdamW's scalars, as torch's fused kernel computes them
    step_size = lr / (1.0 - beta1**step)
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    decay = 1.0 - lr * wd
    urows, ustart, uorder = _group(u, P.shape[0])
    irows, istart, iorder = _group(i, Q.shape[0])
    # 1. user by user: each rating's dloss/dscore g, and the users' gradients
    g = np.empty(n, np.float32)
    GP = np.empty((len(urows), width + 1), np.float32)  # factors, then the bias
    sq = np.empty(len(urows))  # squared errors, summed per user
    for j in prange(len(urows)):
        a, grad = urows[j], GP[j]
        if j + AHEAD < len(urows):
            _prefetch_row(P, urows[j + AHEAD])
        grad[:] = 0.0
        se = 0.0
        for t in range(ustart[j], ustart[j + 1]):
            if t + AHEAD < n:
                _prefetch_row(Q, i[uorder[t + AHEAD]])
                if has_bias:
                    _prefetch_row(BI, i[uorder[t + AHEAD]])
            k = uorder[t]
            q = Q[i[k]]
            z = _dot(P[a], q)
            if has_bias:
                z += BU[a, 0] + BI[i[k], 0]
            if squash:
                s = np.float32(1.0) / (np.float32(1.0) + np.exp(-z))
                err = s * np.float32(hi - lo) + np.float32(lo) - r[k]
                gk = err * s * (np.float32(1.0) - s) * np.float32(2.0 * (hi - lo) / n)
            else:
                err = z - r[k]
                gk = err * np.float32(2.0 / n)
            g[k] = gk
            se += np.float64(err) * err
            for f in range(width):
                grad[f] += gk * q[f]
            grad[width] += gk
        sq[j] = se
    # 2. item by item: the gradient at the old user rows, then the update (Q is not read again)
    GQ = np.empty((len(irows), width + 1), np.float32)
    for j in prange(len(irows)):
        b, grad = irows[j], GQ[j]
        if j + AHEAD < len(irows):
            _prefetch_rows(Q, MQ, BI, MBI, irows[j + AHEAD], has_bias)
        grad[:] = 0.0
        for t in range(istart[j], istart[j + 1]):
            if t + AHEAD < n:
                _prefetch_row(P, u[iorder[t + AHEAD]])
            k = iorder[t]
            p = P[u[k]]
            for f in range(width):
                grad[f] += g[k] * p[f]
            grad[width] += g[k]
        _adamw_row(Q[b], grad[:width], MQ[0, b], MQ[1, b], decay, step_size, bc2_sqrt, beta1, beta2, eps)
        if has_bias:
            _adamw_row(BI[b], grad[width:], MBI[0, b], MBI[1, b], decay, step_size, bc2_sqrt, beta1, beta2, eps)
    # 3. the users' updates
    for j in prange(len(urows)):
        a, grad = urows[j], GP[j]
        if j + AHEAD < len(urows):
            _prefetch_rows(P, MP, BU, MBU, urows[j + AHEAD], has_bias)
        _adamw_row(P[a], grad[:width], MP[0, a], MP[1, a], decay, step_size, bc2_sqrt, beta1, beta2, eps)
        if has_bias:
            _adamw_row(BU[a], grad[width:], MBU[0, a], MBU[1, a], decay, step_size, bc2_sqrt, beta1, beta2, eps)
    return sq.sum() / n


def _prefetch_codegen(context, builder, signature, args):
    """LLVM's prefetch (read, keep in every cache level) of the line holding arr[index...]."""
    aryty = signature.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    at = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], signature.args[1:])]
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, at)
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
    return context.get_dummy_value()


@intrinsic
def _prefetch(typingctx, arr, k):
    """Start loading the cache line holding arr[k] (a 1-D array)."""
    return types.void(arr, k), _prefetch_codegen


@intrinsic
def _prefetch2(typingctx, arr, row, col):
    """Start loading the cache line holding arr[row, col]."""
    return types.void(arr, row, col), _prefetch_codegen

@numba.njit(cache=True, inline="always")
def _prefetch_row(A, row):
    """Every cache line (16 float32) of row ``row`` of A."""
    for f in range(0, A.shape[1], 16):
        _prefetch2(A, row, f)


@numba.njit(cache=True, inline="always")
def _prefetch_rows(W, M, B, MB, row, has_bias):
    """A row's weights and both moments (and its bias's), ahead of its AdamW update."""
    _prefetch_row(W, row)
    _prefetch_row(M[0], row)
    _prefetch_row(M[1], row)
    if has_bias:
        _prefetch_row(B, row)
        _prefetch_row(MB[0], row)
        _prefetch_row(MB[1], row)


@numba.njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _adamw_row(w, g, m, v, decay, step_size, bc2_sqrt, beta1, beta2, eps):
    """torch's fused AdamW on one row: decay, both moments, the bias-corrected update."""
    for f in range(len(w)):
        w[f] *= decay
        m[f] += (1.0 - beta1) * (g[f] - m[f])
        v[f] = v[f] * beta2 + (1.0 - beta2) * g[f] * g[f]
        w[f] -= step_size * m[f] / (math.sqrt(v[f]) / bc2_sqrt + eps)


@numba.njit(cache=True)
def _group(idx, n_rows):
    """The distinct rows of ``idx`` and where each one's positions sit in ``order``: row
    ``rows[j]`` is at ``idx[order[start[j]:start[j + 1]]]``. Counting sort over the table when it
    is not much larger than the batch, else a sort of the batch."""
    n = len(idx)
    if n_rows > SORT_RATIO * n:
        order = np.argsort(idx, kind="mergesort")
        rows = np.empty(n, np.int64)
        start = np.empty(n + 1, np.int64)
        m = 0
        for t in range(n):
            if t == 0 or idx[order[t]] != idx[order[t - 1]]:
                rows[m] = idx[order[t]]
                start[m] = t
                m += 1
        start[m] = n
        return rows[:m], start[: m + 1], order
    count = np.zeros(n_rows + 1, np.int32)
    for k in range(n):
        count[idx[k] + 1] += 1
    m = 0
    for row in range(n_rows):
        if count[row + 1] > 0:
            m += 1
        count[row + 1] += count[row]
    rows = np.empty(m, np.int64)
    start = np.empty(m + 1, np.int64)
    j = 0
    for row in range(n_rows):
        if count[row + 1] > count[row]:
            rows[j] = row
            start[j] = count[row]
            j += 1
    start[m] = n
    fill = count[:n_rows].copy()
    order = np.empty(n, np.int64)
    for k in range(n):
        order[fill[idx[k]]] = k
        fill[idx[k]] += 1
    return rows, start, order


def als_cg_(
    indptr: np.ndarray, cols: np.ndarray, extra: np.ndarray, Y: Tensor, G: Tensor, X: Tensor, steps: int
) -> None:
    """``steps`` conjugate-gradient steps on every row r of X (in place) towards the solution of
    (G + sum_c extra_rc y_c y_c^T) x_r = sum_c (1 + extra_rc) y_c, from the current x_r.

    Row r's columns are ``cols[indptr[r]:indptr[r + 1]]``; G = Y^T Y + reg I. Rows are cut into
    blocks of equal work (interactions + rows), so every thread gets its share.
    """
    _als_cg(threads(), indptr, cols, extra, Y.numpy(), G.numpy(), X.numpy(), steps, _blocks(indptr), f=_float(X))


def als_observed_loss(indptr: np.ndarray, cols: np.ndarray, extra: np.ndarray, X: Tensor, Y: Tensor) -> float:
    """sum over the interactions (r, c) of (1 + extra_rc) (1 - s)^2 - s^2, s = x_r . y_c, in
    float64: the observed part of the iALS loss (``models.implicit._als_loss``)."""
    return float(_als_observed(threads(), indptr, cols, extra, X.numpy(), Y.numpy(), _blocks(indptr), f=_float(X)))


def load_als() -> float:
    """Make the iALS kernels' builds for ``threads()`` ready: the seconds it took, 0 once loaded."""
    return _als_cg.load(threads()) + _als_observed.load(threads())


def _float(X: Tensor) -> str:
    """numba's name of X's float type: f4 (the models' tables) or f8."""
    return "f8" if X.dtype == torch.float64 else "f4"


def _blocks(indptr: np.ndarray) -> np.ndarray:
    """Row bounds cutting a CSR matrix into 8 blocks a thread of about equal work (interactions
    + rows), so that a static share of blocks per thread balances."""
    n_rows = len(indptr) - 1
    targets = np.linspace(0, indptr[-1] + n_rows, 8 * threads() + 1)
    bounds = np.searchsorted(indptr + np.arange(n_rows + 1), targets)  # (rows,) int64, transient
    bounds[0], bounds[-1] = 0, n_rows
    return np.unique(bounds)


@kernel("void(i8[::1], i4[::1], f4[::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], i8, i8[::1])", floats=("f4", "f8"))
def _als_cg(indptr, cols, extra, Y, G, X, steps, bounds):
    width = X.shape[1]
    for blk in prange(len(bounds) - 1):
        r, p, Ap = np.empty_like(X[0]), np.empty_like(X[0]), np.empty_like(X[0])  # X's float type
        for row in range(bounds[blk], bounds[blk + 1]):
            x = X[row]
            lo, hi = indptr[row], indptr[row + 1]
            # r = b - A x = sum_c (1 + e_c (1 - y_c . x)) y_c - G x
            _matvec(G, x, r)
            for f in range(width):
                r[f] = -r[f]
            for t in range(lo, hi):
                y, e = Y[cols[t]], extra[t]
                coef = np.float32(1.0) + e * (np.float32(1.0) - _dot(y, x))
                for f in range(width):
                    r[f] += coef * y[f]
            p[:] = r
            rs = _dot(r, r)
            for _ in range(steps):
                _matvec(G, p, Ap)  # A p = G p + sum_c e_c (y_c . p) y_c
                for t in range(lo, hi):
                    y = Y[cols[t]]
                    coef = extra[t] * _dot(y, p)
                    for f in range(width):
                        Ap[f] += coef * y[f]
                pAp = _dot(p, Ap)
                a = rs / pAp if pAp > 0 else np.float32(0.0)
                for f in range(width):
                    x[f] += a * p[f]
                    r[f] -= a * Ap[f]
                rs_new = _dot(r, r)
                b = rs_new / rs if rs > 0 else np.float32(0.0)
                for f in range(width):
                    p[f] = r[f] + b * p[f]
                rs = rs_new


@kernel("f8(i8[::1], i4[::1], f4[::1], {f}[:, ::1], {f}[:, ::1], i8[::1])", floats=("f4", "f8"))
def _als_observed(indptr, cols, extra, X, Y, bounds):
    parts = np.zeros(len(bounds) - 1)
    for blk in prange(len(bounds) - 1):
        acc = 0.0
        for row in range(bounds[blk], bounds[blk + 1]):
            for t in range(indptr[row], indptr[row + 1]):
                s = np.float64(_dot(X[row], Y[cols[t]]))
                acc += (1.0 + extra[t]) * (1.0 - s) ** 2 - s * s
        parts[blk] = acc
    return parts.sum()


@numba.njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _dot(a, b):
    s = np.float32(0.0)
    for f in range(len(a)):
        s += a[f] * b[f]
    return s


@numba.njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _matvec(G, v, out):
    """out = G v for a symmetric G, row by row of G (contiguous)."""
    out[:] = 0.0
    for g in range(len(v)):
        vg = v[g]
        for f in range(len(v)):
            out[f] += vg * G[g, f]


def permutation(n: int, seed: int) -> Tensor:
    """A uniformly random int32 permutation of 0..n-1, the same for a seed on any thread count.

    torch.randperm draws it one element at a time (about 1 s for 32 M on this machine, a tenth
    of a training epoch at that size). Here each position goes to one of about n / 2^15 buckets
    by a hash of (seed, position), the buckets are filled in parallel, and each is shuffled
    (Fisher-Yates) in cache: random buckets, each uniformly shuffled, make a uniform permutation.
    """
    buckets = max(1, n >> 15)
    bounds = np.linspace(0, n, 8 * threads() + 1).astype(np.int64)
    return torch.from_numpy(_permutation(threads(), n, np.uint64(seed), buckets, bounds))


def load_permutation() -> float:
    """Make ``permutation``'s build for ``threads()`` ready: the seconds it took, 0 once loaded."""
    return _permutation.load(threads())


@kernel("i4[::1](i8, u8, i8, i8[::1])")
def _permutation(n, seed, buckets, bounds):
    parts = len(bounds) - 1
    counts = np.zeros((parts, buckets), np.int64)
    for t in prange(parts):
        for k in range(bounds[t], bounds[t + 1]):
            counts[t, _hash(seed + np.uint64(k)) % np.uint64(buckets)] += 1
    start = np.empty(buckets + 1, np.int64)  # where each bucket begins in the output
    fill = np.empty((parts, buckets), np.int64)  # where each part writes into each bucket next
    at = 0
    for b in range(buckets):
        start[b] = at
        for t in range(parts):
            fill[t, b] = at
            at += counts[t, b]
    start[buckets] = n
    out = np.empty(n, np.int32)
    for t in prange(parts):
        for k in range(bounds[t], bounds[t + 1]):
            b = _hash(seed + np.uint64(k)) % np.uint64(buckets)
            out[fill[t, b]] = k
            fill[t, b] += 1
    golden = np.uint64(0x9E3779B97F4A7C15)
    for b in prange(buckets):
        base = _hash(seed ^ (np.uint64(b) * golden))  # the bucket's splitmix64 stream
        for m in range(start[b + 1] - start[b] - 1, 0, -1):  # Fisher-Yates
            draw = _hash(base + np.uint64(m) * golden)
            j = start[b] + np.int64(draw % np.uint64(m + 1))
            out[start[b] + m], out[j] = out[j], out[start[b] + m]
    return out


@numba.njit(cache=True, inline="always")
def _hash(x):
    """splitmix64's finaliser: a well-mixed 64-bit function of x."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def lm_step(A: np.ndarray, w: np.ndarray, r: np.ndarray, f: np.ndarray, df: np.ndarray, x: np.ndarray,
            lam: np.ndarray, mu: np.ndarray, damp: np.ndarray, active: np.ndarray, out: np.ndarray) -> None:  # fmt: skip
    """One damped Gauss-Newton (Levenberg-Marquardt) step per active row u of fold-in's MAP
    problem (``models.linear.map_fold_in``), into ``out``: x_u + H^-1 g with
    H = (A^T diag(w f'^2) A + diag(lam)) (1 + damp_u on the diagonal), g = A^T (w f' (r - f)) -
    lam (x_u - mu), mu the prior's centre. One compiled pass a step: a served fold-in is one user of a few dozen
    answers, where numpy's or torch's per-call overhead costs more than the arithmetic."""
    _lm_step(1, A, w, r, f, df, x, lam, mu, damp, active, out, f="f8")


def lm_accept(w: np.ndarray, r: np.ndarray, x: np.ndarray, f: np.ndarray, df: np.ndarray, loss: np.ndarray,
              new: np.ndarray, f_new: np.ndarray, df_new: np.ndarray, lam: np.ndarray, mu: np.ndarray,
              damp: np.ndarray, active: np.ndarray, tol: float) -> int:  # fmt: skip
    """Per row: a row whose step moved no coordinate by more than ``tol`` (relative) is done;
    an active row whose step lowered the MAP objective takes it (x, f, f', loss in place) and
    damps less, else damps harder. The number of rows still active."""
    return int(_lm_accept(1, w, r, x, f, df, loss, new, f_new, df_new, lam, mu, damp, active, tol, f="f8"))


def load_fold_in() -> float:
    """Make fold-in's kernels ready (compiled once ever, then read from numba's cache): the
    seconds it took, 0 once loaded."""
    return _lm_step.load(1, "f8") + _lm_accept.load(1, "f8")


@kernel("void({f}[:, :, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[::1], "
        "{f}[::1], {f}[::1], b1[::1], {f}[:, ::1])", floats=("f8",))  # fmt: skip
def _lm_step(A, w, r, f, df, x, lam, mu, damp, active, out):
    m, D = A.shape[1], A.shape[2]
    H, g = np.empty((D, D)), np.empty(D)
    for u in range(A.shape[0]):
        out[u] = x[u]
        if not active[u]:
            continue
        H[:] = 0.0
        for k in range(D):
            g[k] = -lam[k] * (x[u, k] - mu[k])
        for i in range(m):
            h, e = w[u, i] * df[u, i] ** 2, w[u, i] * df[u, i] * (r[u, i] - f[u, i])
            if h == 0.0 and e == 0.0:
                continue
            a = A[u, i]
            for k in range(D):
                g[k] += a[k] * e
                hk = h * a[k]
                for j in range(k + 1):
                    H[k, j] += hk * a[j]
        for k in range(D):
            H[k, k] = (H[k, k] + lam[k]) * (1.0 + damp[u])
        _cholesky_solve_(H, g)  # g <- H^-1 g; H symmetric positive definite (lam > 0), lower half read
        for k in range(D):
            out[u, k] += g[k]


@kernel("i8({f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[::1], {f}[:, ::1], {f}[:, ::1], "
        "{f}[:, ::1], {f}[::1], {f}[::1], {f}[::1], b1[::1], {f})", floats=("f8",))  # fmt: skip
def _lm_accept(w, r, x, f, df, loss, new, f_new, df_new, lam, mu, damp, active, tol):
    left = 0
    for u in range(x.shape[0]):
        if not active[u]:
            continue
        moved = False
        for k in range(x.shape[1]):
            moved |= abs(new[u, k] - x[u, k]) > tol * (1.0 + abs(x[u, k]))
        if not moved:
            active[u] = False
            continue
        left += 1
        new_loss = 0.0
        for i in range(w.shape[1]):
            new_loss += w[u, i] * (r[u, i] - f_new[u, i]) ** 2
        for k in range(x.shape[1]):
            new_loss += lam[k] * (new[u, k] - mu[k]) ** 2
        if new_loss < loss[u]:
            x[u], f[u], df[u], loss[u] = new[u], f_new[u], df_new[u], new_loss
            damp[u] *= 0.1
        else:
            damp[u] *= 10.0
    return left


@numba.njit(cache=True, inline="always")
def _cholesky_solve_(H, b):
    """b <- H^-1 b for a symmetric positive definite H (lower triangle read, overwritten by L)."""
    D = len(b)
    for j in range(D):
        s = H[j, j]
        for k in range(j):
            s -= H[j, k] ** 2
        H[j, j] = math.sqrt(s)
        for i in range(j + 1, D):
            s = H[i, j]
            for k in range(j):
                s -= H[i, k] * H[j, k]
            H[i, j] = s / H[j, j]
    for i in range(D):  # L y = b
        s = b[i]
        for k in range(i):
            s -= H[i, k] * b[k]
        b[i] = s / H[i, i]
    for i in range(D - 1, -1, -1):  # L^T x = y
        s = b[i]
        for k in range(i + 1, D):
            s -= H[k, i] * b[k]
        b[i] = s / H[i, i]
