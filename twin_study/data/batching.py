"""Sample builder: turns samples into batches of long/short histories with masks.

Layout of a batch (R requests, B samples, W = max(long_len, short_len) history slots):

* histories are laid out **most recent first**: slot 0 is the last behaviour before the request,
  slot i the (i+1)-th most recent; padding fills the tail. The long window is slots
  ``[:long_len]``, the short window slots ``[:short_len]``, and the valid part of both is a prefix,
  so one length per request gives both masks (no off-by-one between windows).
* samples of one request share a history row (``req``), so a request with several candidates
  gathers its 10^4 behaviours once.
* cross features per slot: the stored request-independent codes plus the time gap to the request
  (a log2-hour bucket), which can only be computed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import torch

from .schema import Dataset

TIME_GAP_BUCKETS = 16  # log2(hours + 1) buckets: 0 = within the hour ... 15 = over ~3.7 years


# A gap of g seconds falls in bucket b when 3600 * (2^b - 1) <= g: exact integer edges, the
# same buckets as floor(log2(hours + 1)) without a floating-point log per slot.
_GAP_EDGES = 3600 * (2 ** np.arange(1, TIME_GAP_BUCKETS, dtype=np.int64) - 1)


def time_gap_bucket(gap_seconds: np.ndarray) -> np.ndarray:
    """Bucket of the time between a behaviour and its request, log2-scaled in hours:
    min(floor(log2(hours + 1)), 15); negative gaps count as 0."""
    gap = np.asarray(gap_seconds)
    return np.searchsorted(_GAP_EDGES, gap, side="right").astype(np.int64)


def cross_schema(ds: Dataset) -> tuple[list[str], list[int]]:
    """Names and vocabulary sizes of the cross features a batch carries."""
    return [*ds.log.cross_names, "time_gap"], [*ds.log.cross_vocab, TIME_GAP_BUCKETS]


@dataclass
class Batch:
    """Tensors of one batch. Shapes: B samples, R requests, W history slots, J cross features."""

    sample_idx: torch.Tensor  # (B,) indices into ds.samples
    user: torch.Tensor  # (B,) user ids
    target: torch.Tensor  # (B,) target item ids
    label: torch.Tensor  # (B,) float 0/1
    req: torch.Tensor  # (B,) row of the sample's request in the history tensors
    hist_item: torch.Tensor  # (R, W) item ids, most recent first, 0 = padding
    hist_cross: torch.Tensor  # (R, W, J) cross-feature codes (0 at padding)
    hist_len: torch.Tensor  # (R,) number of valid slots (<= W)
    hist_end: torch.Tensor  # (R,) log index one past the request's last behaviour
    # (R, W) int64 behaviours behind each slot, 0 at padding: set only by builders whose slots
    # may stand for several behaviours (TWIN-V2's virtual items, data/lifecycle.py); None means
    # every slot is one raw behaviour.
    hist_size: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        def move(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(device)

        return Batch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    @property
    def width(self) -> int:
        return self.hist_item.shape[1]

    @property
    def hist_pos(self) -> torch.Tensor:
        """(R, W) absolute log index of each slot, -1 = padding (built on demand: only the
        analyses need it). Only for raw histories: the slots of a compressed batch are not
        consecutive log positions (see ``LifecycleSampleBuilder.slot_sources``)."""
        if self.hist_size is not None:
            raise ValueError(
                "hist_pos: this batch holds virtual items (hist_size is set), whose slots are "
                "not consecutive log positions; use LifecycleSampleBuilder.slot_sources"
            )
        slot = torch.arange(self.width, device=self.hist_end.device)
        return torch.where(self.mask(), self.hist_end[:, None] - 1 - slot, -1)

    def mask(self, length: int | None = None) -> torch.Tensor:
        """(R, length) True where a slot holds a real behaviour."""
        length = self.width if length is None else length
        return torch.arange(length, device=self.hist_len.device)[None, :] < self.hist_len[:, None]


class SampleBuilder:
    """Builds ``Batch`` objects from a data set; ``long_len`` is the paper's L."""

    def __init__(
        self,
        ds: Dataset,
        long_len: int,
        short_len: int = 50,
        time_gap: bool = True,
        impl: str = "fast",
    ):
        if long_len < 1 or short_len < 0:
            raise ValueError(
                f"long_len must be >= 1 and short_len >= 0, got {long_len}, {short_len}"
            )
        if impl not in ("fast", "reference"):
            raise ValueError(f"unknown impl {impl!r}; choose 'fast' or 'reference'")
        self.impl = impl  # "reference": the plain fancy-index gather (tests, benchmarks)
        self.ds = ds
        self.long_len = long_len
        self.short_len = short_len
        self.width = max(long_len, short_len)
        self.time_gap = time_gap
        s = ds.samples
        self._start = ds.log.user_ptr[s.user]

    def build(self, sample_idx: np.ndarray) -> Batch:
        """Batch for the given samples (in this order); samples of a request share a row."""
        sample_idx, req, rows = self.request_rows(sample_idx)
        end = self.ds.samples.hist_end[rows]
        n_valid = np.minimum(end - self._start[rows], self.width)  # (R,)
        if self.impl == "reference":
            item, cross = self._gather_reference(rows, end, n_valid)
        else:
            item, cross = self._gather_slices(rows, end, n_valid)
        return self.make_batch(sample_idx, req, rows, item, cross, n_valid)

    def request_rows(self, sample_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples (int64), the history row of each (its request), and one representative
        sample per row: samples of one request share a row."""
        sample_idx = np.asarray(sample_idx, dtype=np.int64)
        if sample_idx.size == 0:
            raise ValueError("cannot build a batch from zero samples")
        _, first, req = np.unique(
            self.ds.samples.request[sample_idx], return_index=True, return_inverse=True
        )
        return sample_idx, req.astype(np.int64).reshape(-1), sample_idx[first]

    def make_batch(
        self,
        sample_idx: np.ndarray,
        req: np.ndarray,
        rows: np.ndarray,
        item: np.ndarray,
        cross: np.ndarray,
        n_valid: np.ndarray,
        size: np.ndarray | None = None,
    ) -> Batch:
        """The ``Batch`` of gathered history rows (``size``: behaviours per slot, if not 1)."""
        s = self.ds.samples
        return Batch(
            sample_idx=torch.from_numpy(sample_idx),
            user=torch.from_numpy(s.user[sample_idx].astype(np.int64)),
            target=torch.from_numpy(s.item[sample_idx].astype(np.int64)),
            label=torch.from_numpy(s.label[sample_idx].astype(np.float32)),
            req=torch.from_numpy(req),
            hist_item=torch.from_numpy(item),
            hist_cross=torch.from_numpy(cross),
            hist_len=torch.from_numpy(n_valid.astype(np.int64)),
            hist_end=torch.from_numpy(s.hist_end[rows].astype(np.int64)),
            hist_size=None if size is None else torch.from_numpy(size),
        )

    def _gather_reference(self, rows: np.ndarray, end: np.ndarray, n_valid: np.ndarray):
        """(R, W) items and (R, W, J) cross codes by fancy-indexing every slot's log position."""
        s, log = self.ds.samples, self.ds.log
        slot = np.arange(self.width)
        pos = end[:, None] - 1 - slot[None, :]  # (R, W) most recent first
        valid = slot[None, :] < n_valid[:, None]
        safe = np.where(valid, pos, 0)
        item = np.where(valid, log.item[safe], 0).astype(np.int64)
        cross = log.cross[safe].astype(np.int64)  # (R, W, J0)
        if self.time_gap:
            gap = time_gap_bucket(s.time[rows][:, None] - log.time[safe])
            cross = np.concatenate([cross, gap[..., None]], axis=-1)
        cross[~valid] = 0
        return item, cross

    def _gather_slices(self, rows: np.ndarray, end: np.ndarray, n_valid: np.ndarray):
        """The same arrays, row by row: each row is a reversed contiguous slice of the user's
        log (most recent first), copied as a slice rather than fancy-indexed slot by slot
        (several times faster at L = 10^4)."""
        s, log = self.ds.samples, self.ds.log
        R, W = len(rows), self.width
        J0 = log.cross.shape[1]
        item = np.zeros((R, W), dtype=np.int64)
        cross = np.zeros((R, W, J0 + self.time_gap), dtype=np.int64)
        for r, (e, n) in enumerate(zip(end.tolist(), n_valid.tolist(), strict=True)):
            if n == 0:
                continue
            lo = e - n
            item[r, :n] = log.item[lo:e][::-1]
            cross[r, :n, :J0] = log.cross[lo:e][::-1]
            if self.time_gap:
                cross[r, :n, J0] = time_gap_bucket(s.time[rows[r]] - log.time[lo:e][::-1])
        return item, cross

    def batches(
        self,
        sample_idx: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        group_requests: bool = True,
    ) -> Iterator[Batch]:
        """Iterate over batches of about ``batch_size`` samples.

        With ``group_requests`` the samples of one request stay together (history gathered once);
        shuffling then permutes requests, not samples.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        sample_idx = np.asarray(sample_idx, dtype=np.int64)
        rng = np.random.default_rng(seed)
        if group_requests:
            req = self.ds.samples.request[sample_idx]
            order = np.argsort(req, kind="stable")
            sample_idx = sample_idx[order]
            bounds = np.flatnonzero(np.diff(req[order])) + 1
            groups = np.split(sample_idx, bounds)
            if shuffle:
                groups = [groups[i] for i in rng.permutation(len(groups))]
            batch: list[np.ndarray] = []
            size = 0
            for g in groups:
                batch.append(g)
                size += len(g)
                if size >= batch_size:
                    yield self.build(np.concatenate(batch))
                    batch, size = [], 0
            if batch:
                yield self.build(np.concatenate(batch))
        else:
            if shuffle:
                sample_idx = sample_idx[rng.permutation(len(sample_idx))]
            for i in range(0, len(sample_idx), batch_size):
                yield self.build(sample_idx[i : i + batch_size])

    def n_batches(self, n_samples: int, batch_size: int) -> int:
        return -(-n_samples // batch_size)
