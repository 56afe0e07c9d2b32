"""Hybrid: DotProductBias plus user and item metadata embedded beside the ids.

The chapter's "tabular model with metadata", so that a user or an item without ratings can be
scored from its metadata alone:

    user_repr(u) = [P_u, b_u] + sum_f enc_f(x_uf)        (F + 1 numbers)
    item_repr(i) = [Q_i, b_i] + sum_g enc_g(y_ig)
    score        = sigmoid_range(ur[:F] . ir[:F] + ur[F] + ir[F], *y_range)

Each feature's encoding is F + 1 wide (factors and a bias): a categorical value looks up a row
of its own embedding table, a multi-valued "A|B" value averages its values' rows, and a numeric
value is standardised (mean and std of the training table) and multiplies a learned vector.
Missing values contribute nothing. The head is DotProductBias's, so top-N, fold-in and the rest
work unchanged. ``id_dropout`` zeroes the id part of a training example's representation with
that probability so the metadata part learns to stand alone (what a cold item has); at
prediction time known ids always use both parts.

Feature vocabularies and statistics live in the config (JSON), the known rows' encoded values in
buffers (safetensors), so a saved hybrid model scores new items after ``load_model``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from collabkit.data.interactions import Ratings
from collabkit.data.vocab import Vocab
from collabkit.models.base import Sizes
from collabkit.models.dot import BiasConfig, DotProductBias

MAX_LEVELS = 64  # automatic feature choice keeps categorical columns with at most this many values
ROWS_AT_ONCE = 32768  # rows whose metadata is encoded in one step (``FeatureEncoder.rows``)


@dataclass
class HybridConfig(BiasConfig):
    # feature specs {column, kind, values + width | mean + std}, built by from_data
    user_features: tuple[dict, ...] = ()
    item_features: tuple[dict, ...] = ()
    # chance that a training example has its ids hidden (the cold-start drill, module docstring)
    id_dropout: float = field(default=0.1, metadata={"min": 0, "lt": 1})


class FeatureEncoder(nn.Module):
    """One side's metadata -> (B, dim) vectors: the sum of each feature's encoding.

    Holds the encoded values of the model's known rows as buffers (``tokens_k``: (n_rows, width)
    value indices padded with -1, ``numbers``: (n_rows, n_numeric) standardised, 0 if missing).
    """

    def __init__(self, specs: tuple[dict, ...], n_rows: int, dim: int) -> None:
        super().__init__()
        self.specs = specs
        self.categorical = [s for s in specs if s["kind"] != "numeric"]
        self.numeric = [s for s in specs if s["kind"] == "numeric"]
        self.tables = nn.ModuleList(nn.Embedding(len(s["values"]), dim) for s in self.categorical)
        for t in self.tables:
            nn.init.normal_(t.weight, 0.0, 0.01)
        self.weights = nn.Parameter(torch.randn(len(self.numeric), dim) * 0.01)
        for k, s in enumerate(self.categorical):
            self.register_buffer(
                f"tokens_{k}", torch.full((n_rows, s["width"]), -1, dtype=torch.int64)
            )
        self.register_buffer("numbers", torch.zeros(n_rows, len(self.numeric)))

    def encode(self, table: pd.DataFrame) -> tuple[list[Tensor], Tensor]:
        """Raw metadata rows -> (tokens per categorical feature (B, w), numbers (B, n_numeric)).

        Values outside a feature's vocabulary contribute nothing (``new_*_repr`` warns about them).
        """
        missing = [s["column"] for s in self.specs if s["column"] not in table.columns]
        if missing:
            raise ValueError(
                f"metadata lacks column(s) {missing}; the model uses {[s['column'] for s in self.specs]}"
            )
        tokens = [_tokens(table[s["column"]], s) for s in self.categorical]
        cols = [
            (
                (pd.to_numeric(table[s["column"]], errors="coerce").astype(float) - s["mean"])
                / s["std"]
            ).fillna(0.0)
            for s in self.numeric
        ]
        numbers = np.stack([c.to_numpy() for c in cols], 1) if cols else np.zeros((len(table), 0))
        return tokens, torch.from_numpy(numbers).float()

    def fill(self, table: pd.DataFrame) -> None:
        """Store the encoded metadata of the known rows (``table`` aligned with the vocabulary)."""
        tokens, numbers = self.encode(table)
        for k, t in enumerate(tokens):
            getattr(self, f"tokens_{k}").copy_(_pad(t, self.categorical[k]["width"]))
        self.numbers.copy_(numbers)

    def forward(self, tokens: list[Tensor], numbers: Tensor) -> Tensor:
        """(B, dim): embeddings of categorical values (mean over a row's values) + numbers @ weights."""
        out = numbers @ self.weights  # (B, dim)
        for table, t in zip(self.tables, tokens):
            mask = (t >= 0).unsqueeze(-1)  # (B, w, 1)
            rows = table(t.clamp(min=0)) * mask  # (B, w, dim)
            out = out + rows.sum(1) / mask.sum(1).clamp(min=1)
        return out

    def rows(self, idx: Tensor) -> Tensor:
        """(B,) known row indices -> (B, dim) from the stored metadata, ROWS_AT_ONCE rows at a time
        (a whole catalogue's (B, values, dim) gather at once cost ~350 MB on Epinions)."""
        parts = [
            self([getattr(self, f"tokens_{k}")[c] for k in range(len(self.tables))], self.numbers[c])
            for c in idx.split(ROWS_AT_ONCE)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class Hybrid(DotProductBias):
    """DotProductBias whose user and item representations add embedded metadata (module docstring)."""

    kind = "hybrid"
    Config = HybridConfig
    # The trainer's gathered-rows fast path hands forward() batch-local indices, but forward also
    # reads the metadata buffers by user/item index. So no table is declared: training takes the
    # plain path, and sparse gradients keep the id tables' updates row-wise (the same lazy AdamW).
    user_item_tables: ClassVar[dict[str, str]] = {}

    def __init__(self, config: HybridConfig, users: Vocab, items: Vocab) -> None:
        super().__init__(config, users, items)
        for table in (self.user_factors, self.item_factors, self.user_bias, self.item_bias):
            table.sparse = True
        dim = config.n_factors + 1
        self.user_meta = FeatureEncoder(tuple(config.user_features), len(users), dim)
        self.item_meta = FeatureEncoder(tuple(config.item_features), len(items), dim)

    @classmethod
    def cost(cls, config: dict[str, Any], sizes: Sizes) -> tuple[float, float]:
        """Autograd through the id and metadata encoders: ~12 units per rating an epoch (measured
        on ML-100k and Epinions); the tables with their sparse Adam state and encoded metadata."""
        f, epochs = cls.option(config, "n_factors"), cls.option(config, "epochs")
        cells = (sizes.users + sizes.items) * (f + 1)
        return epochs * (12.0 * sizes.n + 0.12 * cells), cells * 16 + sizes.n * 150

    @classmethod
    def from_data(
        cls,
        ratings: Ratings,
        user_features: list[str] | tuple[str, ...] | None = None,
        item_features: list[str] | tuple[str, ...] | None = None,
        **config: Any,
    ) -> Hybrid:
        """Build from ``ratings`` and its ``users``/``items`` tables.

        ``user_features``/``item_features`` name columns of those tables; kinds are inferred:
        numeric dtype -> numeric, text with a "|" -> multi-valued, other text -> categorical.
        ``None`` picks automatically: every numeric column and every text column with at most
        MAX_LEVELS distinct values and at most one per two rows, which leaves out id-like columns
        such as titles and zip codes (ML-100k: age, gender, occupation; year, genres). Pass ``()``
        for none. The chosen features are recorded in ``model.config``.
        """
        specs = {
            "user_features": _specs(ratings.users, user_features, "users"),
            "item_features": _specs(ratings.items, item_features, "items"),
        }
        model = super().from_data(ratings, **specs, **config)
        for side, table, vocab, enc in (
            ("users", ratings.users, model.users, model.user_meta),
            ("items", ratings.items, model.items, model.item_meta),
        ):
            if enc.specs:
                aligned = _align(table, vocab)
                model.meta[f"{side}_without_metadata"] = int(aligned.isna().all(axis=1).sum())
                enc.fill(aligned)
        return model

    def user_repr(self, u: Tensor) -> Tensor:
        return self._hide_ids(super().user_repr(u)) + self.user_meta.rows(u)

    def item_repr(self, i: Tensor) -> Tensor:
        return self._hide_ids(super().item_repr(i)) + self.item_meta.rows(i)

    def forward(self, u: Tensor, i: Tensor) -> Tensor:
        return self.head(self.user_repr(u), self.item_repr(i))

    @torch.no_grad()
    def set_reprs(self, side: str, index: Tensor, reprs: Tensor) -> None:
        """The id part is written as the representation minus the row's metadata part."""
        meta = self.user_meta if side == "user" else self.item_meta
        super().set_reprs(side, index, reprs - meta.rows(index))

    def _hide_ids(self, ids: Tensor) -> Tensor:
        """Training only: zero the id part of a random ``id_dropout`` share of the rows."""
        p = self.config.id_dropout
        if not (self.training and torch.is_grad_enabled() and p > 0):
            return ids
        return ids * (torch.rand(len(ids), 1) >= p)

    @torch.no_grad()
    def new_user_repr(self, table: pd.DataFrame) -> Tensor:
        """(len(table), F+1) representations of users known only by metadata (id part zero)."""
        return self.user_meta(*_warn_unknown(self.user_meta, table))

    @torch.no_grad()
    def new_item_repr(self, table: pd.DataFrame) -> Tensor:
        """(len(table), F+1) representations of items known only by metadata (id part zero)."""
        return self.item_meta(*_warn_unknown(self.item_meta, table))


@torch.no_grad()
def score_new_items(model: Hybrid, item_features: pd.DataFrame, users: Any = None) -> pd.DataFrame:
    """Predicted ratings of items with no ratings, from metadata: (users x new items) DataFrame.

    ``item_features`` is indexed by the new items' ids with the model's item feature columns;
    ``users`` are raw ids the model knows (default: all).
    """
    _check_hybrid(model)
    model.eval()
    u = model.users.lookup(model.users.ids if users is None else users)
    scores = model.cross(
        model.user_repr(torch.from_numpy(u)), model.new_item_repr(item_features)
    )
    return pd.DataFrame(
        scores.numpy(),
        index=pd.Index(model.users.decode(u), name="user"),
        columns=item_features.index,
    )


@torch.no_grad()
def score_new_users(model: Hybrid, user_features: pd.DataFrame, items: Any = None) -> pd.DataFrame:
    """Predicted ratings by users with no ratings, from metadata: (new users x items) DataFrame."""
    _check_hybrid(model)
    model.eval()
    i = model.items.lookup(model.items.ids if items is None else items)
    scores = model.cross(
        model.new_user_repr(user_features), model.item_repr(torch.from_numpy(i))
    )
    return pd.DataFrame(
        scores.numpy(),
        index=user_features.index,
        columns=pd.Index(model.items.decode(i), name="item"),
    )


# --- feature specs ------------------------------------------------------------------------------
def _specs(table: pd.DataFrame | None, columns: Any, side: str) -> tuple[dict, ...]:
    """Feature specs for ``columns`` of a metadata table (None = automatic choice)."""
    if columns is not None and len(columns) and table is None:
        raise ValueError(
            f"features {list(columns)} asked for, but the ratings have no {side} table"
        )
    if table is None:
        return ()
    if isinstance(columns, str):
        columns = [columns]
    auto = columns is None
    unknown = [c for c in (columns or []) if c not in table.columns]
    if unknown:
        raise ValueError(f"{side} table has no column(s) {unknown}; it has {list(table.columns)}")
    specs = []
    for col in table.columns if auto else columns:
        spec = _spec(table[col], str(col))
        many = spec["kind"] != "numeric" and len(spec["values"]) > min(MAX_LEVELS, len(table) // 2)
        if auto and many:
            continue  # an id-like column (title, zip): a value per row teaches nothing shared
        specs.append(spec)
    return tuple(specs)


def _spec(s: pd.Series, column: str) -> dict:
    """Infer a column's kind and record its vocabulary (sorted) or its mean and std."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        x = pd.to_numeric(s, errors="coerce").astype(float)
        std = float(x.std(ddof=0)) if x.notna().sum() > 1 else 0.0
        return {
            "column": column,
            "kind": "numeric",
            "mean": float(x.mean()) if x.notna().any() else 0.0,
            "std": std or 1.0,
        }
    text = s.dropna().astype(str)
    multi = bool(text.str.contains("|", regex=False).any())
    values = text.str.split("|").explode() if multi else text
    values = sorted(v for v in values.unique() if v != "")
    width = int(text.str.count(r"\|").max() + 1) if multi and len(text) else 1
    return {
        "column": column,
        "kind": "multi" if multi else "categorical",
        "values": values,
        "width": width,
    }


def _tokens(s: pd.Series, spec: dict) -> Tensor:
    """A column -> (B, w) value indices, -1 for padding, missing and unknown values."""
    s = s.reset_index(drop=True)
    text = s[s.notna()].astype(str)
    long = text.str.split("|").explode() if spec["kind"] == "multi" else text
    rows = long.index.to_numpy(dtype=np.int64)  # explode keeps each value's row position
    vocab = pd.Index(spec["values"])
    codes = vocab.get_indexer(long.to_numpy(dtype=object)).astype(np.int64)  # -1: unknown value
    counts = np.bincount(rows, minlength=len(s))
    pos = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]  # rows come in order
    out = torch.full((len(s), max(int(counts.max()) if len(rows) else 1, 1)), -1, dtype=torch.int64)
    out[torch.tensor(rows), torch.tensor(pos)] = torch.tensor(codes)
    return out


def _pad(t: Tensor, width: int) -> Tensor:
    if t.shape[1] >= width:
        return t[:, :width]
    return torch.cat([t, torch.full((len(t), width - t.shape[1]), -1, dtype=t.dtype)], 1)


def _align(table: pd.DataFrame, vocab: Vocab) -> pd.DataFrame:
    """Metadata rows in vocabulary order (missing rows all-NaN); fails if no id matches at all."""
    aligned = table.reindex(vocab.ids)
    if len(vocab) and aligned.isna().all(axis=1).all():
        raise ValueError(
            f"no {vocab.name} id of the ratings has a row in the {vocab.name}s table "
            f"(index dtype {table.index.dtype} vs ids like {vocab.ids[:3].tolist()})"
        )
    return aligned


def _warn_unknown(enc: FeatureEncoder, table: pd.DataFrame) -> tuple[list[Tensor], Tensor]:
    """Encode new rows, warning about values the model never saw (they contribute nothing)."""
    tokens, numbers = enc.encode(table)
    for s in enc.categorical:
        col = table[s["column"]].dropna().astype(str)
        vals = col.str.split("|").explode() if s["kind"] == "multi" else col
        unseen = sorted(set(vals.unique()) - set(s["values"]) - {""})
        if unseen:
            warnings.warn(
                f"{s['column']}: values unknown to the model are ignored: {unseen[:5]}",
                stacklevel=3,
            )
    return tokens, numbers


def _check_hybrid(model: Any) -> None:
    if not isinstance(model, Hybrid):
        raise TypeError(
            f"scoring from metadata needs a hybrid model, not {getattr(model, 'kind', model)!r}"
        )
