"""Data-parallel training with torch.distributed, launched by torchrun (gloo on CPU, NCCL on GPU).

    torchrun --nproc-per-node 2 -m collabkit.train.distributed --dataset ml-100k --split u1 --out m/

Every rank reads its own shard of the ratings (``read_shard``), the ranks agree on the
vocabularies (ids exchanged once), and each holds a full replica of the model, started from the
same seed. A step is ``train.loop.train_step`` on the rank's batch: the gradient rows of the
batch's users and items are gathered, then ``ExchangeRowAdamW`` swaps those rows between ranks
(all_gather of O(batch x F) numbers, never a table), sums them and applies the same RowAdamW
update everywhere, so the replicas stay identical and the run is the single-process run at batch
size world x bs. Rank 0 writes the checkpoint (``save_model``); it loads in a single process.
With ``--device cuda`` each process trains on GPU number LOCAL_RANK and the process group is
``cpu:gloo,cuda:nccl``: the gradient rows (GPU tensors) go over NCCL, the few CPU numbers the
ranks agree on (sizes, vocabularies, losses) over gloo.

Why rows: a step touches a few thousand rows of tables of hundreds of thousands. Shipping the
touched rows costs what a row-sharded lookup would (both O(batch x F) numbers) without a second
model layout; a dense all-reduce of the tables (DDP without sparse gradients) costs O(table). On
this 2-core machine, 2 ranks on gloo/127.0.0.1 (under load): the row exchange took 3.3 ms per
step at 512 rows per rank and 12.5 ms at 4096; an all-reduce of ML-32M-sized tables (287k x 51
floats) took 155 ms per step (ML-100k-sized: 4.6 ms). Latency dominates small batches, so large
``bs`` pays off more here than in one process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from rich.console import Console
from torch import Tensor

from collabkit.checkpoint import save_model
from collabkit.core import device as devices
from collabkit.core.loop import (
    History,
    encode,
    lr_scale,
    step_threads,
    train_step,
    training_settings,
)
from collabkit.core.optim import RowAdamW
from collabkit.core.schedule import one_cycle
from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models.base import CollabModel, default_y_range, get_model_class
from collabkit.train.build import ModelSpec


def init(backend: str = "gloo") -> tuple[int, int]:
    """(rank, world size): joins torchrun's process group, or (0, 1) when run without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def rank_device(name: str) -> torch.device:
    """This process's device for ``--device name``: a bare ``cuda`` (or ``auto`` on a GPU host)
    means GPU number LOCAL_RANK, one per process as torchrun starts them; made current for NCCL."""
    device = devices.resolve(name)
    if device.type == "cuda":
        if device.index is None:
            device = devices.resolve(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(device)
    return device


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def shard(ratings: Ratings, rank: int, world: int) -> Ratings:
    """Rows rank, rank + world, ... of ``ratings``: this rank's share of data it has read whole."""
    return ratings.subset(np.arange(rank, len(ratings), world)) if world > 1 else ratings


def read_shard(path: str | Path, rank: int, world: int, **read: Any) -> Ratings:
    """This rank's ratings: from a folder of shard files (CSV/TSV/Parquet), files rank, rank +
    world, ... (so no rank reads the others' data); from one file, every world-th row of it.
    ``read`` goes to ``read_ratings`` (column names, scale, duplicates policy...)."""
    from collabkit.data.readers import read_ratings

    path = Path(path)
    if not path.is_dir():
        return shard(read_ratings(path, **read), rank, world)
    files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".tsv", ".parquet"))
    if len(files) < world:
        raise ValueError(f"{path}: {len(files)} shard file(s) for {world} ranks; need at least one each")
    parts = [read_ratings(p, **read) for p in files[rank::world]]
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    return parts[0].with_frame(frame, name=path.name)


def shared_vocabs(local: Ratings) -> tuple[Vocab, Vocab]:
    """The vocabularies of all shards together (what ``from_data`` would build on the whole set)."""
    users, items = local.frame["user"].unique(), local.frame["item"].unique()
    if _world() > 1:
        gathered: list[Any] = [None] * _world()
        dist.all_gather_object(gathered, (users, items))
        users = np.concatenate([g[0] for g in gathered])
        items = np.concatenate([g[1] for g in gathered])
    return Vocab(users, "user"), Vocab(items, "item")


