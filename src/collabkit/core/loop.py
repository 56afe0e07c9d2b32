"""The one-cycle engine every gradient-trained model uses: AdamW over batches sliced from index tensors.

It sits below ``models`` (models call it from their ``fit``) and knows a model only by the contract:
``users``/``items`` vocabularies, ``forward(u, i)``, ``predict_idx`` and ``indexed_tables()``.
"""

from __future__ import annotations

import ctypes
import math
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn
from torch.nn import functional as F

from collabkit.core import device as devices
from collabkit.core import kernels, parallel
from collabkit.core.optim import RowAdamW
from collabkit.core.schedule import one_cycle
from collabkit.data.interactions import Ratings

#: learning rates are given for batches up to this size; larger batches take fewer, less noisy
#: steps, so the engine scales lr by sqrt(bs / LR_REF_BS) (Adam's square-root rule). Measured on
#: ML-100k u1, chapter recipe: bs 1024 at 5e-3 unscaled RMSE 0.929, scaled (1e-2) 0.922.
LR_REF_BS = 256
#: The parallelism rule, for the torch step and the compiled kernels alike (``step_threads``,
#: ``pass_threads``): work runs on every core only when one call of it is large. Smaller work
#: runs on one thread and never starts a thread pool (``core.kernels.Kernel``): a hand-off
#: to other threads costs more than such work, and on a busy machine each one waits for a
#: core that other work holds (issue 27: a fresh-process chapter fit took 1.1-4.0 s beside
#: two CPU-bound loops with numba's pool, 0.48-0.64 s without it).
#: A training batch of at most this many ratings is small.
THREADED_BS = 4096
#: A pass over a whole data set (iALS's half-steps) of fewer interactions than this is small:
#: on ML-100k (55 k) two threads were 2-20x slower than one on a busy 2-core machine.
THREADED_NNZ = 1 << 20
#: ids looked up per slice by encode(compact=True)
ENCODE_CHUNK = 1 << 20
#: ratings from which an epoch's order is drawn in parallel (epoch_order)
PARALLEL_ORDER = 1 << 24


def lr_scale(bs: int, ref: int | None = LR_REF_BS) -> float:
    """Factor applied to lr_max at batch size ``bs``: sqrt(bs / ref) above ``ref``, else 1."""
    return 1.0 if ref is None or bs <= ref else math.sqrt(bs / ref)

#: a collabkit model (models.base.CollabModel); the engine needs only the contract's parts
Model = nn.Module
#: (users, items, ratings, generator) -> the batch the step sees
BatchFn = Callable[[Tensor, Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor, Tensor]]


@dataclass
class Encoded:
    """Ratings as index tensors in a model's vocabularies (-1 marks an id the model does not know)."""

    users: Tensor
    items: Tensor
    ratings: Tensor

    def __len__(self) -> int:
        return len(self.ratings)

    @property
    def known(self) -> Tensor:
        return (self.users >= 0) & (self.items >= 0)


def encode(model: Model, ratings: Ratings, strict: bool = True, compact: bool = False) -> Encoded:
    """Map raw ids to the model's indices once, so batches are tensor slices.

    ``compact``: int32 indices (12 bytes a rating with the float32 rating, not 20), for data held
    through a whole training run; its batches are widened to int64 as they are taken.
    """
    f = ratings.frame

    def lookup(vocab: Any, ids: pd.Series) -> Tensor:
        if not compact:
            return torch.from_numpy(vocab.lookup(ids, strict=strict))
        out = np.empty(len(ids), np.int32)  # filled a slice at a time: no int64 copy of a column
        for s in range(0, len(ids), ENCODE_CHUNK):
            out[s : s + ENCODE_CHUNK] = vocab.lookup(ids.iloc[s : s + ENCODE_CHUNK], strict=strict)
        return torch.from_numpy(out)

    return Encoded(
        lookup(model.users, f["user"]),
        lookup(model.items, f["item"]),
        torch.from_numpy(f["rating"].to_numpy(dtype=np.float32, copy=True)),
    )


@dataclass
class History:
    """What training measured, kept (not only printed): one row per epoch."""

    rows: list[dict[str, float]] = field(default_factory=list)
    fit_seconds: float = 0.0
    #: one-time work before the first step, not in fit_seconds: loading the compiled kernels
    #: (compiling them, the first time ever) and starting a thread pool; ~0 once a process has
    setup_seconds: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    @property
    def final(self) -> dict[str, float]:
        return self.rows[-1] if self.rows else {}


