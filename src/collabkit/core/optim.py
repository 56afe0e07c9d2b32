"""AdamW that touches only the embedding rows a batch used (lazy, decoupled weight decay).

A dense optimiser would decay and update every row of every table at every step, which costs
O(table size) per batch and regularises rows that were not in the batch. Here the moments, the
update and the weight decay of an embedding table apply to the batch's rows only, so a row is
regularised in proportion to how often it is seen; other parameters (an MLP) get plain AdamW.
Row updates arrive either as (rows, grad) pairs from the trainer's gathered sub-tables (the fast
path) or as sparse gradients (``nn.Embedding(sparse=True)``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.adam import adam


class RowAdamW:
    """Adam with decoupled weight decay; embedding tables are updated row-wise."""

    def __init__(self, params: list[Tensor], beta2: float = 0.99, eps: float = 1e-5) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.beta2, self.eps = beta2, eps
        # both moments in one (2, rows, ...) tensor: one gather and one write per table a step,
        # and each moment's rows come out contiguous, as torch's fused AdamW kernel needs
        self.moments = [torch.zeros(2, *p.shape, device=p.device) for p in self.params]
        self.steps = 0

    def hyper(self, lr: float, beta1: float, wd: float) -> dict[str, float]:
        """This step's settings, by the names of torch's functional ``adam``."""
        return {"lr": lr, "beta1": beta1, "beta2": self.beta2, "weight_decay": wd, "eps": self.eps}

    def moments_of(self, p: Tensor) -> Tensor:
        """The (2, *p.shape) first and second moments kept for parameter ``p``."""
        return next(m for q, m in zip(self.params, self.moments) if q is p)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float, beta1: float, wd: float, rows: dict[int, tuple[Tensor, Tensor, Tensor]] | None = None) -> None:
        """One update; ``rows`` maps id(param) -> (unique row indices, their gradient, their values).

        Passing the already-gathered row values saves one random-access gather per table.
        """
        self.steps += 1
        hyper = self.hyper(lr, beta1, wd)
        rows = rows or {}
        for p, moments in zip(self.params, self.moments):
            if id(p) in rows:
                idx, g, w = rows[id(p)]
            elif p.grad is not None and p.grad.is_sparse:
                g = p.grad.coalesce()  # duplicate rows in a batch are summed
                idx, g = g.indices()[0], g.values()
                w = p.index_select(0, idx)
            elif p.grad is not None:
                adamw_(p, p.grad, moments, self.steps, hyper)
                continue
            else:
                continue
            mv = moments.index_select(1, idx)  # not moments[:, idx]: several times faster
            adamw_(w, g, mv, self.steps, hyper)
            moments.index_copy_(1, idx, mv)
            p.index_copy_(0, idx, w)


def adamw_(p: Tensor, g: Tensor, moments: Tensor, steps: int, hyper: dict[str, float]) -> None:
    """AdamW step number ``steps`` on ``p`` and its ``moments`` (2, *p.shape), in place, by torch's
    fused kernel (``AdamW(fused=True)``'s): one pass over the rows instead of nine tensor ops."""
    done = torch.tensor(float(steps - 1), device=p.device)  # the functional counts this step itself
    adam([p], [g], [moments[0]], [moments[1]], [], [done], fused=True, decoupled_weight_decay=True,
         amsgrad=False, maximize=False, **hyper)  # fmt: skip