def sharded_model(spec: str, local: Ratings, **config: Any) -> CollabModel:
    """The untrained model ``spec`` names (parsed as ``train.build`` does), sized over every rank's
    shard: shared vocabularies, scale and mean, the same initial weights on every rank.
    ``build_model`` cannot be used here: no single rank sees every id."""
    parsed = ModelSpec.parse(spec)
    if parsed.is_preset:
        raise ValueError(f"{spec}: distributed training takes one gradient-trained kind, not a preset")
    cls = get_model_class(parsed.kind)
    config = {**parsed.config, **config}
    users, items = shared_vocabs(local)
    r = torch.tensor(local.frame["rating"].to_numpy(dtype=np.float64))
    lo, hi = local.scale or (float(r.min()), float(r.max()))
    stats = torch.tensor([float(r.sum()), float(len(r))], dtype=torch.float64)
    low, high = torch.tensor([lo], dtype=torch.float64), torch.tensor([hi], dtype=torch.float64)
    if _world() > 1:
        dist.all_reduce(stats)
        dist.all_reduce(low, dist.ReduceOp.MIN)
        dist.all_reduce(high, dist.ReduceOp.MAX)
    scale = (float(low), float(high))
    cfg = cls.Config(**config)
    if "y_range" in {f.name for f in fields(cfg)} and "y_range" not in config and cls.wants_y_range:
        cfg.y_range = default_y_range(scale)
    torch.manual_seed(cfg.seed)
    model = cls(cfg, users, items)
    model.meta = {"scale": list(scale), "global_mean": float(stats[0] / stats[1])}
    return model


class ExchangeRowAdamW(RowAdamW):
    """RowAdamW whose step first averages the ranks' gradients: row gradients by all_gather of
    (rows, gradient) and a sum over equal rows, other parameters by all_reduce."""

    @torch.no_grad()
    def step(
        self, lr: float, beta1: float, wd: float, rows: dict[int, tuple[Tensor, Tensor, Tensor]] | None = None
    ) -> None:
        world = _world()
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