def fit_one_cycle(
    model: Model,
    train: Ratings,
    valid: Ratings | None = None,
    epochs: int = 5,
    lr_max: float = 5e-3,
    wd: float = 0.1,
    bs: int | None = None,
    seed: int = 42,
    console: Console | None = None,
    progress: bool = True,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = torch.nn.functional.mse_loss,
    batch_fn: BatchFn | None = None,
    valid_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
    threads: int | None = None,
    lr_ref_bs: int | None = LR_REF_BS,
) -> History:
    """Train ``model`` with the one-cycle schedule; returns the per-epoch History.

    ``console`` receives the chapter's epoch table (epoch, train_loss, valid_loss, time) and a
    progress bar (unless ``progress=False``); with no console training is silent. ``batch_fn``
    rewrites each batch (users, items, ratings) before the step, drawing randomness from the
    loop's generator: ranking losses add sampled negatives this way (``train.implicit``). The
    validation loss goes through it too, with a generator reseeded each epoch (same negatives).
    ``valid_fn(users, items, ratings)`` computes the validation loss itself when ``loss_fn`` does
    not read ``predict_idx``'s ratings (the ordinal model's cross-entropy reads latent scores).
    ``bs`` defaults to the model's ``default_bs``; ``lr_max`` is scaled by ``lr_scale(bs,
    lr_ref_bs)`` (``lr_ref_bs=None``: never). ``threads`` defaults to 1 for batches below
    THREADED_BS and to all of torch's threads for larger ones. The steps run on
    ``core.device.current()``: on a GPU the model is moved there for the run and back after, and
    each batch (drawn and passed through ``batch_fn`` on the CPU) is copied over as it is taken.
    Inside ``core.parallel.use`` (torchrun) it trains data-parallel: ``train`` is this rank's
    shard, ``bs`` the global batch, and the History's losses are over every rank's data.
    """
    check_settings(epochs, lr_max, wd, bs)
    data = encode(model, train, compact=True)  # with the int32 permutation: 16 bytes a rating
    if not any(p.requires_grad for p in model.parameters()):
        epochs = 0  # closed-form models (GlobalMean) have nothing to learn here
    val = encode(model, valid, strict=False) if valid is not None and len(valid) else None
    device = devices.current()
    ranks = parallel.current()
    gen = torch.Generator().manual_seed(seed + (ranks.rank if ranks else 0))
    n = len(data)
    bs = bs or model.default_bs
    bounds = ranks.batch_bounds(n, bs) if ranks else _batch_bounds(n, bs)
    total = epochs * len(bounds)
    history = History()
    bar = _progress(console, progress)
    task = bar.add_task("training", total=total) if bar else None
    if console is not None:
        console.print(f"{'epoch':>5} {'train_loss':>11} {'valid_loss':>11} {'time':>7}")
    step = 0
    lr_max = lr_max * lr_scale(bs, lr_ref_bs)
    world = ranks.world if ranks else 1
    with training_settings(threads or step_threads(bs // world)), bar or nullcontext(), devices.placed(model, device):
        opt = (parallel.ExchangeRowAdamW if ranks else RowAdamW)(list(model.parameters()))
        history.setup_seconds = _load_kernels(model, loss_fn, device, n) if ranks is None else 0.0
        t_start = time.perf_counter()
        for epoch in range(epochs):
            t0 = time.perf_counter()
            model.train()
            perm = epoch_order(n, gen)
            loss_sum = torch.zeros((), device=device)
            for s, e in bounds:
                idx = perm[s:e]
                lr, mom = one_cycle(step / total, lr_max)
                if batch_fn is None and device.type == "cpu":  # the step takes the batch at its positions
                    loss = train_step(model, opt, data.users, data.items, data.ratings, lr, mom, wd, loss_fn, compiled=ranks is None, at=idx)
                else:
                    u, i, r = _gather(data, idx)
                    if batch_fn is not None:
                        u, i, r = batch_fn(u, i, r, gen)
                    with devices.factories(device):  # tensors a forward makes land beside the model
                        loss = train_step(model, opt, *_to(device, u, i, r), lr, mom, wd, loss_fn, compiled=ranks is None)
                loss_sum += loss * len(idx)
                step += 1
                if bar and step % 50 == 0:
                    bar.update(task, completed=step)
            sums = [loss_sum.double().cpu(), n]  # sum of batch losses, ratings
            if val is not None:
                vu, vi, vr = val.users, val.items, val.ratings
                if batch_fn is not None:
                    vu, vi, vr = batch_fn(vu, vi, vr, torch.Generator().manual_seed(seed))
                vu, vi, vr = _to(device, vu, vi, vr)
                with devices.factories(device):
                    if valid_fn is not None:
                        v = float(valid_fn(vu, vi, vr))
                    else:
                        v = float(loss_fn(model.predict_idx(vu, vi), vr))
                sums += [v * len(vr), len(vr)]  # the mean, times its count: sums over ranks
            totals = parallel.total(torch.tensor([float(x) for x in sums], dtype=torch.float64)).tolist()
            row = {"epoch": epoch, "train_loss": totals[0] / totals[1]}
            if val is not None:
                row["valid_loss"] = v if ranks is None else totals[2] / totals[3]
            row["time"] = time.perf_counter() - t0
            history.rows.append(row)
            if console is not None:
                v = f"{row['valid_loss']:11.6f}" if "valid_loss" in row else f"{'':>11}"
                console.print(f"{epoch:>5} {row['train_loss']:11.6f} {v} {_clock(row['time']):>7}")
    history.fit_seconds = time.perf_counter() - t_start
    model.eval()
    _check_finite(model, history)
    return history


def _load_kernels(model: Model, loss_fn: Callable, device: torch.device, n: int) -> float:
    """Load the compiled kernels a fit of ``n`` ratings will run, before its clock starts (numba
    loads a kernel on its first call): the seconds it took, 0 when this process already has."""
    seconds = 0.0
    if compiled_tables(model, loss_fn, device) is not None:
        seconds += kernels.load_dot_step()
    if n >= PARALLEL_ORDER:
        seconds += kernels.load_permutation()
    return seconds


def epoch_order(n: int, gen: torch.Generator) -> Tensor:
    """An epoch's random order of n ratings, int32 (int64's would double its memory).

    torch.randperm below PARALLEL_ORDER ratings (every result quoted for smaller sets was
    measured with it); above, where it costs a second an epoch, ``kernels.permutation`` seeded
    from ``gen``.
    """
    if n < PARALLEL_ORDER:
        return torch.randperm(n, generator=gen, dtype=torch.int32)
    return kernels.permutation(n, int(torch.randint(0, 1 << 62, (), generator=gen)))


def step_threads(bs: int) -> int:
    """Threads for batches of ``bs`` rows: one up to THREADED_BS, else all of torch's.

    A small batch is a few hundred kflops: a thread hand-off costs more than it saves, and on a
    busy machine OpenMP's spin-waits made training 50-100x slower (measured). Batches of tens of
    thousands of rows are big enough for threads to pay off.
    """
    return 1 if bs <= THREADED_BS else torch.get_num_threads()


def pass_threads(nnz: int) -> int:
    """Threads for a pass over ``nnz`` interactions: one below THREADED_NNZ, else all of torch's."""
    return 1 if nnz < THREADED_NNZ else torch.get_num_threads()


#: glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


@contextmanager
def training_settings(threads: int) -> Iterator[None]:
    """Process settings for a training loop, restored afterwards.

    - ``threads`` torch threads (see step_threads).
    - Subnormal floats flushed to zero: Adam's second moments of rarely-seen rows decay into
      them, and they are ~100x slower on x86; flushing changes nothing measurable.
    - Freed memory kept for the next step (glibc): a batch of 65 536 ratings frees and allocates
      ~100 MB of temporaries a step. glibc gives freed memory back to the kernel at once, and the
      next step pays ~10 000 page faults to get it again: 25-35% of the step at ML-32M's size
      (measured with getrusage's fault count). Afterwards glibc's trim threshold goes back to
      twice its mmap threshold (its own rule) and the heap is trimmed.
    """
    threads_was = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest; bigger blocks are mapped
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TOP_PAD, 64 << 20)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)  # back to PyTorch's default
        torch.set_num_threads(threads_was)
        if libc is not None:
            libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
            libc.mallopt(_M_TOP_PAD, 128 << 10)
            libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (its mallopt is glibc's own), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


def check_settings(epochs: int, lr_max: float, wd: float, bs: int | None) -> None:
    """Refuse settings that would train a wrong model without a word (NaN, zero or negative)."""
    if not (isinstance(epochs, (int, np.integer)) and epochs >= 1):
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}")
    if not (math.isfinite(lr_max) and lr_max > 0):
        raise ValueError(f"lr (lr_max) must be a finite number > 0, got {lr_max!r}")
    if not (math.isfinite(wd) and wd >= 0):
        raise ValueError(f"wd (weight decay) must be a finite number >= 0, got {wd!r}")
    if bs is not None and not (isinstance(bs, (int, np.integer)) and bs >= 1):
        raise ValueError(f"bs (batch size) must be a whole number >= 1, got {bs!r}")


