"""Where the heavy tensor work runs: the CPU by default, a GPU when asked for (``--device``).

The device is a setting of the running command, not of a model: ``use(device)`` sets it for a
block, and the one-cycle engine (``core.loop``) and top-N scoring (``recommend.topn``) read it
with ``current()``. They move the model there for their work and back to the CPU afterwards, so
saving, numpy results and the service always see a CPU model. Everything else (ALS's compiled
kernels, EASE, fold-in, the baseline sweep) runs on the CPU whatever the setting.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar

import torch
from torch import nn

CPU = torch.device("cpu")
_current: ContextVar[torch.device] = ContextVar("collabkit_device", default=CPU)


def resolve(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (a GPU when torch sees one, else the CPU).

    Asking for a GPU that is not there is an error, never a silent fall back to the CPU.
    """
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cpu":
        return CPU
    if device.type != "cuda":
        raise ValueError(f"unsupported device {str(device)!r}: use cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this PyTorch sees no CUDA GPU (torch.cuda.is_available() is False)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def current() -> torch.device:
    """The device set by the innermost ``use`` (the CPU outside any)."""
    return _current.get()


@contextmanager
def use(device: str | torch.device) -> Iterator[torch.device]:
    """Run the block's training and scoring on ``device`` (see ``resolve``)."""
    token = _current.set(resolve(device))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def of(model: nn.Module) -> torch.device:
    """The device holding ``model``'s first parameter or buffer (the CPU for an empty model)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)  # not every tensor: per request
    return CPU if first is None else first.device


@contextmanager
def placed(model: nn.Module, device: torch.device) -> Iterator[None]:
    """``model`` on ``device`` for the block, then back where it was.

    Parameters keep their identity (``Module.to`` swaps their data), so an optimiser built
    inside the block holds the model's own tensors.
    """
    home = of(model)
    if device == home:
        yield
        return
    model.to(device)
    try:
        yield
    finally:
        model.to(home)


def factories(device: torch.device) -> AbstractContextManager:
    """Tensor factories (``torch.arange``, ``torch.zeros``...) default to ``device`` in the block:
    model code that makes index tensors then runs unchanged on a GPU. A no-op for the CPU (the
    device context intercepts every torch call, which costs time in tight loops)."""
    return nullcontext() if device.type == "cpu" else torch.device(device)
