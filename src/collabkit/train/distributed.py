"""Data-parallel training under torchrun: the one training stack, on shards (gloo on CPU, NCCL on GPU).

    collabkit train --dataset ml-100k --split u1 --out m/ --distributed       # prints the lines:
    torchrun --nproc-per-node 2 -m collabkit.cli train --dataset ml-100k --split u1 --out m/ --distributed

Each rank joins torchrun's process group (``join``), reads its shard of the split data
(``load_shards``), builds the same model from vocabularies shared by every rank
(``sharded_model``) and trains it with ``model.fit`` inside ``core.parallel.use``: the one-cycle
engine's own loop, settings checks and NaN guard, with the batches, optimiser and sums of
``core.parallel``. Rank 0 writes the checkpoint, which loads in a single process. With a GPU
(``--device cuda``) each process trains on GPU number LOCAL_RANK and the process group is
``cpu:gloo,cuda:nccl``: the gradient rows (GPU tensors) go over NCCL, the few CPU numbers the
ranks agree on (sizes, vocabularies, losses) over gloo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from collabkit.core import device as devices
from collabkit.core.parallel import Ranks
from collabkit.data.interactions import Ratings
from collabkit.data.source import DataSource
from collabkit.data.vocab import Vocab
from collabkit.models.base import CollabModel, get_model_class
from collabkit.train.spec import ModelSpec


def launched() -> bool:
    """True in a process torchrun started (it sets WORLD_SIZE and the rendezvous variables)."""
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def join(device_name: str = "cpu") -> tuple[Ranks, torch.device]:
    """Join torchrun's process group: (this rank, its device). A bare ``cuda`` (or ``auto`` on a
    GPU host) means GPU number LOCAL_RANK, one per process as torchrun starts them."""
    device = devices.resolve(device_name)
    if device.type == "cuda":
        if device.index is None:
            device = devices.resolve(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def leave() -> None:
    """Wait for every rank (rank 0's checkpoint is complete), then leave the process group."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(ratings: Ratings, rank: int, world: int) -> Ratings:
    """Rows rank, rank + world, ... of ``ratings``: this rank's share of data it has read whole."""
    return ratings.subset(np.arange(rank, len(ratings), world)) if world > 1 else ratings


def read_shard(path: str | Path, rank: int, world: int, **read: Any) -> Ratings:
    """This rank's files of a folder of shards (CSV/TSV/Parquet): files rank, rank + world, ...,
    so no rank reads the others' data. ``read`` goes to ``read_ratings``."""
    from collabkit.data.readers import read_ratings

    path = Path(path)
    if read.get("item_columns"):  # each shard would describe only its own items
        raise ValueError(f"{path}: --item-columns reads one ratings file, not a folder of shards; give the metadata as --items FILE")
    files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".tsv", ".parquet"))
    if len(files) < world:
        raise ValueError(f"{path}: {len(files)} shard file(s) for {world} ranks; need at least one each")
    parts = [read_ratings(p, **read) for p in files[rank::world]]
    frame = pd.concat([p.frame for p in parts], ignore_index=True)
    return parts[0].with_frame(frame, name=path.name)


def load_shards(source: DataSource, ranks: Ranks) -> tuple[Ratings, Ratings | None]:
    """This rank's (train, test). A folder of shard files: the rank's files, split on their own
    (random or none); otherwise the whole data is read and split on every rank (the same split,
    seeded) and each rank keeps every world-th row of both parts."""
    source = source.resolved()
    if source.ratings is not None and Path(source.ratings).is_dir():
        if source.split not in ("random", "none"):
            raise ValueError(f"{source.ratings}: a folder of shards is split at random or not at all, not {source.split!r}")
        local = read_shard(source.ratings, ranks.rank, ranks.world, **source.read_options())
        local.origin = None  # no single file to read back
        return source.split_data(local)
    train, test = source.split_data(source.load())
    return shard(train, ranks.rank, ranks.world), None if test is None else shard(test, ranks.rank, ranks.world)


def shared_vocabs(local: Ratings) -> tuple[Vocab, Vocab]:
    """The vocabularies of all shards together (what ``from_data`` would build on the whole set)."""
    users, items = local.frame["user"].unique(), local.frame["item"].unique()
    if dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (users, items))
        users = np.concatenate([g[0] for g in gathered])
        items = np.concatenate([g[1] for g in gathered])
    return Vocab(users, "user"), Vocab(items, "item")


def sharded_model(spec: str | ModelSpec, local: Ratings, **config: Any) -> CollabModel:
    """The untrained model ``spec`` names, sized over every rank's shard: ``from_vocabs`` with the
    shared vocabularies, scale and mean, so every rank starts from the same weights."""
    parsed = ModelSpec.parse(spec)
    if parsed.is_preset:
        raise ValueError(f"{parsed.name}: data-parallel training takes one gradient-trained kind, not a preset")
    users, items = shared_vocabs(local)
    r = torch.tensor(local.frame["rating"].to_numpy(dtype=np.float64))
    lo, hi = local.scale or (float(r.min()), float(r.max()))
    stats = torch.tensor([float(r.sum()), float(len(r))], dtype=torch.float64)
    low, high = torch.tensor([lo], dtype=torch.float64), torch.tensor([hi], dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(stats)
        dist.all_reduce(low, dist.ReduceOp.MIN)
        dist.all_reduce(high, dist.ReduceOp.MAX)
    cls = get_model_class(parsed.kind)
    return cls.from_vocabs(users, items, (float(low), float(high)), float(stats[0] / stats[1]), **{**parsed.config, **config})