def _check_finite(model: Model, history: History) -> None:
    """A run that diverged (a NaN/inf loss or weight) is an error, never a model to save."""
    losses = [v for row in history.rows for k, v in row.items() if k.endswith("_loss")]
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad or not all(math.isfinite(v) for v in losses):
        raise ValueError(
            f"training diverged: the loss or weights ({', '.join(bad) or 'loss'}) are not finite; "
            "lower the learning rate or check the ratings for extreme values"
        )


def train_step(
    model: Model,
    opt: RowAdamW,
    u: Tensor,
    i: Tensor,
    r: Tensor,
    lr: float,
    mom: float,
    wd: float,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = torch.nn.functional.mse_loss,
    compiled: bool = True,
    at: Tensor | None = None,
) -> Tensor:
    """One optimiser step on a batch; returns the batch loss.

    The dot family's MSE step on CPU runs as one compiled pass (``core.kernels``). Otherwise, for
    the tables a model declares as indexed by user or item, gather just the batch's unique rows
    into small leaf tensors, run the model on those (via functional_call with remapped indices),
    and hand the row gradients to RowAdamW. Backward and update then cost O(batch), never
    O(table), and need no sparse-gradient coalescing. ``compiled=False``: always the torch path
    (data-parallel runs: their optimiser exchanges gradients inside ``step``).
    ``at``: the batch is rows ``at`` of (u, i, r), an epoch's encoded arrays (the compiled step
    reads them in place).
    """
    dot = compiled_tables(model, loss_fn, u.device) if compiled else None
    if dot is not None:
        opt.steps += 1
        moments = [opt.moments_of(p) for p in dot]
        loss = kernels.dot_mse_step(dot, moments, u, i, r, model.config.y_range, opt.steps, opt.hyper(lr, mom, wd), at)
        return torch.tensor(loss, dtype=torch.float32)
    if at is not None:
        u, i, r = _gather(Encoded(u, i, r), at)
    tables = model.indexed_tables()
    opt.zero_grad()
    if not tables:
        loss = loss_fn(model(u, i), r)
        loss.backward()
        opt.step(lr, mom, wd)
        return loss.detach()
    uu, u_local = unique_rows(u, len(model.users))
    ii, i_local = unique_rows(i, len(model.items))
    params = dict(model.named_parameters())
    # index_select, not params[name][uu]: the same rows, several times faster on CPU
    subs = {n: params[n].detach().index_select(0, uu if side == "user" else ii).requires_grad_() for n, side in tables.items()}
    loss = loss_fn(torch.func.functional_call(model, subs, (u_local, i_local)), r)
    loss.backward()
    rows = {
        id(params[n]): (uu if side == "user" else ii, subs[n].grad, subs[n].detach())
        for n, side in tables.items()
    }
    opt.step(lr, mom, wd, rows)
    return loss.detach()


