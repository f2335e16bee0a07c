"""One data schema for every source (synthetic, MovieLens, users' own logs).

A data set is three columnar tables plus metadata, all held as numpy arrays so that a history
of 10^4 behaviours per user costs a few bytes per behaviour and batches gather what they need
(never a B x L feature tensor built on the host by pandas):

* ``ItemTable``  — item-inherent features, indexed by item id. Id 0 is the padding item.
* ``BehaviourLog`` — every user's behaviours in CSR form (``user_ptr``), sorted by (user, time)
  with a stable tie-break, plus the request-independent user–item cross features as integer codes.
* ``Samples`` — the CTR samples (user, target item, label, request time, split) with
  ``hist_end``: the absolute index in the log where the user's visible history ends. The history
  of a sample is ``log[user_ptr[u] : hist_end]``; everything at or after ``hist_end`` is the future.

The time gap between a behaviour and its request is a cross feature too, but it depends on the
request, so it is computed when a batch is built (``batching.time_gap_bucket``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPLITS = ("train", "valid", "test")
PAD_ITEM = 0


class SchemaError(ValueError):
    """A data set does not match the schema; the message names the table, column and problem."""


def _check_int_array(table: str, name: str, arr: Any, length: int | None = None) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise SchemaError(f"{table}.{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.ndim != 1:
        raise SchemaError(f"{table}.{name}: expected a 1-d array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise SchemaError(f"{table}.{name}: expected integers, got dtype {arr.dtype}")
    if length is not None and len(arr) != length:
        raise SchemaError(f"{table}.{name}: expected length {length}, got {len(arr)}")
    return arr


def _check_codes(table: str, name: str, arr: np.ndarray, vocab: int) -> None:
    if len(arr) == 0:
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= vocab:
        bad = int(np.flatnonzero((arr < 0) | (arr >= vocab))[0])
        raise SchemaError(
            f"{table}.{name}: code {int(arr[bad])} at row {bad} is outside the vocabulary "
            f"[0, {vocab})"
        )


@dataclass
class ItemTable:
    """Item-inherent features (paper's K_h): they depend on the item only, so they can be cached.

    ``features[name]`` has length ``n_items + 1``; row 0 is the padding item and holds code 0.
    ``vocab[name]`` is the number of codes of that feature. A feature named ``category`` is
    required: SIM Hard retrieves by it.
    """

    n_items: int
    features: dict[str, np.ndarray]
    vocab: dict[str, int]
    names: list[str] | None = None  # optional human-readable item names (e.g. movie titles)

    def validate(self) -> None:
        if self.n_items <= 0:
            raise SchemaError(f"items: n_items must be positive, got {self.n_items}")
        if "category" not in self.features:
            raise SchemaError("items: the feature 'category' is required (SIM Hard uses it)")
        for name, arr in self.features.items():
            _check_int_array("items", name, arr, self.n_items + 1)
            if name not in self.vocab:
                raise SchemaError(f"items.{name}: no vocabulary size given")
            _check_codes("items", name, arr, self.vocab[name])
            if arr[PAD_ITEM] != 0:
                raise SchemaError(f"items.{name}: row 0 is the padding item and must hold code 0")


@dataclass
class BehaviourLog:
    """All behaviours, grouped by user (CSR) and sorted by time within a user.

    ``cross`` (N, J) holds the request-independent cross features as integer codes, e.g. the
    play-time ratio bucket or an interaction flag; ``cross_vocab[j]`` is the size of column j.
    """

    user_ptr: np.ndarray  # (n_users + 1,) int64 offsets into the arrays below
    item: np.ndarray  # (N,) int32 item ids, >= 1
    time: np.ndarray  # (N,) int64 seconds
    cross: np.ndarray  # (N, J) int16/int32 codes
    cross_names: list[str]
    cross_vocab: list[int]

    @property
    def n_users(self) -> int:
        return len(self.user_ptr) - 1

    @property
    def n_behaviours(self) -> int:
        return len(self.item)

    def lengths(self) -> np.ndarray:
        return np.diff(self.user_ptr)

    def validate(self, n_items: int) -> None:
        ptr = _check_int_array("behaviours", "user_ptr", self.user_ptr)
        if len(ptr) < 2 or ptr[0] != 0 or np.any(np.diff(ptr) < 0):
            raise SchemaError("behaviours.user_ptr: must start at 0 and be non-decreasing")
        n = int(ptr[-1])
        _check_int_array("behaviours", "item", self.item, n)
        _check_int_array("behaviours", "time", self.time, n)
        if n and (self.item.min() < 1 or self.item.max() > n_items):
            bad = int(np.flatnonzero((self.item < 1) | (self.item > n_items))[0])
            raise SchemaError(
                f"behaviours.item: item id {int(self.item[bad])} at row {bad} is not in "
                f"[1, {n_items}] (0 is padding)"
            )
        if self.cross.ndim != 2 or len(self.cross) != n:
            raise SchemaError(f"behaviours.cross: expected shape ({n}, J), got {self.cross.shape}")
        if not np.issubdtype(self.cross.dtype, np.integer):
            raise SchemaError(f"behaviours.cross: expected integer codes, got {self.cross.dtype}")
        if len(self.cross_names) != self.cross.shape[1] or len(self.cross_vocab) != len(
            self.cross_names
        ):
            raise SchemaError("behaviours.cross: names, vocabularies and columns disagree")
        for j, name in enumerate(self.cross_names):
            _check_codes("behaviours", f"cross[{name}]", self.cross[:, j], self.cross_vocab[j])
        # Sorted by time within each user: the history before a request is a prefix.
        if n > 1:
            step = np.diff(self.time)
            same_user = np.ones(n - 1, dtype=bool)
            same_user[ptr[1:-1][(ptr[1:-1] > 0) & (ptr[1:-1] < n)] - 1] = False
            bad = np.flatnonzero(same_user & (step < 0))
            if len(bad):
                u = int(np.searchsorted(ptr, bad[0], side="right") - 1)
                raise SchemaError(
                    f"behaviours.time: user {u} is not sorted by time at row {int(bad[0]) + 1}"
                )


@dataclass
class Samples:
    """CTR samples. Several samples may share one request (same user and time), e.g. candidates
    scored together; ``request`` numbers them so a batch gathers each history once."""

    user: np.ndarray  # (S,) int
    item: np.ndarray  # (S,) target item id
    label: np.ndarray  # (S,) float32 0/1
    time: np.ndarray  # (S,) int64 request time
    hist_end: np.ndarray  # (S,) int64 exclusive end of the visible history in the log
    split: np.ndarray  # (S,) int8: 0 train, 1 valid, 2 test
    request: np.ndarray  # (S,) int64 request id; equal ids share user, time and hist_end

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, idx: np.ndarray) -> Samples:
        return Samples(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

    def validate(self, n_users: int, n_items: int, log: BehaviourLog) -> None:
        s = len(self.user)
        if s == 0:
            raise SchemaError("samples: no samples")
        for name in ("user", "item", "time", "hist_end", "split", "request"):
            _check_int_array("samples", name, getattr(self, name), s)
        if len(self.label) != s:
            raise SchemaError(f"samples.label: expected length {s}, got {len(self.label)}")
        bad = np.flatnonzero(~np.isin(self.label, (0, 1)))
        if len(bad):
            raise SchemaError(
                f"samples.label: labels must be 0 or 1, got {float(self.label[bad[0]]):g} at row "
                f"{int(bad[0])}"
            )
        _check_codes("samples", "user", self.user, n_users)
        bad = np.flatnonzero((self.item < 1) | (self.item > n_items))
        if len(bad):
            raise SchemaError(
                f"samples.item: target id {int(self.item[bad[0]])} at row {int(bad[0])} is not "
                f"in [1, {n_items}]"
            )
        _check_codes("samples", "split", self.split, len(SPLITS))
        start = log.user_ptr[self.user]
        stop = log.user_ptr[self.user + 1]
        bad = np.flatnonzero((self.hist_end < start) | (self.hist_end > stop))
        if len(bad):
            raise SchemaError(
                f"samples.hist_end: row {int(bad[0])} points outside its user's behaviours"
            )
        # No leakage: every visible behaviour happened no later than the request.
        last = self.hist_end - 1
        has = self.hist_end > start
        late = np.flatnonzero(has & (log.time[np.maximum(last, 0)] > self.time))
        if len(late):
            raise SchemaError(
                f"samples: row {int(late[0])} sees a behaviour after its request time (leakage)"
            )


@dataclass
class Dataset:
    """A behaviour data set in the shared schema, with optional ground truth (synthetic only)."""

    name: str
    items: ItemTable
    log: BehaviourLog
    samples: Samples
    user_features: dict[str, np.ndarray] = field(default_factory=dict)  # (n_users,) codes
    user_vocab: dict[str, int] = field(default_factory=dict)
    # Ground truth, when known: the true click probability per sample, and per sample the
    # absolute log indices of the truly relevant behaviours (CSR: relevant_ptr, relevant_idx).
    p_true: np.ndarray | None = None
    relevant_ptr: np.ndarray | None = None
    relevant_idx: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.log.n_users

    def validate(self) -> Dataset:
        self.items.validate()
        self.log.validate(self.items.n_items)
        self.samples.validate(self.n_users, self.items.n_items, self.log)
        for name, arr in self.user_features.items():
            _check_int_array("users", name, arr, self.n_users)
            if name not in self.user_vocab:
                raise SchemaError(f"users.{name}: no vocabulary size given")
            _check_codes("users", name, arr, self.user_vocab[name])
        if self.p_true is not None and len(self.p_true) != len(self.samples):
            raise SchemaError("p_true: one probability per sample expected")
        if (self.relevant_ptr is None) != (self.relevant_idx is None):
            raise SchemaError("relevant_ptr and relevant_idx come together")
        return self

    def split_indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return np.flatnonzero(self.samples.split == SPLITS.index(split))

    def summary(self) -> dict[str, Any]:
        lengths = self.log.lengths()
        q = np.quantile(lengths, [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]) if len(lengths) else []
        return {
            "name": self.name,
            "n_users": int(self.n_users),
            "n_items": int(self.items.n_items),
            "n_behaviours": int(self.log.n_behaviours),
            "n_samples": int(len(self.samples)),
            "label_rate": float(self.samples.label.mean()),
            "history_length_quantiles": {
                k: float(v)
                for k, v in zip(("min", "q25", "median", "q75", "q90", "max"), q, strict=False)
            },
            "split_sizes": {s: int((self.samples.split == i).sum()) for i, s in enumerate(SPLITS)},
            "cross_features": list(self.log.cross_names),
            "item_features": list(self.items.features),
        }
