"""General Search Units: pick k of the L behaviours for the ESU.

Every GSU returns slot indices into the request's history (most recent first) and a validity
mask; all two-stage models then share the same ESU (TWIN's attention), so they differ only here.
Ties are broken towards the more recent behaviour (a smaller slot), deterministically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import runtime
from . import native
from .attention import TwinAttention
from .embedding import FeatureEmbedder
from .topk import (
    finish_selection,
    merged_topk,
    score_by_table,
    score_chunks,
    select_per_request,
)
from .unique import unique_ids


@dataclass
class GsuInput:
    """What a GSU sees. B samples, R requests, L long-window slots."""

    target: torch.Tensor  # (B,) target item ids
    req: torch.Tensor  # (B,) request row of each sample
    hist_item: torch.Tensor  # (R, L) item ids, most recent first
    hist_cross: torch.Tensor  # (R, L, J) cross-feature codes
    valid: torch.Tensor  # (R, L) real behaviours: a prefix of each row (most recent first)
    chunk: int = 2048
    fast: bool = True  # select with the per-request fast path (False: the reference path)
    size: torch.Tensor | None = None  # (R, L) cluster size per slot (TWIN-V2), None: all 1

    @property
    def n_req(self) -> int:
        return self.hist_item.shape[0]

    @property
    def length(self) -> int:
        return self.hist_item.shape[1]

    def n_valid(self) -> torch.Tensor:
        """(R,) valid slots per request (the valid part of a row is a prefix)."""
        return self.valid.sum(dim=1)

    def sample_valid(self) -> torch.Tensor:
        return self.valid[self.req]  # (B, L)

    def recency(self) -> torch.Tensor:
        """(1, L) tie-break term in (-1, 0]: prefers recent behaviours among equal scores."""
        L = self.length
        return -torch.arange(L, device=self.hist_item.device, dtype=torch.float32)[None] / (L + 1)


def log_size(size: torch.Tensor) -> torch.Tensor:
    """ln n of each slot's cluster size (TWIN-V2's cluster-aware attention); padding (n = 0)
    and raw behaviours (n = 1) get 0."""
    return torch.log(size.clamp(min=1).float())


# Renumbering a batch's items (``unique_ids``) costs about as much per slot as computing one
# per-item table row costs per SLOTS_PER_TABLE_ROW slots (a few ns against a lookup and a
# projection per row; measured on one thread: 2.6 x 10^6 slots in ~25 ms).
SLOTS_PER_TABLE_ROW = 8


def compact_items(x: GsuInput, n_items: int) -> tuple[torch.Tensor | None, GsuInput]:
    """The items this batch reads, renumbered: (uniq (U,), x with ``hist_item`` and
    ``target`` as positions in uniq), so a per-item table of the live parameters (ETA's
    signatures, SDIM's buckets and sums) is computed for U items instead of the catalogue.
    (None, x) when a table of every item is cheaper: the catalogue is below
    ``1 / SLOTS_PER_TABLE_ROW`` of the batch's slots (the study's own worlds at L >= 10^3),
    where renumbering would cost more than the rows it saves. Padding slots (item 0) are
    renumbered like any item."""
    n_slots = x.hist_item.numel() + x.target.numel()
    if (n_items + 1) * SLOTS_PER_TABLE_ROW <= n_slots:
        return None, x
    ids = torch.cat([x.hist_item.reshape(-1), x.target])
    uniq, inv = unique_ids(ids, n_items + 1)
    hist = inv[: x.hist_item.numel()].view(x.hist_item.shape)
    return uniq, replace(x, hist_item=hist, target=inv[x.hist_item.numel() :])


class GSU(nn.Module):
    """Base class: ``scores`` gives (B, heads, L) and a (B, L) retrievable mask (the reference
    path, also what the analyses read); ``fast_select`` picks the same k behaviours one request
    at a time without writing that table (see ``topk.select_per_request``)."""

    def scores(self, x: GsuInput) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def select(self, x: GsuInput, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, k') slot indices and their validity, k' = min(k, L)."""
        if x.fast:
            return self.fast_select(x, k)
        s, valid = self.scores(x)
        return merged_topk(s, valid, k)

    def fast_select(self, x: GsuInput, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, valid = self.scores(x)  # no fast path: the reference
        return merged_topk(s, valid, k)


def table_rows(
    table: torch.Tensor,
    x: GsuInput,
    query: torch.Tensor,
    bias: Callable[[int, int], torch.Tensor] | None = None,
    tiebreak: float = 0.0,
) -> Callable[[int, int, torch.Tensor], torch.Tensor]:
    """Fast-path scores of request r: keys read from a per-item table, as ``score_by_table``.

    table (n_items + 1, heads, d); query (B, heads, d); bias(r, n) -> (heads, n) added per
    behaviour; ``tiebreak`` times the recency term added last (as the reference adds it).
    Returns score_rows(r, n, samples) -> (heads, len(samples), n).
    """
    heads, d = table.shape[1:]
    flat = table.reshape(table.shape[0], heads * d)
    recency = x.recency()[0] * tiebreak if tiebreak else None  # (L,)

    def rows(r: int, n: int, samples: torch.Tensor) -> torch.Tensor:
        keys = F.embedding(x.hist_item[r, :n], flat).view(n, heads, d).float()  # (n, heads, d)
        s = torch.bmm(query[samples].transpose(0, 1), keys.permute(1, 2, 0))  # (heads, cnt, n)
        if bias is not None:
            s += bias(r, n)[:, None, :]  # the same cross bias for every candidate
        if recency is not None:
            s += recency[:n]
        return s

    return rows


def select_table(
    x: GsuInput,
    k: int,
    table: torch.Tensor,
    query: torch.Tensor,
    rows: Callable[[], Callable[[int, int, torch.Tensor], torch.Tensor]],
    bias: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    tiebreak: float = 0.0,
    min_score: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fast path's selection over ``table_rows`` scores: the native kernel when it runs
    (``native.select_by_table``), else ``select_per_request`` over ``rows()``. Same behaviours
    either way, up to exact ties (tests/test_native.py).

    table (n_items + 1, heads, d) float32; query (B, heads, d); bias = (joint table (heads,
    codes), hist codes (R, L, J), strides (J,)) or None."""
    heads = table.shape[1]
    got = native.select_by_table(table, x.hist_item, x.n_valid(), query, x.req, k, bias, tiebreak)
    if got is None:
        return select_per_request(rows(), x.n_valid(), x.req, x.length, k, heads, min_score)
    return finish_selection(*got, x.n_valid(), x.req, min_score)


class RecentGSU(GSU):
    """DIN: the k most recent behaviours (no search)."""

    def scores(self, x: GsuInput):
        return x.recency().expand(len(x.target), -1)[:, None, :], x.sample_valid()

    def fast_select(self, x: GsuInput, k: int):
        k = min(k, x.length)
        idx = torch.arange(k, device=x.req.device).expand(len(x.req), k)
        return idx, idx < x.n_valid()[x.req][:, None]


class CodeMatchGSU(GSU):
    """SIM Hard (code = category) and SIM Cluster (code = k-means cluster of pre-trained
    embeddings): behaviours whose code equals the target's, most recent first."""

    def __init__(self, codes: np.ndarray | torch.Tensor):
        super().__init__()
        self.register_buffer("codes", torch.as_tensor(np.asarray(codes)).long())

    def scores(self, x: GsuInput):
        hist = self.codes[x.hist_item][x.req]  # (B, L)
        match = hist == self.codes[x.target][:, None]
        return x.recency().expand_as(hist)[:, None, :], x.sample_valid() & match

    def fast_select(self, x: GsuInput, k: int):
        target = self.codes[x.target]  # (B,)
        recency = x.recency()[0]  # (L,)

        def rows(r: int, n: int, samples: torch.Tensor) -> torch.Tensor:
            match = self.codes[x.hist_item[r, :n]][None, :] == target[samples][:, None]
            return (match + recency[:n])[None]  # (1, cnt, n): a match scores > 0, others <= 0

        return select_per_request(rows, x.n_valid(), x.req, x.length, k, min_score=0.0)


class SoftGSU(GSU):
    """SIM Soft: inner product of frozen pre-trained item embeddings."""

    def __init__(self, item_vectors: np.ndarray | torch.Tensor):
        super().__init__()
        v = torch.as_tensor(np.asarray(item_vectors), dtype=torch.float32)
        # (n_items + 1, 1, D), on huge pages: its rows are read at random (runtime.py)
        self.register_buffer("table", runtime.on_huge_pages(v[:, None, :].contiguous()))

    def scores(self, x: GsuInput):
        q = self.table[x.target]  # (B, 1, D)
        s = score_by_table(self.table, x.hist_item, q, x.req, x.chunk)
        return s + x.recency()[:, None, :] * 1e-6, x.sample_valid()

    def fast_select(self, x: GsuInput, k: int):
        t, q = self.table, self.table[x.target]
        return select_table(x, k, t, q, lambda: table_rows(t, x, q, tiebreak=1e-6), tiebreak=1e-6)


def hash_projection(emb: FeatureEmbedder, source: str, bits: int, seed: int) -> torch.Tensor:
    """(dim, bits) fixed random projection of ETA / SDIM, drawn once from ``seed``; dim is the
    width of ``emb.item_vectors(source)`` (H for K_h, id_dim for the item id)."""
    g = torch.Generator().manual_seed(seed)
    dim = emb.H if source == "inherent" else emb.item_emb["item"].embedding_dim
    return torch.randn(dim, bits, generator=g)


class _HashedGSU(GSU):
    """Shared by ETA and SDIM: a fixed random projection of the model's live item vectors."""

    def __init__(self, emb: FeatureEmbedder, bits: int, seed: int, source: str = "inherent"):
        super().__init__()
        self.register_buffer("proj", hash_projection(emb, source, bits, seed))
        self.source = source
        self._emb = [emb]  # a plain reference: the embedder is registered by the CTR model

    def projected(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, bits) projections of every item's vector, no gradient; (U, bits) of
        ``items`` only (``compact_items``)."""
        return self._emb[0].project_vectors(self.source, self.proj, items)


class EtaGSU(_HashedGSU):
    """ETA: SimHash signatures (sign of fixed random projections) of the model's own, live item
    vectors; rank by Hamming distance to the target's signature.

    ``source`` (``ModelConfig.hash_input``): "inherent" hashes K_h (id, author, category, ...),
    the features TWIN's keys see, so the comparison differs in the retrieval method only;
    "item_id" hashes the item-id embedding alone. The projection is drawn once from
    ``hash_seed`` and stored as a buffer, so evaluation never redraws it. With +-1 signatures,
    dot = m - 2 * Hamming, so a dot-product ranking is the Hamming ranking.
    """

    def signatures(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, bits) +-1 signatures, or (U, bits) of ``items``."""
        return torch.where(self.projected(items) >= 0, 1.0, -1.0)

    def scores(self, x: GsuInput):
        table = self.signatures()[:, None, :]
        s = score_by_table(table, x.hist_item, table[x.target], x.req, x.chunk)
        return s + x.recency()[:, None, :], x.sample_valid()

    def fast_select(self, x: GsuInput, k: int):
        items, x = compact_items(x, self._emb[0].n_items)  # selection slots are unchanged
        table = self.signatures(items)[:, None, :]
        q = table[x.target]
        return select_table(x, k, table, q, lambda: table_rows(table, x, q, tiebreak=1.0),
                            tiebreak=1.0)  # fmt: skip


class SdimGSU(_HashedGSU):
    """SDIM: m hash bits grouped into m / tau signatures of tau bits each (every tau bits ANDed
    into one bucket id). A behaviour is gathered when at least one of its signatures collides
    with the target's; rank by the number of colliding signatures (paper's attention variant).
    Hashes ``emb.item_vectors(source)`` with a fixed projection, as ``EtaGSU``."""

    def __init__(
        self, emb: FeatureEmbedder, bits: int, tau: int, seed: int, source: str = "inherent"
    ):
        super().__init__(emb, bits, seed, source)
        self.register_buffer("pow2", 2 ** torch.arange(tau))  # bit weights (saved models carry it)
        self.tau, self.groups = tau, bits // tau

    def buckets(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, groups) bucket id of each item in each signature group; (U, groups)
        of ``items`` only."""
        proj = self.projected(items)
        bits = (proj >= 0).view(proj.shape[0], self.groups, self.tau).to(torch.int32)
        # bit t of a bucket id is sign bit t of its group: shifts and ors, not a (n, G, tau)
        # int64 product and sum (twice the time of this whole function, every step).
        ids = bits[..., 0].clone()
        for t in range(1, self.tau):
            ids |= bits[..., t] << t  # = bits[..., t] * pow2[t]
        return ids.long()

    def collisions(self, x: GsuInput, table: torch.Tensor) -> torch.Tensor:
        """(B, L) number of signature groups in which the behaviour collides with the target."""
        tgt = table[x.target]  # (B, G)
        out = torch.empty(len(x.target), x.length, device=tgt.device)
        for lo in range(0, x.length, x.chunk):
            hist = table[x.hist_item[:, lo : lo + x.chunk]][x.req]  # (B, c, G)
            out[:, lo : lo + x.chunk] = (hist == tgt[:, None, :]).sum(-1)
        return out

    def scores(self, x: GsuInput):
        n = self.collisions(x, self.buckets())
        return (n + x.recency())[:, None, :], x.sample_valid() & (n > 0)

    def one_hot_signatures(self, buckets: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, 1, groups * 2^tau): one 1 per group, at the item's bucket. The dot
        product of two items' rows counts their colliding signatures."""
        b = self.buckets() if buckets is None else buckets  # (n, G)
        n_b = 2**self.tau
        hot = torch.zeros(b.shape[0], self.groups * n_b, device=b.device)
        hot.scatter_(1, b + n_b * torch.arange(self.groups, device=b.device), 1.0)
        return hot[:, None, :]

    def fast_select(self, x: GsuInput, k: int):
        items, x = compact_items(x, self._emb[0].n_items)  # selection slots are unchanged
        buckets = self.buckets(items)  # (n_items + 1, G), or (U, G)
        # The kernel counts equal bucket ids directly (one byte per group); the scores are
        # those of the one-hot product below, which is the fallback.
        got = native.select_by_codes(
            buckets, x.hist_item, x.n_valid(), buckets[x.target], x.req, k, tiebreak=1.0
        )
        if got is not None:
            return finish_selection(*got, x.n_valid(), x.req, min_score=0.0)
        hot = self.one_hot_signatures(buckets)  # float32: the table kernel; float16: torch
        q = hot[x.target]

        def rows():  # noqa: ANN202
            # float16 halves the rows gathered per behaviour; 0 and 1 are exact, and they are
            # upcast before the product, so the collision counts are exact too.
            return table_rows(hot.half(), x, q, tiebreak=1.0)

        # A behaviour with no colliding signature scores <= 0: not retrievable.
        return select_table(x, k, hot, q, rows, tiebreak=1.0, min_score=0.0)


def key_side_costs(
    n_items: int, H: int, heads: int, d_k: int, pairs: int, n_queries: int, n_slots: int = 0
) -> dict[str, int]:
    """Multiply-adds of the two ways to score ``pairs`` (candidate, behaviour) pairs with
    CP-GSU's inherent term (K_h W^h) . (q W^q), both exact:

    * ``cache``: rebuild the item cache K_h W^h, (n_items + 1) x H x heads d_k, then one
      heads x d_k dot per pair -- the rebuild grows with the catalogue;
    * ``query``: map each candidate's query back to K_h's width, u = (q W^q) W^h^T (n_queries
      x heads x d_k x H), then one heads x H dot per pair against the gathered K_h -- grows
      with the batch only.

    * ``batch``: project only the items the batch reads (at most ``n_slots``, its history
      slots and targets) into a small cache of the batch, then score as ``cache`` does --
      grows with the batch only.

    ``rebuild`` is the cache's share, paid once per parameter change. The same terms as
    ``analysis.complexity.analytic_cost`` (which counts a multiply-add as 2 FLOPs)."""
    hd = heads * d_k
    return {
        "rebuild": (n_items + 1) * H * hd,
        "cache": (n_items + 1) * H * hd + pairs * hd,
        "query": n_queries * hd * H + pairs * heads * H,
        "batch": min(n_items + 1, n_slots) * H * hd + pairs * hd,
    }


# The query side's multiply-adds run ~4x slower per MAC on the CPU than the batch cache's: a
# (candidates x heads) x H by H x n product per request after a row gather (measured ~13
# GFLOP/s at L = 10^4 on this study's 2-core machine) against one batched projection and the
# native gather-and-dot kernel. ``CpGSU`` weighs them so before comparing.
QUERY_SIDE_PENALTY = 4


class ItemKeyCache(nn.Module):
    """TWIN's inherent-feature projector: K_h W_a^h for every item and head, precomputed.

    Serving reads it with a gather. In training, ``refresh`` > 0 rebuilds it every
    ``refresh`` steps whatever it costs, so a stale cache can be studied (the paper blames its
    6 % misses on a 15-minute cache delay). ``refresh`` = 0 means "always fresh": the keys
    must match the live parameters whenever they are read. The cache records the version
    counters of the tensors it was built from (every in-place update -- an optimizer step, a
    ``load_state_dict`` -- bumps them), so it knows when it is stale, and the CP-GSU rebuilds
    it only when reading it is cheaper than scoring from the query side (``CpGSU``).
    """

    def __init__(self, n_items: int, heads: int, d_k: int, refresh: int):
        super().__init__()
        self.refresh_every = refresh
        self.shape = (n_items + 1, heads, d_k)
        # Allocated at the first rebuild: a model that always scores from the query side
        # (a large catalogue) never holds the (n_items + 1, heads, d_k) table.
        self.register_buffer("keys", torch.zeros(0, heads, d_k), persistent=False)
        self.age = -1  # steps since the last rebuild; -1 = never built
        self.built_from: tuple[int, ...] | None = None  # source versions at the last rebuild

    @staticmethod
    def versions(emb: FeatureEmbedder, att: TwinAttention) -> tuple[int, ...]:
        """Version counters of everything the keys are computed from."""
        return (*(e.weight._version for e in emb.item_emb.values()), att.W_h.weight._version)

    def is_fresh(self, emb: FeatureEmbedder, att: TwinAttention) -> bool:
        return self.age >= 0 and self.built_from == self.versions(emb, att)

    @torch.no_grad()
    def rebuild(self, emb: FeatureEmbedder, att: TwinAttention) -> None:
        if self.keys.shape != self.shape:  # on huge pages: gathered at random (runtime.py)
            w = att.W_h.weight
            self.keys = (runtime.huge_empty(self.shape, w.dtype) if w.device.type == "cpu"
                         else w.new_empty(self.shape))  # fmt: skip
        # K_h W^h for all items, one feature table at a time (W^h has no bias).
        emb.project_items(att.W_h.weight, out=self.keys.view(self.keys.shape[0], -1))
        self.age = 0
        self.built_from = self.versions(emb, att)

    def step(self, emb: FeatureEmbedder, att: TwinAttention) -> None:
        """Called once per training step, before the forward pass. A fresh cache (refresh 0)
        is rebuilt when it is read, if at all (``CpGSU.keys_for``)."""
        if self.refresh_every > 0 and (self.age < 0 or self.age >= self.refresh_every):
            self.rebuild(emb, att)
        if self.age >= 0:
            self.age += 1


class CpGSU(GSU):
    """TWIN's Consistency-Preserved GSU: the ESU's own alpha (Eq. 6) over all L behaviours,
    with K_h W^h read from the item cache and the cross term from per-code tables.

    ``emb`` / ``att`` are the embedder and attention whose parameters it uses: the ESU's own
    (TWIN) or a separately trained model's (the w/o Para-Con ablation).

    Where the catalogue is large and the cache must be fresh (``cache_refresh`` = 0), the
    fast path avoids the O(n_items) rebuild (issue 27) in one of two ways: "batch" projects
    only the items this batch reads into a cache of the batch (the rows of the full cache it
    would read), "query" scores from the query side, (K_h W^h) . q' = K_h . (q' W^h).
    ``key_side`` chooses: "auto" (the cheapest by ``key_side_costs``, the query side weighed
    by ``QUERY_SIDE_PENALTY``, counted as ski rental: the work of skipping the rebuild is
    summed while the parameters stay unchanged, e.g. over an evaluation pass, and the cache is
    rebuilt once that sum would pass the rebuild's cost), "cache", "batch" or "query". A
    computation choice, not a model one: all select the same behaviours up to float rounding
    (tests/test_catalogue.py). A stale cache (``cache_refresh`` > 0) is always read: its lag
    is what it models.
    """

    KEY_SIDES = ("auto", "cache", "batch", "query")

    def __init__(self, emb: FeatureEmbedder, att: TwinAttention, refresh: int):
        super().__init__()
        self._src = [emb, att]  # plain references: their owner registers and trains them
        self.cache = ItemKeyCache(emb.n_items, att.heads, att.d_k, refresh)
        self.key_side = "auto"
        self._spent: tuple[tuple[int, ...] | None, int] = (None, 0)  # (versions, query MACs)
        self.last_side = ""  # what the last fast selection used: cache, batch or query

    def step(self) -> None:
        self.cache.step(*self._src)

    def ensure_fresh(self) -> None:
        """Make ``cache.keys`` readable now: built, and current unless it is a stale cache."""
        emb, att = self._src
        c = self.cache
        if c.age < 0 or (c.refresh_every == 0 and not c.is_fresh(emb, att)):
            c.rebuild(emb, att)

    def prepare_eval(self) -> None:
        """Before evaluation. A stale cache that was never built is built (serving has one);
        a fresh one is left to ``keys_for``, which rebuilds it only if that pays."""
        if self.cache.refresh_every > 0 and self.cache.age < 0:
            self.cache.rebuild(*self._src)

    def keys_for(self, x: GsuInput) -> str:
        """Where this selection's keys come from: "cache" (the item cache, rebuilt here if
        due), "batch" or "query"; see the class docstring."""
        if self.key_side not in self.KEY_SIDES:
            raise ValueError(f"unknown key_side {self.key_side!r}; one of {self.KEY_SIDES}")
        emb, att = self._src
        c = self.cache
        if c.refresh_every > 0 or self.key_side == "cache":
            self.ensure_fresh()
            return "cache"
        if c.is_fresh(emb, att):
            return "cache"
        if self.key_side != "auto":
            return self.key_side
        cost, side = self.skip_costs(x)
        versions = c.versions(emb, att)
        spent = self._spent[1] if self._spent[0] == versions else 0
        if spent + cost[side] >= cost["rebuild"]:
            c.rebuild(emb, att)
            return "cache"
        self._spent = (versions, spent + cost[side])
        return side

    def skip_costs(self, x: GsuInput) -> tuple[dict[str, int], str]:
        """What skipping the rebuild costs this selection, in weighted multiply-adds, on each
        way ("batch", "query"; beyond scoring from a fresh cache), the rebuild's own cost, and
        the cheaper way."""
        emb, att = self._src
        pairs = int(x.n_valid()[x.req].sum())  # behaviours scored, summed over candidates
        n_slots = x.hist_item.numel() + x.target.numel()
        cost = key_side_costs(emb.n_items, emb.H, att.heads, att.d_k, pairs, len(x.target),
                              n_slots)  # fmt: skip
        scoring = cost["cache"] - cost["rebuild"]  # what a fresh cache costs anyway
        out = {"rebuild": cost["rebuild"], "batch": cost["batch"] - scoring,
               "query": QUERY_SIDE_PENALTY * cost["query"] - scoring}  # fmt: skip
        return out, min(("batch", "query"), key=out.__getitem__)

    def query_rows(self, x: GsuInput) -> Callable[[int, int, torch.Tensor], torch.Tensor]:
        """The fast path's scoring of request r from the query side: each candidate's query
        mapped back to K_h's width, u = q' W^h (heads x H), against the gathered K_h of the
        request's behaviours. The same scores as ``score_rows`` without the item cache."""
        emb, att = self._src
        qh = att.query(emb.inherent(x.target))  # (B, heads, d_k)
        w_h = att.W_h.weight.view(att.heads, att.d_k, emb.H)
        u = torch.einsum("bad,adh->bah", qh, w_h)  # (B, heads, H)
        bias = self._bias_rows(x)

        def rows(r: int, n: int, samples: torch.Tensor) -> torch.Tensor:
            k_h = emb.inherent_rows(x.hist_item[r, :n])  # (n, H)
            s = u[samples].flatten(0, 1) @ k_h.t()  # (cnt * heads, n)
            s = s.view(len(samples), att.heads, n).transpose(0, 1)  # (heads, cnt, n)
            return s if bias is None else s + bias(r, n)[:, None, :]

        return rows

    def _bias_rows(self, x: GsuInput) -> Callable[[int, int], torch.Tensor] | None:
        """bias(r, n) -> (heads, n): the cross term of request r's first n behaviours, from
        the joint cross-bias table where it fits, else one table per cross feature."""
        emb, att = self._src
        joint = att.joint_bias_table(emb)
        tables = att.cross_bias_tables(emb) if joint is None else []
        if joint is None and not tables:
            return None

        def bias(r: int, n: int) -> torch.Tensor:
            codes = x.hist_cross[r, :n]  # (n, J)
            if joint is None:
                return att.lookup_bias(tables, codes).t()
            return joint[0].index_select(1, (codes * joint[1]).sum(dim=1))

        return bias

    def scores(self, x: GsuInput):
        emb, att = self._src
        self.ensure_fresh()
        qh = att.query(emb.inherent(x.target))
        bias = att.lookup_bias(att.cross_bias_tables(emb), x.hist_cross)  # (R, L, heads)
        s = score_by_table(self.cache.keys, x.hist_item, qh, x.req, x.chunk, bias)
        return s, x.sample_valid()

    def score_rows(
        self, x: GsuInput, keys: torch.Tensor | None = None, qh: torch.Tensor | None = None
    ) -> Callable[[int, int, torch.Tensor], torch.Tensor]:
        """The fast path's scoring of request r (see ``table_rows``): alpha over its valid
        behaviours from the item cache and the joint cross-bias table. With ``keys`` (a cache
        of x's items, x renumbered by ``batch_keys``) pass the queries ``qh`` too: x's
        targets are then rows of ``keys``, not item ids."""
        emb, att = self._src
        if keys is None:
            self.ensure_fresh()
            keys = self.cache.keys
        if qh is None:
            qh = att.query(emb.inherent(x.target))  # (B, heads, d_k)
        return table_rows(keys, x, qh, self._bias_rows(x))

    def batch_keys(self, x: GsuInput) -> tuple[torch.Tensor, GsuInput]:
        """K_h W^h of only the items x reads, (U, heads, d_k), and x renumbered to index it:
        the rows of the full cache this batch would read (``compact_items``)."""
        emb, att = self._src
        items, cx = compact_items(x, emb.n_items)
        if items is None:  # the catalogue is no larger than the batch: the cache itself
            self.ensure_fresh()
            return self.cache.keys, x
        keys = emb.project_items(att.W_h.weight, items=items)  # (U, heads * d_k)
        return keys.view(len(items), att.heads, att.d_k), cx

    def fast_select(self, x: GsuInput, k: int):
        emb, att = self._src
        self.last_side = side = self.keys_for(x)
        if side == "query":
            return select_per_request(self.query_rows(x), x.n_valid(), x.req, x.length, k,
                                      att.heads)  # fmt: skip
        qh = att.query(emb.inherent(x.target))  # (B, heads, d_k), from the item ids
        keys, x = self.batch_keys(x) if side == "batch" else (self.cache.keys, x)
        joint = att.joint_bias_table(emb)
        if att.mode == "split" and att.J > 0 and joint is None:  # too many joint codes
            return select_per_request(self.score_rows(x, keys, qh), x.n_valid(), x.req,
                                      x.length, k, att.heads)  # fmt: skip
        bias = (joint[0], x.hist_cross, joint[1]) if joint is not None else None
        return select_table(x, k, keys, qh, lambda: self.score_rows(x, keys, qh), bias)


def live_scores(emb: FeatureEmbedder, att: TwinAttention, x: GsuInput) -> torch.Tensor:
    """The ESU's alpha over ALL L behaviours with live parameters, projected chunk by chunk:
    the oracle of the consistency analysis and the raw-MHTA GSU. -> (B, heads, L)."""
    qh = att.query(emb.inherent(x.target))

    def keys(lo: int, hi: int) -> torch.Tensor:
        k_h = emb.inherent(x.hist_item[:, lo:hi])
        if att.mode == "raw":
            return att.raw_keys(k_h, emb.cross(x.hist_cross[:, lo:hi]))
        return att.inherent_keys(k_h)

    bias = att.lookup_bias(att.cross_bias_tables(emb), x.hist_cross)  # (R, L, heads)
    return score_chunks(keys, x.n_req, x.length, qh, x.req, x.chunk, bias)


class LiveGSU(GSU):
    """GSU that projects every behaviour with live parameters (TWIN w/ Raw MHTA: no cache is
    possible because the keys mix in user-specific cross features)."""

    def __init__(self, emb: FeatureEmbedder, att: TwinAttention):
        super().__init__()
        self._src = [emb, att]

    def scores(self, x: GsuInput):
        return live_scores(*self._src, x), x.sample_valid()

    def fast_select(self, x: GsuInput, k: int):
        emb, att = self._src
        qh = att.query(emb.inherent(x.target))  # (B, heads, d_k)
        tables = att.cross_bias_tables(emb)

        def rows(r: int, n: int, samples: torch.Tensor) -> torch.Tensor:
            # Every behaviour projected with live parameters: the cost the item cache avoids.
            items, codes = x.hist_item[r, :n], x.hist_cross[r, :n]
            k_h = emb.inherent(items)
            raw = att.mode == "raw"
            keys = att.raw_keys(k_h, emb.cross(codes)) if raw else att.inherent_keys(k_h)
            s = torch.bmm(qh[samples].transpose(0, 1), keys.permute(1, 2, 0))  # (heads, cnt, n)
            if tables:
                s += att.lookup_bias(tables, codes).t()[:, None, :]  # (heads, 1, n)
            return s

        return select_per_request(rows, x.n_valid(), x.req, x.length, k, heads=att.heads)