def fit_distributed(
    model: CollabModel,
    local: Ratings,
    valid: Ratings | None = None,
    epochs: int = 5,
    lr_max: float = 5e-3,
    wd: float = 0.1,
    bs: int | None = None,
    seed: int = 42,
    console: Console | None = None,
) -> History:
    """``fit_one_cycle`` across ranks: ``bs`` is the global batch (each rank takes bs / world of
    it from its shard ``local``); same one-cycle schedule, lr scaling and History rows, with the
    losses averaged over all ranks (``valid``: this rank's shard of the validation set). Steps
    run on ``core.device.current()``, as in ``fit_one_cycle``."""
    world = _world()
    device = devices.current()
    data = encode(model, local, compact=True)
    val = encode(model, valid, strict=False) if valid is not None and len(valid) else None
    counts = torch.tensor([len(data), len(data)], dtype=torch.int64)
    if world > 1:
        dist.all_reduce(counts[:1])  # total ratings
        dist.all_reduce(counts[1:], dist.ReduceOp.MIN)  # the smallest shard
    bs = bs or model.default_bs
    # the same number of batches on every rank (collectives must pair up), each ~bs / world rows
    n_batches = max(1, min(math.ceil(int(counts[0]) / bs), int(counts[1])))
    cuts = np.linspace(0, len(data), n_batches + 1).astype(np.int64)
    total = epochs * n_batches
    lr_max = lr_max * lr_scale(bs)
    gen = torch.Generator().manual_seed(seed + dist.get_rank() if world > 1 else seed)
    history = History()
    if console is not None:
        console.print(f"{'epoch':>5} {'train_loss':>11} {'valid_loss':>11} {'time':>7}")
    t_start = time.perf_counter()
    step = 0
    with training_settings(step_threads(bs // world)), devices.placed(model, device):
        opt = ExchangeRowAdamW(list(model.parameters()))  # moments on the model's device
        for epoch in range(epochs):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(len(data), generator=gen, dtype=torch.int32)
            loss_sum = torch.zeros((), dtype=torch.float64)
            for s, e in itertools.pairwise(cuts):
                idx = perm[s:e]
                lr, mom = one_cycle(step / total, lr_max)
                u, i = data.users.index_select(0, idx).long(), data.items.index_select(0, idx).long()
                r = data.ratings.index_select(0, idx)
                with devices.factories(device):
                    loss = train_step(model, opt, u.to(device), i.to(device), r.to(device), lr, mom, wd)
                loss_sum += float(loss) * len(idx)
                step += 1
            sums = [loss_sum, torch.tensor(float(len(data)), dtype=torch.float64)]
            if val is not None:
                with devices.factories(device):
                    err = model.predict_idx(val.users.to(device), val.items.to(device)) - val.ratings.to(device)
                sse = float(err.double().pow(2).sum())
                sums += [torch.tensor(sse, dtype=torch.float64), torch.tensor(float(len(val)), dtype=torch.float64)]
            totals = torch.stack(sums)
            if world > 1:
                dist.all_reduce(totals)
            row = {"epoch": epoch, "train_loss": float(totals[0] / totals[1])}
            if val is not None:
                row["valid_loss"] = float(totals[2] / totals[3])
            row["time"] = time.perf_counter() - t0
            history.rows.append(row)
            if console is not None:
                v = f"{row['valid_loss']:11.6f}" if "valid_loss" in row else f"{'':>11}"
                console.print(f"{epoch:>5} {row['train_loss']:11.6f} {v} {row['time']:6.1f}s")
    history.fit_seconds = time.perf_counter() - t_start
    model.eval()
    return history


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ratings", type=Path, help="a ratings file (each rank keeps every world-th row) or a folder of shard files")
    src.add_argument("--dataset", help="a MovieLens set (ml-100k ...), each rank keeping every world-th row")
    p.add_argument("--data-dir", type=Path, default=None, help="folder holding the MovieLens sets")
    p.add_argument("--split", default=None, help="ML-100k canonical split (u1..u5, ua, ub): train on .base, validate on .test")
    p.add_argument("--valid", type=Path, default=None, help="with --ratings: a validation file or folder, sharded the same way")
    p.add_argument("--model", default="dot-bias")
    p.add_argument("--n-factors", type=int, default=50)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--bs", type=int, default=None, help="global batch size (default: the model's)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", help="cpu (gloo), or cuda / auto: each process on GPU LOCAL_RANK, gradients over NCCL")
    p.add_argument("--out", type=Path, default=None, help="rank 0 saves the model here")
    p.add_argument("--json", action="store_true", help="rank 0 prints one JSON object")
    args = p.parse_args(argv)
    device = rank_device(args.device)
    rank, world = init("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    train, valid = _load(args, rank, world)
    model = sharded_model(args.model, train, n_factors=args.n_factors, seed=args.seed)
    console = Console(stderr=True) if rank == 0 and not args.json else None
    with devices.use(device):
        history = fit_distributed(model, train, valid, args.epochs, args.lr, args.wd, args.bs, args.seed, console)
    n_total = torch.tensor([len(train)], dtype=torch.int64)
    if world > 1:
        dist.all_reduce(n_total)
    if rank == 0 and args.out is not None:
        save_model(model, args.out)
    if world > 1:
        dist.barrier()  # the checkpoint is complete before any rank exits
        dist.destroy_process_group()
    if rank == 0:
        result = {
            "world": world,
            "device": device.type,
            "model": args.model,
            "n_ratings": int(n_total),
            "fit_seconds": round(history.fit_seconds, 3),
            "ratings_per_s": round(args.epochs * int(n_total) / history.fit_seconds),
            **{k: v for k, v in history.final.items() if k != "epoch"},
        }
        if "valid_loss" in result:
            result["rmse"] = math.sqrt(result["valid_loss"])
        print(json.dumps(result) if args.json else "  ".join(f"{k} {v}" for k, v in result.items()))


def _load(args: argparse.Namespace, rank: int, world: int) -> tuple[Ratings, Ratings | None]:
    if args.ratings is not None:
        valid = read_shard(args.valid, rank, world) if args.valid else None
        return read_shard(args.ratings, rank, world), valid
    from collabkit.data.movielens import canonical_split, load_movielens

    if args.split:
        train, valid = canonical_split(args.split, args.dataset, data_dir=args.data_dir)
        return shard(train, rank, world), shard(valid, rank, world)
    return shard(load_movielens(args.dataset, data_dir=args.data_dir, progress=False), rank, world), None


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
