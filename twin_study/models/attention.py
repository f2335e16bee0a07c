r"""TWIN's multi-head target attention with split behaviour features (paper Eq. 4-8).

For head a, behaviour i and target q (the target's inherent features):

    alpha_a[i] = (K_h[i] W_a^h) . (q W_a^q) / sqrt(d_k)  +  sum_j beta_a[j] * (K_c[i, j] . w_a[j])
                 \___ item-inherent: cacheable ___/       \____ cross features: one scalar each ___/

The second term is Eq. 5's block-diagonal W^c: each of the J cross features (8-d embedding)
collapses to ONE scalar per head, weighted by beta. Because a cross feature is a categorical
code, ``beta_a[j] * (E_j[code] . w_a[j])`` is a function of the code alone, so the GSU scores
the cross term with a (vocab_j, heads) lookup table: O(L J) gathers, no projection at all.

The ESU (Eq. 7) softmaxes alpha over the k finalists and takes values from the UNSPLIT
behaviour features K = [K_h, K_c] (affordable on k rows, never on L); heads are concatenated
through W^o (Eq. 8).

Modes: ``split`` (TWIN), ``raw`` (ablation "w/ Raw MHTA": keys = [K_h, K_c] W^k, one full
projection, nothing cacheable), ``nobias`` (ablation "w/o Bias": the cross-feature bias is
removed from alpha; the values still read the unsplit K, so the ablation changes one thing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import native
from .embedding import FeatureEmbedder, lookup
from .topk import request_slots

NEG_INF = float("-inf")


class TwinAttention(nn.Module):
    def __init__(
        self,
        H: int,
        J: int,
        cross_dim: int,
        heads: int = 4,
        d_k: int = 16,
        d_v: int = 16,
        d_out: int = 64,
        mode: str = "split",
        shared_qk_init: bool = True,
        qk_init_scale: float = 3.0,
        beta_init: float = 1.0,
    ):
        super().__init__()
        if mode not in ("split", "raw", "nobias"):
            raise ValueError(f"unknown attention mode {mode!r}")
        self.mode, self.heads, self.d_k, self.d_v = mode, heads, d_k, d_v
        self.J = J
        self.cross_dim = cross_dim
        C = self.J * cross_dim
        self.W_q = nn.Linear(H, heads * d_k, bias=False)
        if mode == "raw":
            self.W_k = nn.Linear(H + C, heads * d_k, bias=False)  # full projection of [K_h, K_c]
        else:
            self.W_h = nn.Linear(H, heads * d_k, bias=False)  # K_h W^h, cacheable per item
        with torch.no_grad():
            self.W_q.weight.mul_(qk_init_scale)
        if shared_qk_init:
            # Start with W^q = W^h, so the untrained alpha is an inner product of inherent
            # features (q W)(k W)^T -- a similarity, like SIM Soft's -- rather than noise. A
            # randomly initialised CP-GSU retrieves random behaviours, and the ESU can only
            # learn from what the GSU hands it: without this prior TWIN barely leaves chance on
            # data sets of our size. ``qk_init_scale`` sharpens that similarity (alpha scales
            # with its square). Raw MHTA gets the same treatment on the K_h columns of its
            # joint W^k, so the Fig. 6 ablation compares projections, not inits. Not stated in
            # the paper; parameters.
            with torch.no_grad():
                if mode == "raw":
                    self.W_k.weight[:, :H].copy_(self.W_q.weight)
                else:
                    self.W_h.weight.copy_(self.W_q.weight)
        if mode == "split" and self.J > 0:
            # Eq. 5: w_a[j] in R^cross_dim per head and cross feature, and beta_a in R^J.
            # beta starts at ``beta_init``: with beta = 1 and a random W^c the bias's spread
            # (std ~1.4) can drown the item signal before anything is learned.
            self.W_c = nn.Parameter(torch.randn(heads, self.J, cross_dim) / math.sqrt(cross_dim))
            self.beta = nn.Parameter(torch.full((heads, self.J), float(beta_init)))
        self.W_v = nn.Linear(H + C, heads * d_v, bias=False)  # values from the unsplit K
        self.W_o = nn.Linear(heads * d_v, d_out)
        self.d_out = d_out
        # TWIN-V2's cluster-aware attention: ln n of each behaviour's cluster is added to alpha
        # in every head (set by models/lifelong/twin_v2.py; the trunk adds it, ctr._attend).
        self.size_bias = False

    # ---------------------------------------------------------------- scoring pieces
    def query(self, q: torch.Tensor) -> torch.Tensor:
        """(B, H) target inherent features -> (B, heads, d_k), already divided by sqrt(d_k)."""
        return self.W_q(q).view(q.shape[0], self.heads, self.d_k) / math.sqrt(self.d_k)

    def inherent_keys(self, k_h: torch.Tensor) -> torch.Tensor:
        """K_h W^h: (..., H) -> (..., heads, d_k). In the GSU this comes from the item cache."""
        return self.W_h(k_h).view(*k_h.shape[:-1], self.heads, self.d_k)

    def raw_keys(self, k_h: torch.Tensor, k_c: torch.Tensor) -> torch.Tensor:
        """[K_h, K_c] W^k for the raw-MHTA ablation: (..., H), (..., J, cd) -> (..., heads, d_k)."""
        k = torch.cat([k_h, k_c.flatten(-2)], dim=-1)
        return self.W_k(k).view(*k_h.shape[:-1], self.heads, self.d_k)

    def cross_bias(self, k_c: torch.Tensor) -> torch.Tensor:
        """Eq. 5-6 cross term from embeddings: (..., J, cd) -> (..., heads)."""
        if self.mode != "split" or self.J == 0:
            return k_c.new_zeros((*k_c.shape[:-2], self.heads))
        per_feature = torch.einsum("...jd,ajd->...aj", k_c, self.W_c)  # (..., heads, J)
        return (per_feature * self.beta).sum(-1)

    def code_bias(self, emb: FeatureEmbedder, codes: torch.Tensor) -> torch.Tensor:
        """The cross term of behaviours given by their codes: (..., J) -> (..., heads).

        Equal to ``cross_bias(emb.cross(codes))``, read from the per-code tables
        (``cross_bias_tables``, a few hundred rows) instead of contracting every behaviour's
        J x cross_dim embeddings with W^c; gradients reach E_j, W^c and beta through the
        tables. The fast path's ESU uses it."""
        if self.mode != "split" or self.J == 0:
            return torch.zeros(*codes.shape[:-1], self.heads, device=codes.device)
        return self.lookup_bias(self.cross_bias_tables(emb), codes)

    def cross_bias_tables(self, emb: FeatureEmbedder) -> list[torch.Tensor]:
        """Per-code lookup tables of the cross term: J tensors of shape (vocab_j, heads)."""
        if self.mode != "split" or self.J == 0:
            return []
        return [
            (e.weight @ self.W_c[:, j, :].T) * self.beta[:, j]  # (vocab_j, heads)
            for j, e in enumerate(emb.cross_emb)
        ]

    def joint_bias_table(
        self, emb: FeatureEmbedder, max_codes: int = 1 << 16
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cross term as ONE table over joint codes, for the GSU's hot loop.

        The bias is a sum of J per-code terms, so over the joint code
        c = (((c_1) V_2 + c_2) V_3 + c_3) ... it is one (heads, prod V_j) table: a behaviour
        costs one lookup instead of J, and the lookup comes out (heads, n), ready to add.
        Returns (table (heads, prod V_j), strides (J,)) with c = codes @ strides, or None when
        there is no cross term or the joint vocabulary exceeds ``max_codes``."""
        tables = self.cross_bias_tables(emb)
        vocab = [t.shape[0] for t in tables]
        if not tables or math.prod(vocab) > max_codes:
            return None
        joint = tables[0].t()  # (heads, V_1)
        for t in tables[1:]:
            joint = (joint[:, :, None] + t.t()[:, None, :]).flatten(1)  # (heads, V_1 ... V_j)
        strides = [math.prod(vocab[j + 1 :]) for j in range(len(vocab))]
        return joint.contiguous(), torch.tensor(strides, device=joint.device)

    @staticmethod
    def lookup_bias(tables: list[torch.Tensor], codes: torch.Tensor) -> torch.Tensor | None:
        """Sum of table lookups: codes (..., J) -> (..., heads); None when there is no bias."""
        if not tables:
            return None
        out = lookup(tables[0], codes[..., 0])
        for j in range(1, len(tables)):
            out = out + lookup(tables[j], codes[..., j])
        return out

    def scoring_flops(self, L: int, B: int = 1, vocab: Sequence[int] = ()) -> dict[str, int]:
        """FLOPs of the GSU's alpha (Eq. 6) for ONE request: L behaviours against B candidates.

        Matmul terms (a multiply-add counts 2, as ``torch.utils.flop_counter`` counts them):
        ``query`` q W^q of the B candidates; ``keys`` the projection [K_h, K_c] W^k of the L
        behaviours (raw mode only: split and nobias read K_h W^h from the item cache, a gather);
        ``tables`` the per-code cross-bias tables (split; ``vocab`` = codes per cross feature);
        ``dot`` B x L x heads x d_k. Not a matmul: ``bias`` (split) = the beta scaling of the
        tables, J - 1 adds to sum a behaviour's J lookups, and one add per candidate score.
        Gathers move bytes and count no FLOPs.
        """
        hd = self.heads * self.d_k
        cross = self.mode == "split" and self.J > 0
        return {
            "query": 2 * B * self.W_q.in_features * hd,
            "keys": 2 * L * self.W_k.in_features * hd if self.mode == "raw" else 0,
            "tables": 2 * sum(vocab) * self.cross_dim * self.heads if cross else 0,
            "dot": 2 * B * L * hd,
            "bias": self.heads * (sum(vocab) + L * (self.J - 1 + B)) if cross else 0,
        }

    # ---------------------------------------------------------------- full attention
    def scores(self, qh: torch.Tensor, k_h: torch.Tensor, k_c: torch.Tensor) -> torch.Tensor:
        """alpha of Eq. 6 with live parameters: qh (B, heads, d_k), k_h (B, n, H),
        k_c (B, n, J, cd) -> (B, n, heads)."""
        raw = self.mode == "raw"
        keys = self.raw_keys(k_h, k_c) if raw else self.inherent_keys(k_h)  # (B, n, heads, d_k)
        alpha = torch.einsum("bnad,bad->bna", keys, qh)
        return alpha + self.cross_bias(k_c)

    def forward(
        self,
        qh: torch.Tensor,
        k_h: torch.Tensor,
        k_c: torch.Tensor,
        valid: torch.Tensor,
        fast: bool = True,
        extra: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ESU over n finalists (Eq. 6-8).

        qh (B, heads, d_k); k_h (B, n, H); k_c (B, n, J, cd); valid (B, n) bool; extra (B, n)
        an additive term of alpha in every head (TWIN-V2's ln n), or None.
        Returns the output (B, d_out) and the attention weights (B, n, heads).
        A row with no valid behaviour (empty history) attends to nothing and outputs W^o's bias.

        ``fast`` evaluates the same Eq. 6-7 in a cheaper order. The projections are linear, so
        (K_h W_a^h) . q_a = K_h . (W_a^h q_a) and softmax(alpha_a)^T (K W_a^v) =
        (softmax(alpha_a)^T K) W_a^v: the query is projected back to the input features once
        per sample and head, and the attention-pooled raw K is projected once per head --
        instead of projecting all B x n finalists twice (~20x fewer FLOPs at n = 100, forward
        and backward). Same values up to float rounding; ``fast=False`` is the literal order,
        the reference the tests compare against.
        """
        if fast:
            K = torch.cat([k_h, k_c.flatten(-2)], dim=-1)
            bias = self.cross_bias(k_c)
            return self.attend(qh, K, bias if extra is None else bias + extra[..., None], valid)
        alpha = self.scores(qh, k_h, k_c)
        if extra is not None:
            alpha = alpha + extra[..., None]
        alpha = alpha.masked_fill(~valid[..., None], NEG_INF)
        has_any = valid.any(dim=1)  # (B,)
        # Softmax over an all-masked row would be NaN; give such rows zero weights instead.
        alpha = torch.where(has_any[:, None, None], alpha, torch.zeros_like(alpha))
        w = torch.softmax(alpha, dim=1) * has_any[:, None, None]  # (B, n, heads)
        k_c = k_c[..., : self.J, :] if self.J else k_c[..., :0, :]
        k = torch.cat([k_h, k_c.flatten(-2)], dim=-1)  # (B, n, H + C): the unsplit K
        values = self.W_v(k).view(*k.shape[:-1], self.heads, self.d_v)  # (B, n, heads, d_v)
        out = torch.einsum("bna,bnad->bad", w, values).flatten(1)  # (B, heads * d_v)
        return self.W_o(out), w

    def attend(
        self, qh: torch.Tensor, K: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast ESU (``forward(..., fast=True)``) on features built in one piece.

        K (B, n, H + C) = [K_h, K_c] as ``FeatureEmbedder.behaviours`` returns it; bias
        (B, n, heads) the cross term (``code_bias`` or ``cross_bias``; zeros without cross
        features). Keys read K's first columns, values all the columns this mode uses; the
        backward is hand-written (``pooled_attention``)."""
        pooled, w = pooled_attention(
            K[..., : self.W_v.in_features], self._query_input(qh), bias, valid
        )
        return self._output(pooled), w

    def forward_grouped(
        self,
        qh: torch.Tensor,
        req: torch.Tensor,
        K: torch.Tensor,
        bias: torch.Tensor,
        member: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast ESU when the samples of a request attend over one shared set of behaviours.

        qh (B, heads, d_k); req (B,) request of each sample; K (R, S, H + C) and bias
        (R, S, heads) the S behaviours of each request (the union of its samples' finalists,
        or the short-term window) and their cross term; member (B, S) which of them each
        sample attends to. Each
        request's features are read once for all its candidates, in one matrix product per
        request, instead of once per sample. Equal to ``forward`` on each sample's own members.
        Returns the output (B, d_out) and weights (B, S, heads) over the request's behaviours.
        """
        R, S = K.shape[:2]
        slot, cmax = request_slots(req, R)
        width = self._key_width()
        q_in = torch.zeros(R, cmax, self.heads, width, device=qh.device)
        q_in[req, slot] = self._query_input(qh)  # (R, cmax, heads, width); unused rows 0
        q_in = q_in.flatten(1, 2).transpose(1, 2)  # (R, width, cmax * heads)
        alpha = torch.bmm(K[..., :width], q_in)  # (R, S, cmax * heads)
        alpha = alpha.view(R, S, cmax, self.heads) + bias[:, :, None, :]
        mask = torch.zeros(R, S, cmax, dtype=torch.bool, device=qh.device)
        mask[req, :, slot] = member
        w = self._softmax(alpha, mask[..., None], dim=1)  # (R, S, cmax, heads)
        v = K[..., : self.W_v.in_features]  # (R, S, H + C)
        pooled = torch.bmm(w.flatten(2).transpose(1, 2), v)  # (R, cmax * heads, H + C)
        pooled = pooled.view(R, cmax, self.heads, -1)[req, slot]  # (B, heads, H + C)
        return self._output(pooled), w[req, :, slot]

    # ---------------------------------------------------------------- fast-path pieces
    def _key_width(self) -> int:
        """Columns of K the key projection reads: K_h, or all of [K_h, K_c] for raw MHTA."""
        return (self.W_k if self.mode == "raw" else self.W_h).in_features

    def _query_input(self, qh: torch.Tensor) -> torch.Tensor:
        """W_a^h q_a: (B, heads, d_k) -> (B, heads, key width), so alpha = K_h . (W^h q)."""
        w_k = (self.W_k if self.mode == "raw" else self.W_h).weight
        return torch.einsum("bad,adh->bah", qh, w_k.view(self.heads, self.d_k, -1))

    def _output(self, pooled: torch.Tensor) -> torch.Tensor:
        """Attention-pooled K (B, heads, H + C) -> W_a^v per head, concatenated, W^o."""
        w_v = self.W_v.weight.view(self.heads, self.d_v, -1)  # (heads, d_v, H + C)
        return self.W_o(torch.einsum("bac,avc->bav", pooled, w_v).flatten(1))

    @staticmethod
    def _softmax(alpha: torch.Tensor, valid: torch.Tensor, dim: int) -> torch.Tensor:
        """Softmax over ``dim`` of the valid entries; a slice with none gets zero weights
        (a plain softmax over an all-masked slice would be NaN)."""
        alpha = alpha.masked_fill(~valid, NEG_INF)
        has_any = valid.any(dim=dim, keepdim=True)
        alpha = torch.where(has_any, alpha, torch.zeros_like(alpha))
        return torch.softmax(alpha, dim=dim) * has_any


def pooled_attention(
    K: torch.Tensor, q_in: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked softmax attention pooling: K (B, n, Hv) (keys: its first ``width`` columns),
    q_in (B, heads, width), bias (B, n, heads), valid (B, n) -> pooled (B, heads, Hv) and the
    weights (B, n, heads), which are not differentiable. On the CPU the native op
    ``twin_study::esu_attend`` (``esu_attend.cpp``, one pass per sample, its own backward op);
    otherwise ``_PooledAttention``, the definition."""
    got = native.esu_attend(K, q_in, bias, valid)
    return got if got is not None else _PooledAttention.apply(K, q_in, bias, valid)


class _PooledAttention(torch.autograd.Function):
    """Masked softmax attention pooling with a hand-written backward, in torch ops (the
    native op computes the same; ``pooled_attention`` picks).

    Forward: alpha = K[..., :Hk] q_in^T + bias (B, n, heads); w = softmax over the valid n;
    pooled = w^T K (B, heads, Hv). Autograd would write the gradient of K twice (through
    alpha and through pooled) and add them; here it is one product,
    dK = [w, dalpha] [dpooled; q_in], so the (B, n, Hv) gradient is written once.
    """

    @staticmethod
    def forward(ctx, K, q_in, bias, valid):  # noqa: ANN001 -- autograd's signature
        width = q_in.shape[-1]  # keys are K's first `width` columns
        alpha = torch.baddbmm(bias, K[..., :width], q_in.transpose(1, 2))  # (B, n, heads)
        w = TwinAttention._softmax(alpha, valid[..., None], dim=1)
        pooled = torch.bmm(w.transpose(1, 2), K)  # (B, heads, Hv)
        ctx.save_for_backward(K, q_in, w)
        ctx.mark_non_differentiable(w)
        return pooled, w

    @staticmethod
    def backward(ctx, d_pooled, _d_w):  # noqa: ANN001
        K, q_in, w = ctx.saved_tensors
        width = q_in.shape[-1]
        d_w = torch.bmm(K, d_pooled.transpose(1, 2))  # (B, n, heads)
        d_alpha = w * (d_w - (w * d_w).sum(dim=1, keepdim=True))  # softmax backward
        d_q = torch.bmm(d_alpha.transpose(1, 2), K[..., :width])  # (B, heads, width)
        right = torch.cat([d_pooled, F.pad(q_in, (0, K.shape[-1] - width))], dim=1)
        d_K = torch.bmm(torch.cat([w, d_alpha], dim=2), right)  # (B, n, Hv), written once
        return d_K, d_q, d_alpha, None