def compiled_tables(model: Model, loss_fn: Callable, device: torch.device) -> list[Tensor] | None:
    """The tables ``train_step`` hands to the compiled step (``model.dot_tables()``, float32, on
    the CPU, trained for MSE), or None: the step backpropagates in torch. (A data-parallel run
    never asks: its optimiser exchanges gradients inside its own step.)"""
    if loss_fn is not F.mse_loss or device.type != "cpu":
        return None
    dot = model.dot_tables()
    return dot if dot is not None and all(t.dtype == torch.float32 for t in dot) else None


def _gather(data: Encoded, at: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rows ``at`` of the encoded ratings, indices widened to int64 (what embeddings take)."""
    u, i = data.users.index_select(0, at).long(), data.items.index_select(0, at).long()
    return u, i, data.ratings.index_select(0, at)


def _to(device: torch.device, *tensors: Tensor) -> tuple[Tensor, ...]:
    return tuple(t.to(device, non_blocking=True) for t in tensors)


def unique_rows(idx: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """``torch.unique(idx, return_inverse=True)`` for indices into a table of ``n`` rows.

    When the table is not much larger than the batch, marking the rows in an (n,) mask and
    numbering them is O(batch + n) and several times cheaper than unique's sort.
    """
    if n > 64 * len(idx):
        return torch.unique(idx, return_inverse=True)
    mark = torch.zeros(n, dtype=torch.bool, device=idx.device)
    mark[idx] = True
    rows = mark.nonzero().squeeze(1)
    number = torch.empty(n, dtype=torch.long, device=idx.device)
    number[rows] = torch.arange(len(rows), device=idx.device)
    return rows, number[idx]


def _batch_bounds(n: int, bs: int) -> list[tuple[int, int]]:
    """Batch (start, end) pairs; a final batch of one row joins the previous one (BatchNorm needs 2)."""
    starts = list(range(0, n, bs))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [(s, starts[k + 1] if k + 1 < len(starts) else n) for k, s in enumerate(starts)]


def _progress(console: Console | None, enabled: bool) -> Progress | None:
    if console is None or not enabled:
        return None
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} batches"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}" if seconds < 3600 else f"{seconds:.0f}s"
