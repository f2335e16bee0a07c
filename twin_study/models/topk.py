"""Scoring L behaviours per request cheaply, and CP-GSU's merged multi-head top-k.

Two paths compute the same selection:

* the *reference* path: ``score_by_table`` / ``score_chunks`` write the whole (B, heads, L)
  score table chunk by chunk (per-item keys come from a table -- TWIN's K_h W^h cache, ETA's
  signatures -- gathered once per request), then ``merged_topk`` runs ``torch.topk`` over it.
  The analyses use it, since they need every score.
* the *fast* path (``select_per_request``): one request at a time, only its valid prefix is
  scored, the (heads, candidates, n) scores stay small enough to live in the CPU cache, and
  ``fast_topk`` finds the k best by a threshold filter instead of a full ``torch.topk`` scan.
  No (B, heads, L) table is ever written. Training and evaluation use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import native

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


def merge_heads(top: torch.Tensor, k: int) -> torch.Tensor:
    """The paper's merge of per-head rankings into one set of k unique behaviours.

    top (B, heads, k) slot indices, each head's list best first -> (B, k). Walk rank-major --
    rank 0 of head 0, 1, ..., rank 1 of head 0, ... -- keeping a behaviour the first time it
    appears. Each head's list is duplicate-free, so k ranks always yield k unique slots.
    """
    B, heads, k_in = top.shape
    cand = top.transpose(1, 2).reshape(B, k_in * heads)  # rank-major walk over the heads
    if heads == 1 or B == 0:
        return cand[:, :k]
    # One stable sort of the flattened rows (row offset x slot bound), which torch sorts
    # about twice as fast as B row-wise sorts; stable: the earliest walk position comes first.
    flat = (cand + torch.arange(B, device=cand.device)[:, None] * (int(cand.max()) + 1)).flatten()
    sorted_vals, sort_idx = flat.sort(stable=True)
    dup_sorted = torch.zeros_like(flat, dtype=torch.bool)
    dup_sorted[1:] = sorted_vals[1:] == sorted_vals[:-1]  # rows never collide: offsets differ
    dup = torch.empty_like(dup_sorted).scatter_(0, sort_idx, dup_sorted).view(B, -1)
    keep = ~dup
    keep &= torch.cumsum(keep, dim=1) <= k
    return cand[keep].view(B, k)


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
    k = min(k, scores.shape[-1])
    top = _masked(scores, valid).topk(k, dim=-1).indices  # (B, heads, k), best first
    idx = merge_heads(top, k)
    return idx, valid.gather(1, idx)


def ranked_merge(
    scores: torch.Tensor, valid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``merged_topk`` with tied scores broken by slot -- the most recent behaviour first --
    the same way at every k, so the first x entries of the result are its merged set of x.

    For the analyses that compare sets across sizes or models (``analysis.consistency``):
    ``torch.topk`` orders tied scores arbitrarily, and differently for different k. Ties are
    common where a catalogue is small (the same item with the same cross features scores the
    same), so separate top-x calls gave sets that were not nested (hits that fell as x grew:
    the paper-profile run of 02 on the 2,000-item world) and let the oracle and an identical
    GSU disagree on tied slots. A stable full sort per head fixes the order; the merge walks
    the heads rank by rank, so prefixes of the size-k result are the smaller merged sets.
    Models keep ``merged_topk`` (a full sort of L scores per head is not worth it there).

    scores (B, heads, L); valid (B, L) bool -> indices (B, k'), valid (B, k'), k' = min(k, L).
    """
    k = min(k, scores.shape[-1])
    top = _masked(scores, valid).sort(dim=-1, descending=True, stable=True).indices[..., :k]
    idx = merge_heads(top, k)  # top: (B, heads, k), ties in slot order
    return idx, valid.gather(1, idx)


