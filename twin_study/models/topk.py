"""Scoring L behaviours per request cheaply, and CP-GSU's merged multi-head top-k.

``score_by_table`` is the GSU's hot loop: per-item keys come from a table (TWIN's K_h W^h cache,
ETA's signatures), are gathered for the request's L behaviours in chunks, and dotted with every
candidate target of that request. A request's history is gathered once however many candidates
it has, and peak memory is bounded by the chunk size, not by L.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


def request_slots(req: torch.Tensor, n_req: int) -> tuple[torch.Tensor, int]:
    """Position of each sample among the samples of its request: (B,) -> (B,), max count."""
    counts = torch.bincount(req, minlength=n_req)
    order = torch.argsort(req, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(req)
    slot[order] = torch.arange(len(req), device=req.device) - starts[req[order]]
    return slot, int(counts.max()) if len(req) else 0


def score_chunks(
    keys_fn: Callable[[int, int], torch.Tensor],
    n_req: int,
    length: int,
    query: torch.Tensor,
    req: torch.Tensor,
    chunk: int = 2048,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dot products of behaviour keys with the queries of every sample of their request.

    keys_fn(lo, hi) -> (R, hi - lo, heads, d) keys of slots lo..hi; query (B, heads, d);
    req (B,); bias (R, L, heads) or None, added per behaviour -> scores (B, heads, length).
    Keys exist for one chunk at a time.
    """
    B, heads, d = query.shape
    slot, cmax = request_slots(req, n_req)
    # Queries laid out per request: (R, heads, cmax, d), zero where a request has fewer samples.
    q = query.new_zeros(n_req, cmax, heads, d)
    q[req, slot] = query
    q = q.transpose(1, 2)
    out = query.new_empty(B, heads, length)
    for lo in range(0, length, chunk):
        hi = min(lo + chunk, length)
        keys = keys_fn(lo, hi)  # (R, c, heads, d)
        s = torch.matmul(q, keys.permute(0, 2, 3, 1))  # (R, heads, cmax, c): rows per sample
        if bias is not None:
            s += bias[:, lo:hi].transpose(1, 2)[:, :, None, :]  # same bias for every candidate
        out[:, :, lo:hi] = s[req, :, slot]  # (B, heads, c): whole rows, no strided gather
    return out


def gather_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """table[ids] for a (n, *shape) table via F.embedding (several times faster on CPU)."""
    flat = F.embedding(ids, table.reshape(table.shape[0], -1))
    return flat.view(*ids.shape, *table.shape[1:])


def score_by_table(
    table: torch.Tensor,
    hist_item: torch.Tensor,
    query: torch.Tensor,
    req: torch.Tensor,
    chunk: int = 2048,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-item keys read from a table (a gather, no projection).

    table (n_items + 1, heads, d); hist_item (R, L); query (B, heads, d) -> (B, heads, L).
    """
    R, L = hist_item.shape
    return score_chunks(
        lambda lo, hi: gather_rows(table, hist_item[:, lo:hi]), R, L, query, req, chunk, bias
    )


def merged_topk(
    scores: torch.Tensor, valid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One merged set of k unique behaviours from per-head rankings (paper §4.3).

    Walk the heads' ranked lists in turn — rank 0 of head 0, 1, ..., rank 1 of head 0, ... —
    keeping each behaviour the first time it appears, until k are kept. Each head's list has
    distinct entries, so k ranks per head always yield at least k unique behaviours.
    Padding scores -inf, so it is only kept when a row has fewer than k valid behaviours; the
    returned ``valid`` marks those slots.

    scores (B, heads, L); valid (B, L) bool -> indices (B, k'), valid (B, k'), k' = min(k, L).
    """
    B, heads, L = scores.shape
    k = min(k, L)
    scores = scores.masked_fill(~valid[:, None, :], NEG_INF)
    top = scores.topk(k, dim=-1).indices  # (B, heads, k), best first
    cand = top.transpose(1, 2).reshape(B, k * heads)  # rank-major walk over the heads
    if heads == 1:
        idx = cand
    else:
        sorted_vals, sort_idx = cand.sort(dim=1, stable=True)  # stable: earliest walk first
        dup_sorted = torch.zeros_like(cand, dtype=torch.bool)
        dup_sorted[:, 1:] = sorted_vals[:, 1:] == sorted_vals[:, :-1]
        dup = torch.empty_like(dup_sorted).scatter_(1, sort_idx, dup_sorted)
        keep = ~dup
        keep &= torch.cumsum(keep, dim=1) <= k
        idx = cand[keep].view(B, k)
    return idx, valid.gather(1, idx)


def topk_single(
    scores: torch.Tensor, valid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of one score per behaviour: scores (B, L) -> indices (B, k'), valid (B, k')."""
    return merged_topk(scores[:, None, :], valid, k)
