"""Feature embeddings shared by every branch (paper §3.2.1: 64-d for large-vocabulary ids,
8-d for the rest).

A behaviour's features split into K_h (item-inherent: item id and the item table's features,
the same for every user) and K_c (user-item cross features, one 8-d embedding per feature).
The item table lives in buffers, so an item id is all a batch needs to carry.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import runtime
from ..data.schema import ItemTable
from . import native
from .config import ITEM_VECTOR_SOURCES
from .unique import unique_ids

# Largest (requests x items) count matrix ``inherent_mean`` builds densely (64 MiB of float32).
DENSE_COUNTS_MAX = 1 << 24
# ... and only while its matrix product costs at most this many multiply-adds per behaviour it
# replaces: a dense MAC is roughly this much cheaper than gathering and adding one table row.
# Beyond it (a catalogue much larger than the histories, issue 27) the count matrix is mostly
# zeros and ``embedding_bag`` reads only the behaviours.
DENSE_COUNTS_PER_BEHAVIOUR = 20


class FeatureEmbedder(nn.Module):
    def __init__(
        self,
        items: ItemTable,
        cross_vocab: list[int],
        user_features: dict[str, np.ndarray],
        user_vocab: dict[str, int],
        id_dim: int = 64,
        small_dim: int = 8,
        large_vocab: int = 1000,
        init_std: float = 1.0,
    ):
        super().__init__()
        self.item_feature_names = list(items.features)
        for name in self.item_feature_names:
            self.register_buffer(f"code_{name}", torch.as_tensor(items.features[name]).long())

        def dim(vocab: int) -> int:
            return id_dim if vocab > large_vocab else small_dim

        self.item_emb = nn.ModuleDict({"item": nn.Embedding(items.n_items + 1, id_dim)})
        for name in self.item_feature_names:
            v = items.vocab[name]
            self.item_emb[name] = nn.Embedding(v, dim(v))
        self.cross_emb = nn.ModuleList([nn.Embedding(v, small_dim) for v in cross_vocab])
        self.user_names = list(user_features)
        for name in self.user_names:
            self.register_buffer(f"ucode_{name}", torch.as_tensor(user_features[name]).long())
        self.user_emb = nn.ModuleDict(
            {n: nn.Embedding(user_vocab[n], dim(user_vocab[n])) for n in self.user_names}
        )
        for e in self.modules():
            if isinstance(e, nn.Embedding):
                nn.init.normal_(e.weight, std=init_std)
        with torch.no_grad():  # the padding item (id 0) embeds to zero in every table
            self.item_emb["item"].weight[0].zero_()
        for e in self.item_emb.values():  # catalogue-sized tables, read at random: huge pages
            e.weight.data = runtime.on_huge_pages(e.weight.data)
        self.n_items = items.n_items
        self.H = sum(e.embedding_dim for e in self.item_emb.values())  # inherent width
        self.J = len(cross_vocab)
        self.cross_dim = small_dim
        self.C = small_dim * self.J  # cross width
        self.U = sum(e.embedding_dim for e in self.user_emb.values())
        # Row-sparse gradients for the tables (issue 27): a lookup's backward returns only the
        # rows it read (a sparse COO tensor) whenever they are fewer than the table's rows, so
        # a step's gradient and AdaGrad update cost follow the batch, not the catalogue. Off
        # by default (dense, as ``nn.Embedding``); ``training.train.make_optimizers`` turns it
        # on when every table is under AdaGrad, which accepts either kind of gradient.
        self.sparse_grads = False

    def item_codes(self, name: str, item: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"code_{name}")[item]

    def _inherent_parts(self, item: torch.Tensor) -> list[torch.Tensor]:
        sp = self.sparse_grads
        parts = [lookup(self.item_emb["item"], item, sp)]
        parts += [
            lookup(self.item_emb[n], self.item_codes(n, item), sp) for n in self.item_feature_names
        ]
        return parts

    def inherent(self, item: torch.Tensor) -> torch.Tensor:
        """K_h of items: (...,) ids -> (..., H)."""
        return torch.cat(self._inherent_parts(item), dim=-1)

    @torch.no_grad()
    def inherent_rows(self, item: torch.Tensor) -> torch.Tensor:
        """K_h of items without a gradient, as one concatenated gather: (n,) ids -> (n, H).
        What the query-side CP-GSU scores against (``gsu.CpGSU``)."""
        return concat_lookup(*self._inherent_lookups(item))

    def _inherent_lookups(
        self, item: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The K_h tables and the rows each is read at, for (N,) item ids: the id table, then
        every item-table feature's table at the items' codes (``concat_lookup``'s input)."""
        tables = [self.item_emb["item"].weight]
        indices = [item]
        for name in self.item_feature_names:
            tables.append(self.item_emb[name].weight)
            indices.append(self.item_codes(name, item))
        return tables, indices

    def item_vectors(self, source: str = "inherent") -> torch.Tensor:
        """One vector per item (padding row 0 included), from the live parameters, no gradient:
        the table SIM Soft / Cluster pre-train and ETA / SDIM hash (``ITEM_VECTOR_SOURCES``).
        "inherent": K_h of every item, (n_items + 1, H), what TWIN's keys see; "item_id": the
        item-id embedding alone, (n_items + 1, id_dim). Costs one (n_items + 1) x H gather,
        as TWIN's cache rebuild does."""
        if source not in ITEM_VECTOR_SOURCES:
            raise ValueError(
                f"unknown item-vector source {source!r}; choose one of {list(ITEM_VECTOR_SOURCES)}"
            )
        with torch.no_grad():
            if source == "item_id":
                return self.item_emb["item"].weight.detach()
            ids = torch.arange(self.n_items + 1, device=self.item_emb["item"].weight.device)
            return self.inherent(ids)

    @torch.no_grad()
    def project_vectors(
        self, source: str, proj: torch.Tensor, items: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``item_vectors(source) @ proj`` without a gradient: proj (dim, d) -> (n_items + 1,
        d), or (len(items), d) for the given item ids only. For K_h ("inherent") the product
        is taken one feature table at a time (``project_items``), so the (n_items + 1, H)
        matrix is never built."""
        if source == "inherent":
            return self.project_items(proj.t(), items=items)
        if items is None:
            return self.item_vectors(source) @ proj
        return self.item_emb["item"].weight.index_select(0, items) @ proj

    @torch.no_grad()
    def project_items(
        self,
        weight: torch.Tensor,
        out: torch.Tensor | None = None,
        items: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """K_h W^T for every item (padding row 0 included): weight (d, H) -> (n_items + 1, d);
        or for ``items`` (U,) only -> (U, d).

        Computed per feature table, by the linearity of the map: the item-id table times its
        columns of W, plus each small table's projection (vocab_f x d, a few thousand rows at
        most) gathered by the items' codes. Half the multiply-adds of projecting the gathered
        (n_items + 1, H) K_h, and that matrix is never built. Equal to ``inherent(all) @ W^T``
        up to float rounding. For a subset, a table with more rows than the subset has items
        is gathered first and projected after, so the cost follows min(rows, U) per table,
        never the catalogue (issue 27)."""
        ids_emb = self.item_emb["item"]
        widths = [ids_emb.embedding_dim] + [
            self.item_emb[n].embedding_dim for n in self.item_feature_names
        ]
        blocks = torch.split(weight, widths, dim=1)
        if items is None:
            out = torch.matmul(ids_emb.weight, blocks[0].t(), out=out)  # (n_items + 1, d)
        else:
            out = torch.matmul(ids_emb.weight.index_select(0, items), blocks[0].t(), out=out)
        for name, w in zip(self.item_feature_names, blocks[1:], strict=True):
            table = self.item_emb[name].weight  # (vocab_f, w_f)
            codes = getattr(self, f"code_{name}")
            codes = codes if items is None else codes.index_select(0, items)
            if items is not None and len(items) < table.shape[0]:
                out += table.index_select(0, codes) @ w.t()
            else:
                out += (table @ w.t()).index_select(0, codes)  # (vocab_f, d) gathered
        return out

    def behaviours(self, item: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """K = [K_h, K_c] of behaviours in one tensor: (...,) ids, (..., J) codes ->
        (..., H + C), the columns of ``inherent(item)`` then ``cross(codes).flatten(-2)``.

        All P = 1 + (item features) + J lookups in one pass (``concat_lookup``): at B x 100
        finalists, index_selects + a concatenation, and backward a copy of every column slice
        before its index_add, were a tenth of a training step."""
        flat = item.reshape(-1)
        tables, indices = self._inherent_lookups(flat)
        codes = codes.reshape(len(flat), self.J)  # (N, J); J may be 0 (no cross features)
        tables += [e.weight for e in self.cross_emb]
        indices += [codes[:, j] for j in range(self.J)]
        K = concat_lookup(tables, indices, self.sparse_grads)  # (N, H + C)
        return K.view(*item.shape, K.shape[-1])

    def inherent_mean(self, items: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
        """Mean K_h of each row's valid prefix: items (R, L), n_valid (R,) -> (R, H).

        No (R, L, H) tensor is built, forward or backward. With a catalogue small enough for a
        dense (R, n_items) count matrix, the mean is counts @ table per feature: a row's L
        behaviours become one histogram (a bincount) and the lookups one matrix product, whose
        backward is another. That pays while the catalogue is not much larger than the
        histories (``DENSE_COUNTS_PER_BEHAVIOUR``). A larger catalogue (issue 27) takes the same
        product over the batch's own items, renumbered: (R, U) counts times the K_h of the U
        distinct items, gathered once each (row-sparse gradients when ``sparse_grads``).
        Where that matrix would exceed the memory cap or cost more than a pass over the
        behaviours, one ``embedding_bag`` over the same U rows. An empty row gives zeros."""
        R, L = items.shape
        keep = torch.arange(L, device=items.device) < n_valid[:, None]
        flat = items[keep]  # row-major: each row's valid prefix, one after another
        denom = n_valid.clamp(min=1)[:, None].float()
        V = self.n_items + 1

        def row_of() -> torch.Tensor:  # (N,) the row of each valid behaviour
            return torch.repeat_interleave(torch.arange(R, device=items.device), n_valid)

        budget = min(DENSE_COUNTS_MAX, DENSE_COUNTS_PER_BEHAVIOUR * len(flat))  # count cells
        cells = R * V  # of the dense (R, V) count matrix
        if cells > budget:
            # A large catalogue: the same product over the items the rows hold, renumbered
            # (the histogram of the batch's items times their K_h, gathered once each).
            uniq, inv = unique_ids(flat, V)
            U = len(uniq)
            # The product costs R * U (fill, multiply), a bag one gather per behaviour: rows
            # that share few items (U near the behaviour count) take the bag, over the same U
            # rows of K_h (one gather per table row, never one per behaviour).
            K = self.inherent(uniq)  # (U, H), gathered once each
            cells = R * U  # of the compact (R, U) one
            if cells <= budget:
                counts = torch.bincount(row_of() * U + inv, minlength=R * U).view(R, U).float()
                return counts @ K / denom  # (R, U) @ (U, H)
            offsets = torch.cumsum(n_valid, 0) - n_valid
            return F.embedding_bag(inv, K, offsets, mode="mean")  # (R, H); empty rows 0
        counts = torch.bincount(row_of() * V + flat, minlength=R * V).view(R, V).float()  # (R, V)
        parts = [counts @ self.item_emb["item"].weight]
        for n in self.item_feature_names:
            codes = getattr(self, f"code_{n}")  # (V,) the feature's code of every item
            per_code = counts.new_zeros(R, self.item_emb[n].num_embeddings)
            per_code.index_add_(1, codes, counts)  # (R, V_f): histogram of the feature
            parts.append(per_code @ self.item_emb[n].weight)
        return torch.cat(parts, dim=-1) / denom

    def cross(self, codes: torch.Tensor) -> torch.Tensor:
        """K_c of behaviours: (..., J) codes -> (..., J, cross_dim)."""
        if self.J == 0:
            return codes.new_zeros((*codes.shape[:-1], 0, self.cross_dim), dtype=torch.float32)
        sp = self.sparse_grads
        return torch.stack(
            [lookup(e, codes[..., j], sp) for j, e in enumerate(self.cross_emb)], dim=-2
        )

    def user(self, user: torch.Tensor) -> torch.Tensor:
        """User features (user id and profile codes): (B,) ids -> (B, U)."""
        if not self.user_names:
            return user.new_zeros((user.shape[0], 0), dtype=torch.float32)
        parts = [
            lookup(self.user_emb[n], getattr(self, f"ucode_{n}")[user], self.sparse_grads)
            for n in self.user_names
        ]
        return torch.cat(parts, dim=-1)


class _RowLookup(torch.autograd.Function):
    """``weight.index_select(0, idx)`` whose backward makes the incoming gradient contiguous
    before its ``index_add``. The gradient of one feature's rows is usually a column slice of
    a wider tensor (K = [K_h, K_c] is one concatenation), and on the CPU ``index_add_`` with a
    strided source falls back to an expanded-index ``scatter_add`` at about twice the cost of
    the copy plus the contiguous ``index_add_``. With ``sparse`` the gradient is row-sparse
    (``row_gradient``)."""

    @staticmethod
    def forward(ctx, weight, idx, sparse):  # noqa: ANN001 -- autograd's signature
        ctx.save_for_backward(idx)
        ctx.n_rows, ctx.sparse = weight.shape[0], sparse
        return weight.index_select(0, idx)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        (idx,) = ctx.saved_tensors
        return row_gradient(idx, grad.contiguous(), ctx.n_rows, ctx.sparse), None, None


def row_gradient(idx: torch.Tensor, rows: torch.Tensor, n_rows: int, sparse: bool) -> torch.Tensor:
    """The gradient of a (n_rows, w) table whose rows ``idx`` (N,) received ``rows`` (N, w).

    Row-sparse (an uncoalesced COO tensor: no zero-filled (n_rows, w) matrix, and AdaGrad
    updates only those rows) when ``sparse`` and N < n_rows; dense otherwise. The two are the
    same gradient; the sparse one costs O(N w), the dense one O(n_rows w) to fill and update."""
    if sparse and len(idx) < n_rows:
        return torch.sparse_coo_tensor(idx[None], rows, (n_rows, rows.shape[-1]),
                                       check_invariants=False, is_coalesced=False)  # fmt: skip
    return rows.new_zeros(n_rows, rows.shape[-1]).index_add_(0, idx, rows)


class _ConcatLookup(torch.autograd.Function):
    """``torch.cat([lookup(t, i) for t, i in zip(tables, indices)], dim=-1)`` for 1-D indices,
    as one gather forward and one scatter-add backward (``embed_rows.cpp`` on the CPU, torch
    otherwise). apply(P, *tables, *indices)."""

    @staticmethod
    def forward(ctx, P, sparse, *args):  # noqa: ANN001 -- autograd's signature
        tables, indices = list(args[:P]), list(args[P:])
        out, ctx.native = _gather(tables, indices)
        ctx.sparse = sparse
        ctx.save_for_backward(*indices)
        ctx.shapes = [t.shape for t in tables]
        return out

    @staticmethod
    def backward(ctx, d_out):  # noqa: ANN001
        indices = list(ctx.saved_tensors)
        need = ctx.needs_input_grad[2 : 2 + len(indices)]
        if ctx.sparse and any(len(i) < s[0] for i, s in zip(indices, ctx.shapes, strict=True)):
            grads, off = [], 0  # each table's columns of d_out, row-sparse where that pays
            for i, s, n in zip(indices, ctx.shapes, need, strict=True):
                cols = d_out[:, off : off + s[1]]
                off += s[1]
                grads.append(row_gradient(i, cols.contiguous(), s[0], True) if n else None)
            return (None, None, *grads, *[None] * len(indices))
        grads = [d_out.new_zeros(s) for s in ctx.shapes]
        if ctx.native:
            native.rows_scatter_add(grads, indices, d_out)
        else:
            off = 0
            for g, i in zip(grads, indices, strict=True):
                g.index_add_(0, i, d_out[:, off : off + g.shape[1]].contiguous())
                off += g.shape[1]
        return (None, None, *(g if n else None for g, n in zip(grads, need, strict=True)),
                *[None] * len(indices))  # fmt: skip


def concat_lookup(
    tables: list[torch.Tensor], indices: list[torch.Tensor], sparse: bool = False
) -> torch.Tensor:
    """Rows ``indices[p]`` (N,) of every table (V_p, w_p) side by side: (N, sum w_p). The
    same values and gradients as concatenating ``lookup``s, in one pass each way; ``sparse``:
    row-sparse table gradients where a table has more rows than N (``row_gradient``)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tables):
        return _ConcatLookup.apply(len(tables), sparse, *tables, *indices)
    return _gather(tables, indices)[0]


def _gather(tables: list[torch.Tensor], indices: list[torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """``concat_lookup``'s forward without autograd, and whether the native kernel ran (else
    index_selects side by side)."""
    out = native.rows_gather(tables, indices)
    if out is not None:
        return out, True
    parts = [t.index_select(0, i) for t, i in zip(tables, indices, strict=True)]
    return torch.cat(parts, dim=-1), False


def lookup(
    table: nn.Embedding | torch.Tensor, idx: torch.Tensor, sparse: bool = False
) -> torch.Tensor:
    """``table(idx)`` (an embedding, or any (rows, dim) tensor) as an ``index_select``: the
    same rows, but its backward is a plain ``index_add`` (2-3x faster on the CPU than
    ``nn.Embedding``'s sorting backward), or with ``sparse`` a row-sparse gradient."""
    weight = table.weight if isinstance(table, nn.Embedding) else table
    flat = idx.reshape(-1)
    if weight.requires_grad and torch.is_grad_enabled():
        rows = _RowLookup.apply(weight, flat, sparse)
    else:
        rows = weight.index_select(0, flat)
    return rows.view(*idx.shape, weight.shape[-1])
