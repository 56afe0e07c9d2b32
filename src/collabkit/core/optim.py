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


class RowAdamW:
    """Adam with decoupled weight decay; embedding tables are updated row-wise."""

    def __init__(self, params: list[Tensor], beta2: float = 0.99, eps: float = 1e-5) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.beta2, self.eps = beta2, eps
        # a row's two moments side by side, (rows, 2, ...): one gather and one write per table
        # a step instead of two of each (about 1.5x faster at tens of thousands of rows)
        self.moments = [torch.zeros(p.shape[0], 2, *p.shape[1:]) if p.dim() else torch.zeros(2) for p in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float, beta1: float, wd: float, rows: dict[int, tuple[Tensor, Tensor, Tensor]] | None = None) -> None:
        """One update; ``rows`` maps id(param) -> (unique row indices, their gradient, their values).

        Passing the already-gathered row values saves one random-access gather per table.
        """
        self.steps += 1
        b2 = self.beta2
        bc2 = 1 - b2**self.steps
        step_size = lr / (1 - beta1**self.steps)
        rows = rows or {}
        for p, moments in zip(self.params, self.moments):
            if id(p) in rows:
                idx, g, w = rows[id(p)]
            elif p.grad is not None and p.grad.is_sparse:
                g = p.grad.coalesce()  # duplicate rows in a batch are summed
                idx, g = g.indices()[0], g.values()
                w = p.index_select(0, idx)
            elif p.grad is not None:
                m, v = moments.unbind(1 if p.dim() else 0)  # views: updated in place
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                if wd:
                    p.mul_(1 - lr * wd)
                p.addcdiv_(m, (v / bc2).sqrt_().add_(self.eps), value=-step_size)
                continue
            else:
                continue
            adam_rows(p, moments, idx, g, w, beta1, b2, bc2, step_size, lr * wd, self.eps)


def adam_rows(
    p: Tensor, moments: Tensor, idx: Tensor, g: Tensor, w: Tensor,
    beta1: float, b2: float, bc2: float, step_size: float, decay: float, eps: float,
) -> None:  # fmt: skip
    """AdamW on rows ``idx`` of ``p`` (their values ``w``, updated in place; gradient ``g``)."""
    mv = moments.index_select(0, idx)  # index_select, not moments[idx]: several times faster
    m_r = mv.select(1, 0).mul_(beta1).add_(g, alpha=1 - beta1)
    v_r = mv.select(1, 1).mul_(b2).addcmul_(g, g, value=1 - b2)
    moments[idx] = mv
    if decay:
        w.mul_(1 - decay)
    p[idx] = w.addcdiv_(m_r, (v_r / bc2).sqrt_().add_(eps), value=-step_size)
