"""I-AutoRec (Sedhain et al. 2015): an autoencoder that rebuilds each item's column of ratings.

    h_i = sigmoid(W r_i + b)                     r_i: item i's training ratings, one per user (0 = unrated)
    score(u, i) = clip(mu + V_u . h_i + c_u)     mu: the training mean rating

trained full-batch on the observed entries only:
    min  1/2 sum_{(u,i) observed} (r_ui - score(u, i))^2 + reg/2 (||W||^2 + ||V||^2)
with Adam and a cosine-annealed learning rate.

In the contract's terms item_repr(i) = h_i, computed from r_i, which is kept as CSR buffers
(``item_indptr``, ``item_users``, ``item_ratings``) so it is saved with the weights;
user_repr(u) = [V_u, c_u]. An unknown item gets h = 0, i.e. mu + c_u; an unknown user mu + 0 . h_i = mu.
Training materialises the n_items x n_users matrix, which is fine up to MovieLens-1M.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from collabkit.core.loop import History, encode
from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models.base import FACTORS, FOLD_IN, RATINGS, CollabModel, Scorer, Sizes

#: the fixed cost of one full-batch step (Python, kernel launches), in dot-bias rating-epochs
STEP_WORK = 10_000
from collabkit.models.config import ModelConfig


@dataclass
class AutoRecConfig(ModelConfig):
    n_factors: int = field(default=500, metadata={"min": 1})  # hidden units: the width of h_i and of V_u
    # lambda on ||W||^2 + ||V||^2 (against the summed, not averaged, error)
    reg: float = field(default=60.0, metadata={"min": 0})
    # full-batch Adam steps (220 and 400 were worse on validation)
    epochs: int = field(default=300, metadata={"min": 1})
    lr: float = field(default=4e-3, metadata={"gt": 0})  # Adam's peak learning rate, cosine-annealed to 0
    # predictions clipped here; from_data sets the scale
    clip: tuple[float, float] | None = field(default=None, metadata={"increasing": True})

    def fit_bytes(self, n_users: int, n_items: int, n_ratings: int, weight_bytes: int) -> int:
        """Full-batch training holds dense n_items x n_users blocks: the target, the output, the
        error and its gradient (float32) and the observed mask (bool), 17 bytes a cell; Adam adds
        two moments and a gradient per weight."""
        return 17 * n_items * n_users + 3 * weight_bytes


class AutoRec(CollabModel):
    """Item-based AutoRec (module docstring); ``fit(train)`` trains it, full batch."""

    kind = "autorec"
    Config = AutoRecConfig
    capabilities = frozenset({FOLD_IN, FACTORS, RATINGS})
    bias_columns = (1, 0)  # user_repr = [V_u, c_u]; item_repr = the code h_i
    wants_y_range = False
    data_sized = ("item_users", "item_ratings")  # length = number of training ratings

    def __init__(self, config: AutoRecConfig, users: Vocab, items: Vocab) -> None:
        super().__init__(config, users, items)
        h = config.n_factors
        self.encoder = nn.Linear(len(users), h)  # W (h, n_users), b (h,)
        self.decoder = nn.Embedding(len(users), h)  # V_u
        self.decoder_bias = nn.Embedding(len(users), 1)  # c_u
        nn.init.uniform_(self.decoder.weight, -(h**-0.5), h**-0.5)
        nn.init.zeros_(self.decoder_bias.weight)
        self.register_buffer("global_mean", torch.zeros(()))
        self.register_buffer("item_indptr", torch.zeros(len(items) + 1, dtype=torch.int64))
        self.register_buffer("item_users", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("item_ratings", torch.zeros(0))

    # --- the contract ---------------------------------------------------------------------
    def user_repr(self, u: Tensor) -> Tensor:
        return torch.cat([self.decoder(u), self.decoder_bias(u)], 1)  # (B, h + 1)

    def item_repr(self, i: Tensor) -> Tensor:
        """(B,) item indices -> (B, h) codes h_i, encoded once per distinct item."""
        ii, inv = torch.unique(i, return_inverse=True)
        return torch.sigmoid(self._encode(self._columns(ii)))[inv]

    def head(self, ur: Tensor, ir: Tensor) -> Tensor:
        return self._clip(self.global_mean + (ur[..., :-1] * ir).sum(-1) + ur[..., -1])

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """Dense items x users products of width n_factors a step plus a fixed cost per full-batch
        step (measured on ML-100k, one thread: ~3.6x the first estimate). Memory: the target, mask,
        output and their gradients, dense; the encoder and decoder (users x n_factors each) with
        their gradients and Adam's moments."""
        h = cls.option(config, "n_factors")
        cells = float(sizes.users) * sizes.items
        work = cls.option(config, "epochs") * (cells * h * 3e-4 + 3.6 * STEP_WORK)
        return work, cells * 4 * 6 + 2.0 * sizes.users * (h + 1) * 4 * 4

    @classmethod
    def sized(cls, config: dict[str, Any], sizes: Sizes, limit: float) -> tuple[dict[str, Any] | None, str]:
        _, mem = cls.cost(config, sizes)
        if mem <= limit:
            return config, ""
        return None, f"skipped: its dense items x users matrix ({sizes.items} x {sizes.users}) would need ~{mem / 1e9:.1f} GB (> {limit / 1e9:.1f} GB)"

    @torch.no_grad()
    def scorer(self, items: Tensor | None = None) -> Scorer:
        """Every item's code h_i (an encoder pass over its whole column) once, then a product per chunk."""
        codes = self.item_repr(self.catalogue(items))

        @torch.no_grad()
        def rank(ur: Tensor) -> Tensor:
            return self._clip(self.global_mean + ur[:, :-1] @ codes.T + ur[:, -1:])

        return Scorer(rank)

    @torch.no_grad()
    def user_linear(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """z = mu + [V_u, c_u] . [h_i, 1] (the clip is left out of fold-in)."""
        ir = self.item_reprs(items)
        A = torch.cat([ir, torch.ones_like(ir[..., :1])], -1)
        return A, torch.full(items.shape, float(self.global_mean), dtype=torch.float64)

    # --- training ---------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, console: Any, progress: bool) -> History:
        """Store the item columns of ``train`` and fit full-batch (module docstring)."""
        cfg: AutoRecConfig = self.config
        t_start = time.perf_counter()
        data = encode(self, train)
        self._set_columns(data.users, data.items, data.ratings)
        R = self._columns(torch.arange(len(self.items)))  # (n_items, n_users) sparse
        target = R.to_dense()
        # observed cells from the stored pattern, not from target != 0: a rating of 0 (a 0..10 or
        # -10..10 scale) is a rating to fit, though as an input it reads like an unrated cell
        observed = torch.zeros(R.shape, dtype=torch.bool)
        observed[R.indices()[0], R.indices()[1]] = True
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        torch.manual_seed(cfg.seed)
        history = History()
        self.train()
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
            opt.zero_grad()
            codes = torch.sigmoid(self._encode(R))  # (I, h)
            out = (
                codes @ self.decoder.weight.T + self.decoder_bias.weight.T
            )  # (I, U), mu added later
            sse = ((out - target) * observed).pow(2).sum()
            penalty = self.encoder.weight.pow(2).sum() + self.decoder.weight.pow(2).sum()
            loss = sse / 2 + cfg.reg / 2 * penalty
            loss.backward()
            opt.step()
            history.rows.append(
                {
                    "epoch": epoch,
                    "train_loss": sse.item() / len(data),
                    "time": time.perf_counter() - t0,
                }
            )
            if console is not None and (epoch + 1) % 50 == 0:
                console.print(f"AutoRec epoch {epoch + 1}: train mse {sse.item() / len(data):.4f}")
        # Trained on raw ratings (centring them first was clearly worse on validation); moving mu
        # out of c_u changes no prediction but makes mu the fallback for an unknown user.
        with torch.no_grad():
            mu = float(data.ratings.mean())
            self.decoder_bias.weight.sub_(mu)
            self.global_mean.fill_(mu)
        history.fit_seconds = time.perf_counter() - t_start
        self.eval()
        return history

    # --- helpers ----------------------------------------------------------------------------
    def _encode(self, columns: Tensor) -> Tensor:
        """Sparse (B, n_users) rating columns -> (B, h) pre-activations W r + b."""
        return torch.sparse.mm(columns, self.encoder.weight.T) + self.encoder.bias

    def _clip(self, x: Tensor) -> Tensor:
        c = self.config.clip
        return x if c is None else x.clamp(*c)

    def _set_columns(self, users: Tensor, items: Tensor, ratings: Tensor) -> None:
        """Keep each item's training ratings r_i as CSR (items by index, users sorted within)."""
        u, i = users.numpy(), items.numpy()
        order = np.lexsort((u, i))
        counts = np.bincount(i, minlength=len(self.items))
        self.item_indptr = torch.from_numpy(np.r_[0, np.cumsum(counts)].astype(np.int64))
        self.item_users = torch.from_numpy(u[order].astype(np.int64))
        self.item_ratings = ratings[torch.from_numpy(order)].float()

    def _columns(self, ii: Tensor) -> Tensor:
        """Sparse COO (len(ii), n_users) of the stored training columns of items ``ii``."""
        start, lens = self.item_indptr[ii], self.item_indptr[ii + 1] - self.item_indptr[ii]
        offsets = torch.cumsum(lens, 0) - lens
        pos = torch.arange(int(lens.sum())) - torch.repeat_interleave(offsets - start, lens)
        rows = torch.repeat_interleave(torch.arange(len(ii)), lens)
        idx = torch.stack([rows, self.item_users[pos]])
        return torch.sparse_coo_tensor(
            idx,
            self.item_ratings[pos],
            (len(ii), len(self.users)),
            is_coalesced=True,
            check_invariants=True,
        )

    user_item_tables: ClassVar[dict[str, str]] = {}  # not trained by the shared loop