def _masked(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Padding slots score -inf in every head: (B, heads, L), (B, L) -> (B, heads, L)."""
    return scores.masked_fill(~valid[:, None, :], NEG_INF)


def topk_single(
    scores: torch.Tensor, valid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of one score per behaviour: scores (B, L) -> indices (B, k'), valid (B, k')."""
    return merged_topk(scores[:, None, :], valid, k)


# ---------------------------------------------------------------------------------- fast path

# Below this many scores per row torch.topk is as fast as the blocked search (overhead wins).
FILTER_MIN_LEN = 1024


def fast_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of each row, best first: scores (N, n) -> values, indices (N, k); k <= n.

    ``torch.topk`` on the CPU partially sorts (value, index) pairs of the whole row, ~5 ns per
    score at n = 10^4. A blocked search ranks far fewer: split the row into m blocks of w
    scores, rank the blocks by their maximum and keep the k best blocks. Every top-k score lies
    in one of them: a block holding a top-k score x has a maximum >= x, and fewer than k
    blocks can have a larger maximum (each would hold a distinct score above x). So the exact
    top-k is the top-k of those k * w scores. Work: one max pass, a top-k over m maxima and a
    top-k over k * w scores; w = sqrt(n / k) balances the two (about 1,000 each at n = 10^4,
    k = 100). Block b is the strided set {b, b + m, b + 2m, ...}, so the max pass is an
    element-wise max of w contiguous rows (vectorised) rather than w-wide reductions.
    Equals ``torch.topk`` up to the order of exactly tied scores; no NaN allowed.
    """
    N, n = scores.shape
    w = round(math.sqrt(n / k))
    if n < FILTER_MIN_LEN or w < 2:
        return scores.topk(k, dim=1)
    m = -(-n // w)
    if m * w != n:  # pad the last stride with -inf (never ranked above a score)
        scores = F.pad(scores, (0, m * w - n), value=NEG_INF)
    strided = scores.view(N, w, m)  # block b = column b
    best = strided.amax(dim=1).topk(k, dim=1, sorted=False).indices  # (N, k) block ids
    cand = strided.gather(2, best[:, None, :].expand(N, w, k)).view(N, w * k)
    vals, j = cand.topk(k, dim=1)  # best first; j = row_in_block * k + block position
    return vals, (j // k) * m + best.gather(1, j % k)


# score_rows(r, n, samples) -> (heads, len(samples), n) scores of request r's valid slots 0..n-1
# for its samples (indices into the batch), larger = better.
ScoreRows = Callable[[int, int, torch.Tensor], torch.Tensor]


def select_per_request(
    score_rows: ScoreRows,
    n_valid: torch.Tensor,
    req: torch.Tensor,
    length: int,
    k: int,
    heads: int = 1,
    min_score: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GSU selection one request at a time (the fast path of ``merged_topk``).

    n_valid (R,) valid slots of each request (a prefix: slots 0..n-1, most recent first);
    req (B,) request of each sample; length L; ``score_rows`` gives ``heads`` score rows per
    sample. Returns slot indices (B, k') and their validity (B, k'), k' = min(k, L), as
    ``merged_topk`` over the full score table with padding at -inf does -- up to the order of
    exactly tied scores. A request with n < k' valid slots keeps all of them plus the padding
    slots n..k'-1, marked invalid. With ``min_score`` (one head only), a selected behaviour
    scoring <= min_score is marked invalid too (SIM Hard's "no category match", SDIM's "no
    colliding signature"): it is only chosen when fewer than k' behaviours score above it, as
    in the reference, where such behaviours are masked to -inf.
    """
    if min_score is not None and heads != 1:
        raise ValueError("min_score needs single-head scores")
    B, dev = len(req), req.device
    k = min(k, length)
    order = torch.argsort(req, stable=True)  # the samples of each request, contiguous
    counts = torch.bincount(req, minlength=len(n_valid)).tolist()
    n_list = n_valid.tolist()
    padding = torch.arange(k, device=dev)
    top = padding.expand(B, heads, k).clone()  # (B, heads, k); empty histories keep padding
    ok = torch.zeros(B, k, dtype=torch.bool, device=dev)
    start = 0
    for r, cnt in enumerate(counts):
        samples = order[start : start + cnt]
        start += cnt
        n = n_list[r]
        if cnt == 0 or n == 0:
            continue
        s = score_rows(r, n, samples)  # (heads, cnt, n)
        kk = min(k, n)
        vals, idx = fast_topk(s.reshape(heads * cnt, n), kk)
        top[samples, :, :kk] = idx.view(heads, cnt, kk).transpose(0, 1)
        if min_score is None:
            ok[samples, :kk] = True
        else:
            ok[samples, :kk] = vals > min_score
    if heads == 1:
        return top[:, 0], ok
    merged = merge_heads(top, k)  # the walk reorders slots: valid = inside the valid prefix
    return merged, merged < n_valid[req][:, None]


def finish_selection(
    top: torch.Tensor,
    vals: torch.Tensor,
    n_valid: torch.Tensor,
    req: torch.Tensor,
    min_score: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``select_per_request``'s ending for per-head top-k lists computed elsewhere (the native
    kernel): top / vals (B, heads, k) best first, padding slots n..k-1 at -inf for a request
    with n < k valid slots -> slots (B, k) and validity (B, k), as ``select_per_request``."""
    heads, k = top.shape[1:]
    if min_score is not None and heads != 1:
        raise ValueError("min_score needs single-head scores")
    limit = n_valid[req][:, None]
    if heads == 1:
        top, vals = top[:, 0], vals[:, 0]
        ok = top < limit
        if min_score is not None:
            ok &= vals > min_score
        return top, ok
    merged = native.merge_heads(top, int(max(n_valid.max(), k)) if len(n_valid) else k)
    if merged is None:
        merged = merge_heads(top, k)
    return merged, merged < limit
