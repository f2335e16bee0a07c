"""TWIN-V2's offline side: compress each user's life-cycle history into "virtual items".

TWIN-V2 (CIKM 2024; ``/work/shared/paper/TWIN_V2_NOTES.md``) clusters a user's whole history
offline into size-capped clusters and lets TWIN's GSU/ESU attend over one representative per
cluster, weighted by the cluster's size. This module builds those clusters and the batches that
carry them; the model side (attention with ``alpha + ln n``) lives in ``models``.

Choices (each a field of ``ClusterConfig``):

* **Leak-free by blocks.** A user's log is cut into consecutive blocks of ``block`` behaviours,
  counted from the user's first behaviour, and every cluster lies inside one block. A request
  sees the clusters of the blocks that are complete before its history ends and the raw
  behaviours after them, so no cluster holds a behaviour at or after the request. Each behaviour
  is clustered once (one pass over the log), not once per request. The user's last, incomplete
  block is never clustered (``cluster_of == -1``): no request can see it as clusters.
* **Engagement groups.** Strong and weak engagements never share a cluster: within a block the
  behaviours are first grouped by the code of one cross feature (``engagement_feature``, the
  synthetic world's ``play_ratio``), cut into ``engagement_groups`` bins of equal width over the
  code range. Fixed bins, not quantiles fitted on the log, so that no later behaviour shapes how
  an earlier one is grouped; for a play-ratio bucket they are the quantiles of a uniform ratio.
* **Recursive k-means** on L2-normalised item keys (the caller passes the model's K_h or item
  embeddings): a set of n > ``cap`` behaviours is split into max(2, floor(n ** split_exponent))
  parts by k-means (k-means++ initialisation from a seeded generator, at most ``kmeans_iters``
  Lloyd iterations, stopping early once no assignment changes); a part still larger than ``cap``
  is split again. A split that leaves every point in one part (identical keys) falls back to
  halves by log position, so the recursion always ends. All sets of one user at one depth are
  solved together as padded batches (sets of similar size share a batch), so the cost is a few
  numpy matrix products per Lloyd iteration, not Python work per behaviour.
* **Virtual items.** A cluster's representative is the member nearest the centroid (the mean
  of the members' normalised keys; ties go to the most recent member). Its item id is the
  virtual item's id, so every item-inherent feature is the representative's. Its cross codes are
  the representative's too: the study's cross features are categorical codes, for which a mean
  has no meaning (and the engagement code is shared within a group anyway). Its time is the most
  recent member's, so the time-gap feature of a virtual item is the gap to its most recent
  member. Within a user, virtual items are ordered by that member, oldest first, like the log.
* **Batches** (``LifecycleSampleBuilder``): raw recent behaviours first, then virtual items,
  most recent first, with ``Batch.hist_size``; the short window stays raw (see the class).
  ``Batch.hist_pos`` refuses such batches; ``slot_sources`` names what stands behind a slot.

Speed: one user's 10^5 behaviours cluster in about 0.4 s on one core (d = 32 keys, cap 20;
``benchmarks/lifecycle_speed.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .batching import Batch, SampleBuilder, time_gap_bucket
from .schema import Dataset


@dataclass(frozen=True)
class ClusterConfig:
    """How life-cycle histories are clustered (validated on construction).

    ``cap`` is the paper's gamma: no cluster holds more behaviours (the notes' heuristic
    gamma ~ 2 / ratio gives ~10 % at 20). ``block`` behaviours form one leak-free clustering
    unit; it must hold at least one full cluster. ``engagement_feature`` names the cross feature
    whose code groups behaviours (None: no grouping).
    """

    cap: int = 20
    block: int = 1000
    split_exponent: float = 0.3
    kmeans_iters: int = 20
    engagement_feature: str | None = "play_ratio"
    engagement_groups: int = 3
    normalize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"ClusterConfig: {msg}")

        need(self.cap >= 1, f"cap (gamma) must be >= 1, got {self.cap}")
        need(self.block >= self.cap, f"block ({self.block}) must be >= cap ({self.cap})")
        need(0 < self.split_exponent < 1, f"split_exponent must be in (0, 1), got "
             f"{self.split_exponent}")  # fmt: skip
        need(self.kmeans_iters >= 1, f"kmeans_iters must be >= 1, got {self.kmeans_iters}")
        need(self.engagement_groups >= 1,
             f"engagement_groups must be >= 1, got {self.engagement_groups}")  # fmt: skip
        need(self.engagement_feature != "", "engagement_feature: give a name or None")


@dataclass
class CompressedLog:
    """Every user's virtual items, in CSR per user and per block.

    Blocks of user u are ``block_ptr[u] : block_ptr[u + 1]`` (complete blocks only, oldest
    first); the clusters of block b are ``cluster_ptr[b] : cluster_ptr[b + 1]``, oldest first,
    so the virtual items of a user's first k blocks are one contiguous slice. Per cluster:
    ``item`` (the representative's item id), ``size``, ``cross`` (the representative's codes),
    ``time`` (the most recent member's), ``rep`` and ``last`` (absolute log indices of the
    representative and of the most recent member). ``cluster_of`` maps every behaviour (log
    order) to its cluster, -1 where it was not clustered (a user's incomplete last block).
    """

    config: ClusterConfig
    block_ptr: np.ndarray  # (n_users + 1,) int64
    cluster_ptr: np.ndarray  # (n_blocks + 1,) int64
    item: np.ndarray  # (C,) int64
    size: np.ndarray  # (C,) int64
    cross: np.ndarray  # (C, J0) codes
    time: np.ndarray  # (C,) int64
    rep: np.ndarray  # (C,) int64
    last: np.ndarray  # (C,) int64
    cluster_of: np.ndarray  # (N,) int64
    seconds: np.ndarray  # (n_users,) float64 clustering time per user

    @property
    def n_clusters(self) -> int:
        return len(self.item)

    @property
    def ratio(self) -> float:
        """Virtual items per clustered behaviour (NaN when no user has a complete block)."""
        clustered = int((self.cluster_of >= 0).sum())
        return self.n_clusters / clustered if clustered else math.nan

    def members(self, cluster: int) -> np.ndarray:
        """Absolute log indices of one cluster's members (a scan of the log: analysis only)."""
        return np.flatnonzero(self.cluster_of == cluster)


# ------------------------------------------------------------------------------ checks


def check_item_keys(item_keys: np.ndarray, n_items: int, normalize: bool) -> np.ndarray:
    """(n_items + 1, d) float32 keys, L2-normalised when asked; clear errors on bad input."""
    keys = np.asarray(item_keys)
    if keys.ndim != 2 or keys.shape[1] < 1:
        raise ValueError(f"item_keys: expected a 2-d (n_items + 1, d) array, got {keys.shape}")
    if len(keys) != n_items + 1:
        raise ValueError(
            f"item_keys: expected n_items + 1 = {n_items + 1} rows (row 0 is the padding "
            f"item), got {len(keys)}"
        )
    bad = np.flatnonzero(~np.isfinite(keys).all(axis=1))
    if len(bad):
        raise ValueError(f"item_keys: row {int(bad[0])} holds a non-finite value")
    keys = keys.astype(np.float64)
    if normalize:  # a zero row stays zero rather than dividing by zero
        keys = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
    return keys.astype(np.float32)


def engagement_group(ds: Dataset, cfg: ClusterConfig) -> np.ndarray:
    """(N,) group of every behaviour: equal-width bins over the engagement code's range."""
    log = ds.log
    if cfg.engagement_feature is None:
        return np.zeros(log.n_behaviours, dtype=np.int64)
    if cfg.engagement_feature not in log.cross_names:
        raise ValueError(
            f"engagement_feature {cfg.engagement_feature!r} is not a cross feature of "
            f"{ds.name!r}; known: {', '.join(log.cross_names)} (or None for no grouping)"
        )
    j = log.cross_names.index(cfg.engagement_feature)
    code = log.cross[:, j].astype(np.int64)
    return code * cfg.engagement_groups // log.cross_vocab[j]


# ------------------------------------------------------------------------------ k-means


def n_parts(counts: np.ndarray, exponent: float) -> np.ndarray:
    """delta = max(2, floor(n ** exponent)) parts for a set of n points (n >= 2)."""
    return np.maximum(2, np.floor(counts.astype(np.float64) ** exponent)).astype(np.int64)


def pad_sets(x: np.ndarray, set_of: np.ndarray, n_sets: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, nmax, d) points of each set in log order, zero-padded, and the (n,) slot of each
    point in its set: the batched layout in which all sets are solved at once."""
    order = np.argsort(set_of, kind="stable")
    counts = np.bincount(set_of, minlength=n_sets)
    starts = np.cumsum(counts) - counts
    slot = np.empty(len(x), dtype=np.int64)
    slot[order] = np.arange(len(x)) - starts[set_of[order]]
    padded = np.zeros((n_sets, int(counts.max()), x.shape[1]), dtype=x.dtype)
    padded[set_of, slot] = x
    return padded, slot


def sq_dist(p_t: np.ndarray, sq_norm: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(S, k, nmax) squared distances from (S, k, d) centres to the points, given the points
    transposed (S, d, nmax) and their squared norms (S, nmax): one batched matrix product."""
    dist = sq_norm[:, None, :] + (centres**2).sum(-1)[:, :, None] - 2 * (centres @ p_t)
    return np.maximum(dist, 0)


def kmeans_pp(
    p: np.ndarray, p_t: np.ndarray, counts: np.ndarray, k_max: int, rng: np.random.Generator
) -> np.ndarray:
    """(S, k_max, d) k-means++ seeds per set: the first uniformly, each next one with
    probability proportional to the squared distance to the nearest seed so far."""
    S, nmax, _ = p.shape
    rows = np.arange(S)
    valid = np.arange(nmax)[None, :] < counts[:, None]
    sq_norm = (p**2).sum(-1)
    seeds = np.zeros((S, k_max, p.shape[2]), dtype=p.dtype)
    pick = np.minimum((rng.random(S) * counts).astype(np.int64), counts - 1)
    d2 = np.full((S, nmax), np.inf, dtype=p.dtype)
    for j in range(k_max):
        seeds[:, j] = p[rows, pick]
        d2 = np.minimum(d2, sq_dist(p_t, sq_norm, seeds[:, j : j + 1])[:, 0]) * valid
        cum = np.cumsum(d2, axis=1, dtype=np.float64)
        u = rng.random(S) * cum[:, -1]
        pick = np.minimum((cum <= u[:, None]).sum(1), counts - 1)
    return seeds


def nearest(p_t: np.ndarray, centres: np.ndarray, used: np.ndarray) -> np.ndarray:
    """(S, nmax) nearest centre of every point; ``used`` (S, k_max) masks a set's spare
    centres. |p|^2 is the same for every centre, so it is left out; the argmin over the few
    centres is a loop of comparisons over whole arrays (faster than argmin on a short axis)."""
    score = (-2 * centres) @ p_t  # (S, k_max, nmax)
    score += np.where(used, (centres**2).sum(-1), np.inf)[:, :, None]
    best, label = score[:, 0], np.zeros(score[:, 0].shape, dtype=np.int64)
    for j in range(1, score.shape[1]):
        closer = score[:, j] < best
        best = np.minimum(best, score[:, j])
        label[closer] = j
    return label


def mean_of_members(
    p: np.ndarray, valid: np.ndarray, label: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """Centres moved to their members' mean; a centre left without members stays put."""
    k = np.arange(centres.shape[1])[None, :, None]
    onehot = ((label[:, None, :] == k) & valid[:, None, :]).astype(p.dtype)  # (S, k, nmax)
    count = onehot.sum(2)[..., None]
    return np.where(count > 0, (onehot @ p) / np.maximum(count, 1), centres)


def kmeans_sets(
    p: np.ndarray, counts: np.ndarray, cfg: ClusterConfig, rng: np.random.Generator
) -> np.ndarray:
    """(S, nmax) part of every point of S padded sets, each set split into its own delta
    parts; a set whose points all land in one part is split in halves by position instead."""
    k = n_parts(counts, cfg.split_exponent)
    used = np.arange(k.max())[None, :] < k[:, None]
    valid = np.arange(p.shape[1])[None, :] < counts[:, None]
    p_t = np.ascontiguousarray(p.transpose(0, 2, 1))
    centres = kmeans_pp(p, p_t, counts, int(k.max()), rng)
    label = lloyd(p, p_t, valid, used, centres, cfg.kmeans_iters)
    return halves_if_degenerate(label, valid, counts)


def lloyd(
    p: np.ndarray,
    p_t: np.ndarray,
    valid: np.ndarray,
    used: np.ndarray,
    centres: np.ndarray,
    iters: int,
) -> np.ndarray:
    """(S, nmax) labels after at most ``iters`` Lloyd iterations (centres to their members' mean,
    points to the nearest centre) after the first assignment, each set stopping once its
    assignment no longer changes.

    Iterating a converged set again changes nothing (same labels, same means), so the loop works
    on all sets and only drops the converged ones from its working copies when they are half of
    them: a few slow sets do not keep the whole batch iterating, and the result is the same."""
    label = nearest(p_t, centres, used)
    rows = np.arange(len(p))  # sets in the working copies
    moving = np.ones(len(p), dtype=bool)
    work = (p, p_t, valid, used)
    for _ in range(iters):
        if not moving.any():
            break
        if moving.sum() <= len(rows) // 2:
            rows, work, moving = rows[moving], tuple(a[moving] for a in work), moving[moving]
        wp, wp_t, wvalid, wused = work
        centres[rows] = mean_of_members(wp, wvalid, label[rows], centres[rows])
        new = nearest(wp_t, centres[rows], wused)
        moving = ((new != label[rows]) & wvalid).any(1)
        label[rows] = new
    return label


def halves_if_degenerate(label: np.ndarray, valid: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The guard of the recursion: a set whose valid points share one label (e.g. identical
    keys) is cut into an older and a newer half, so every split makes progress."""
    first = label[:, :1]
    one_part = (~valid | (label == first)).all(1)
    halves = (np.arange(label.shape[1])[None, :] >= (counts // 2)[:, None]).astype(label.dtype)
    return np.where(one_part[:, None], halves, label)


def split_sets(
    x: np.ndarray, set_of: np.ndarray, cfg: ClusterConfig, rng: np.random.Generator
) -> np.ndarray:
    """(n,) part (in [0, k_max)) of every point; sets are batched by size class (powers of
    two) so that padding costs at most a factor of two."""
    counts = np.bincount(set_of)
    size_class = np.ceil(np.log2(counts)).astype(np.int64)
    part = np.empty(len(x), dtype=np.int64)
    for c in np.unique(size_class):
        sets = np.flatnonzero(size_class == c)
        local = np.full(len(counts), -1)
        local[sets] = np.arange(len(sets))
        pts = np.flatnonzero(local[set_of] >= 0)
        padded, slot = pad_sets(x[pts], local[set_of[pts]], len(sets))
        label = kmeans_sets(padded, counts[sets], cfg, rng)
        part[pts] = label[local[set_of[pts]], slot]
    return part


def cluster_points(
    x: np.ndarray, group: np.ndarray, cfg: ClusterConfig, rng: np.random.Generator
) -> np.ndarray:
    """(n,) cluster id of every point: recursive k-means within each group, one depth of the
    recursion at a time for all sets together. Every point gets exactly one id, no cluster
    exceeds ``cfg.cap`` and no cluster mixes groups."""
    label = np.full(len(x), -1, dtype=np.int64)
    open_pts = np.arange(len(x))
    current = group.astype(np.int64)
    next_id = 0
    while len(open_pts):
        sets, set_of, counts = np.unique(current, return_inverse=True, return_counts=True)
        small = counts <= cfg.cap
        done = small[set_of]
        ids = np.cumsum(small) - 1 + next_id
        label[open_pts[done]] = ids[set_of[done]]
        next_id += int(small.sum())
        open_pts, big_of = open_pts[~done], set_of[~done]
        _, big_of = np.unique(big_of, return_inverse=True)
        part = split_sets(x[open_pts], big_of, cfg, rng)
        current = big_of * (int(part.max(initial=0)) + 1) + part
    return label


# ------------------------------------------------------------------------------ virtual items


def order_by_last(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clusters renumbered by their most recent member (oldest first) and that member's index:
    the log is sorted by time, so this is the virtual items' time order."""
    n_clusters = int(label.max()) + 1
    last = np.zeros(n_clusters, dtype=np.int64)
    np.maximum.at(last, label, np.arange(len(label)))
    rank = np.empty(n_clusters, dtype=np.int64)
    rank[np.argsort(last)] = np.arange(n_clusters)
    return rank[label], np.sort(last)


def representatives(x: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per cluster (ids 0..C-1), the index of the member nearest the members' mean key;
    ties (identical keys) go to the most recent member."""
    order = np.argsort(label, kind="stable")  # by cluster, oldest member first
    xs, ls = x[order].astype(np.float64), label[order]
    count = np.bincount(label)
    starts = np.cumsum(count) - count
    centre = np.add.reduceat(xs, starts, axis=0) / count[:, None]
    dist = ((xs - centre[ls]) ** 2).sum(1)
    nearest_one = dist == np.minimum.reduceat(dist, starts)[ls]
    return np.maximum.reduceat(np.where(nearest_one, order, -1), starts)  # the most recent


def cluster_user(
    x: np.ndarray, group: np.ndarray, cfg: ClusterConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One user's complete blocks: (n,) cluster ids in time order, plus per cluster the local
    index of the representative, of the most recent member, and the size."""
    block_of = np.arange(len(x)) // cfg.block
    label = cluster_points(x, block_of * cfg.engagement_groups + group, cfg, rng)
    label, last = order_by_last(label)
    return label, representatives(x, label), last, np.bincount(label)


def compress_log(
    ds: Dataset, item_keys: np.ndarray, cfg: ClusterConfig | None = None, progress: bool = True
) -> CompressedLog:
    """Cluster every user's complete blocks (see the module docstring) into virtual items.

    ``item_keys`` (n_items + 1, d) are the vectors k-means runs on, typically the model's
    current K_h or item embeddings; row 0 (padding) is never read.
    """
    cfg = ClusterConfig() if cfg is None else cfg
    log = ds.log
    if log.n_behaviours == 0:
        raise ValueError(f"compress_log: the log of {ds.name!r} holds no behaviours")
    keys = check_item_keys(item_keys, ds.items.n_items, cfg.normalize)
    group = engagement_group(ds, cfg)
    cluster_of = np.full(log.n_behaviours, -1, dtype=np.int64)
    seconds = np.zeros(log.n_users)
    n_blocks = np.diff(log.user_ptr) // cfg.block
    block_ends, reps, lasts, sizes = [], [], [], []
    n_done = 0  # clusters of earlier users
    for u in tqdm(range(log.n_users), desc="clustering", disable=not progress):
        if not n_blocks[u]:
            continue
        t0 = time.perf_counter()
        lo = int(log.user_ptr[u])
        hi = lo + int(n_blocks[u]) * cfg.block
        rng = np.random.default_rng((cfg.seed, u))
        label, rep, last, size = cluster_user(keys[log.item[lo:hi]], group[lo:hi], cfg, rng)
        cluster_of[lo:hi] = label + n_done
        block_ends.append(label[cfg.block - 1 :: cfg.block] + 1 + n_done)  # never span blocks
        n_done += len(size)
        reps.append(rep + lo)
        lasts.append(last + lo)
        sizes.append(size)
        seconds[u] = time.perf_counter() - t0
    rep, last, size, ends = (np.concatenate([np.zeros(0, np.int64), *a])
                             for a in (reps, lasts, sizes, block_ends))  # fmt: skip
    return CompressedLog(
        config=cfg,
        block_ptr=np.r_[0, np.cumsum(n_blocks)].astype(np.int64),
        cluster_ptr=np.r_[0, ends].astype(np.int64),
        item=log.item[rep].astype(np.int64),
        size=size.astype(np.int64),
        cross=log.cross[rep],
        time=log.time[last].astype(np.int64),
        rep=rep,
        last=last,
        cluster_of=cluster_of,
        seconds=seconds,
    )


# ------------------------------------------------------------------------------ batches


class LifecycleSampleBuilder(SampleBuilder):
    """``SampleBuilder`` over compressed histories: the same ``build``/``batches`` interface,
    a ``Batch`` whose long history is a request's raw recent behaviours followed by the virtual
    items of its earlier blocks, most recent first, with ``hist_size`` set.

    Short window: slots ``[:short_len]`` must stay the raw last behaviours. A request therefore
    sees a block as clusters only once the block ends at least ``short_len`` behaviours before
    its history does: with n visible behaviours, the first k = max(0, n - short_len) // block
    blocks are clusters and everything after them, between short_len and short_len + block - 1
    behaviours, is raw. Nothing is shown twice, the short window is raw, and the clusters end
    even earlier than leak-freedom needs. With short_len = 0 this is exactly "every complete
    block as clusters". The raw part takes up to block + short_len - 1 slots of the long window,
    so ``block`` should be well below ``long_len``.
    """

    def __init__(
        self,
        ds: Dataset,
        compressed: CompressedLog,
        long_len: int,
        short_len: int = 50,
        time_gap: bool = True,
    ):
        super().__init__(ds, long_len, short_len, time_gap)
        if (
            len(compressed.cluster_of) != ds.log.n_behaviours
            or len(compressed.block_ptr) != ds.n_users + 1
        ):
            raise ValueError(
                f"compressed log ({len(compressed.cluster_of)} behaviours, "
                f"{len(compressed.block_ptr) - 1} users) does not belong to {ds.name!r} "
                f"({ds.log.n_behaviours} behaviours, {ds.n_users} users)"
            )
        self.compressed = compressed

    def spans(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per history row: the log index where its raw part starts, and the cluster range
        ``[c_lo, c_hi)`` of the blocks it sees as clusters."""
        s, comp = self.ds.samples, self.compressed
        user, end = s.user[rows], s.hist_end[rows]
        start = self.ds.log.user_ptr[user]
        block = comp.config.block
        k = np.maximum(end - start - self.short_len, 0) // block
        first_block = comp.block_ptr[user]
        return start + k * block, comp.cluster_ptr[first_block], comp.cluster_ptr[first_block + k]

    def slot_sources(self, sample_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(R, W) per slot of ``build(sample_idx)``'s rows: the log index of the behaviour shown
        (a virtual item's representative) and the cluster id (-1 for raw behaviours); both -1
        at padding. With ``compressed.members`` this names every behaviour behind a slot."""
        _, _, rows = self.request_rows(sample_idx)
        comp = self.compressed
        pos = np.full((len(rows), self.width), -1, dtype=np.int64)
        cluster = np.full_like(pos, -1)
        for r, (raw, clusters) in enumerate(self.row_ranges(rows)):
            n_raw = len(raw)
            pos[r, :n_raw] = raw
            pos[r, n_raw : n_raw + len(clusters)] = comp.rep[clusters]
            cluster[r, n_raw : n_raw + len(clusters)] = clusters
        return pos, cluster

    def row_ranges(self, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row, most recent first and cut to the window: the log indices shown raw and the
        cluster ids shown as virtual items."""
        raw_lo, c_lo, c_hi = self.spans(rows)
        out = []
        for lo, e, a, b in zip(raw_lo, self.ds.samples.hist_end[rows], c_lo, c_hi, strict=True):
            raw = np.arange(max(lo, e - self.width), e)[::-1]
            out.append((raw, np.arange(max(a, b - (self.width - len(raw))), b)[::-1]))
        return out

    def build(self, sample_idx: np.ndarray) -> Batch:
        """Batch for the given samples; slots: raw behaviours, then virtual items."""
        sample_idx, req, rows = self.request_rows(sample_idx)
        log, comp = self.ds.log, self.compressed
        R, W, J0 = len(rows), self.width, log.cross.shape[1]
        item = np.zeros((R, W), dtype=np.int64)
        cross = np.zeros((R, W, J0 + self.time_gap), dtype=np.int64)
        size = np.zeros((R, W), dtype=np.int64)
        when = np.zeros((R, W), dtype=np.int64)
        for r, (raw, clusters) in enumerate(self.row_ranges(rows)):
            n_raw, n = len(raw), len(raw) + len(clusters)
            item[r, :n] = np.r_[log.item[raw], comp.item[clusters]]
            cross[r, :n, :J0] = np.r_[log.cross[raw], comp.cross[clusters]]
            size[r, :n] = np.r_[np.ones(n_raw, dtype=np.int64), comp.size[clusters]]
            when[r, :n] = np.r_[log.time[raw], comp.time[clusters]]
        n_valid = (size > 0).sum(1)
        if self.time_gap:
            gap = time_gap_bucket(self.ds.samples.time[rows][:, None] - when)
            cross[..., J0] = np.where(size > 0, gap, 0)
        return self.make_batch(sample_idx, req, rows, item, cross, n_valid, size)
