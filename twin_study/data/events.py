"""Shared assembly: sorted events -> Dataset, for users' logs and MovieLens alike; with the
train/valid/test splits and the feature codes (natural order, quantile buckets) both use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .schema import BehaviourLog, Dataset, ItemTable, Samples

SPLITS = ("global", "per_user")


def time_split(times: np.ndarray, quantiles: tuple[float, float]) -> np.ndarray:
    """0 train / 1 valid / 2 test by global request-time quantiles (ties stay together)."""
    q0, q1 = np.quantile(times, quantiles)
    return np.where(times <= q0, 0, np.where(times <= q1, 1, 2)).astype(np.int8)


def per_user_split(user: np.ndarray, quantiles: tuple[float, float]) -> np.ndarray:
    """0 train / 1 valid / 2 test by position in each user's own samples.

    ``user`` must be grouped (each user's samples contiguous, in time order), as
    ``events_to_dataset`` orders them. A user's last ``round((1 - q1) * n)`` samples (at
    least 1 when n >= 2) are test, the ``round((q1 - q0) * n)`` before them (at least 1 when
    n >= 3) valid, and at least one sample stays in train.
    """
    n = len(user)
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    counts = np.diff(np.r_[starts, n])
    if len(np.unique(user[starts])) != len(starts):
        raise ValueError("per_user_split: samples of a user are not contiguous")
    cnt = np.repeat(counts, counts)
    from_end = cnt - (np.arange(n) - np.repeat(starts, counts))  # 1 = the user's last sample
    q0, q1 = quantiles
    valid_floor = (cnt >= 3).astype(np.int64)  # one valid sample is kept room for
    n_test = np.where(cnt >= 2, np.maximum(1, np.rint((1 - q1) * cnt)), 0)
    n_test = np.minimum(n_test, cnt - 1 - valid_floor)
    n_valid = np.where(cnt >= 3, np.maximum(1, np.rint((q1 - q0) * cnt)), 0)
    n_valid = np.minimum(n_valid, cnt - 1 - n_test)
    split = np.where(from_end <= n_test, 2, np.where(from_end <= n_test + n_valid, 1, 0))
    return split.astype(np.int8)


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, float]:
    q = tuple(float(x) for x in quantiles)
    if len(q) != 2 or not 0 < q[0] < q[1] < 1:
        raise ValueError(f"split_quantiles must be 0 < train < valid < 1, got {quantiles}")
    return q  # type: ignore[return-value]


def events_to_dataset(
    name: str,
    *,
    user: np.ndarray,
    item: np.ndarray,
    time: np.ndarray,
    label: np.ndarray,
    cross: np.ndarray,
    cross_names: list[str],
    cross_vocab: list[int],
    items: ItemTable,
    n_users: int,
    min_history: int,
    split_quantiles: tuple[float, float],
    split: str = "global",
    tie: np.ndarray | None = None,
    time_rank: np.ndarray | None = None,
    in_history: np.ndarray | None = None,
    user_features: dict[str, np.ndarray] | None = None,
    user_vocab: dict[str, int] | None = None,
    meta: dict[str, Any] | None = None,
    p_true: np.ndarray | None = None,
) -> Dataset:
    """Sort events, build the behaviour log and one sample per labelled event.

    ``user`` 0-based, ``item`` 1-based, ``time`` seconds, ``label`` float (NaN = no label).
    Order: (user, time, ``time_rank``, item, ``tie``), stable, so equal keys keep the input
    order; ``time_rank`` puts some events first among those at the same time (impressions
    before behaviours, so a sample never sees its own click). The visible history of event i
    is the behaviours (``in_history``) strictly before i in that order, i.e. ``hist_end`` =
    i's own position among them; an event with a label and at least ``min_history`` visible
    behaviours is a sample. ``split``: ``"global"`` (``time_split``) or ``"per_user"``
    (``per_user_split``). ``p_true`` (optional, per event, NaN where unknown): the true click
    probability, kept for the samples; every sample must have one.
    """
    if min_history < 0:
        raise ValueError(f"min_history must be >= 0, got {min_history}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = len(user)
    keys = [item, time, user] if tie is None else [tie, item, time, user]
    if time_rank is not None:
        keys.insert(-2, time_rank)  # between item and time: (user, time, time_rank, item, tie)
    order = np.lexsort(keys)  # last key is the primary one; lexsort is stable
    user, item, time = user[order], item[order], time[order]
    label, cross = label[order], cross[order]
    hist = np.ones(n, dtype=bool) if in_history is None else in_history[order]
    counts = np.bincount(user[hist], minlength=n_users)
    user_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    # Behaviours strictly before each event (globally); rows are grouped by user, so this is the
    # absolute log index where the event's visible history ends.
    hist_end = np.cumsum(hist) - hist
    visible = hist_end - user_ptr[user]
    is_sample = ~np.isnan(label) & (visible >= min_history)
    if not is_sample.any():
        raise ValueError(
            f"{name}: no samples: no labelled event has at least min_history={min_history} "
            "earlier behaviours; lower min_history"
        )
    s_time = time[is_sample].astype(np.int64)
    s_user = user[is_sample].astype(np.int64)
    if split == "global":
        s_split = time_split(s_time, split_quantiles)
    else:
        s_split = per_user_split(s_user, split_quantiles)
    log = BehaviourLog(
        user_ptr=user_ptr,
        item=item[hist].astype(np.int32),
        time=time[hist].astype(np.int64),
        cross=cross[hist],
        cross_names=list(cross_names),
        cross_vocab=[int(v) for v in cross_vocab],
    )
    samples = Samples(
        user=s_user,
        item=item[is_sample].astype(np.int64),
        label=label[is_sample].astype(np.float32),
        time=s_time,
        hist_end=hist_end[is_sample].astype(np.int64),
        split=s_split,
        request=np.arange(int(is_sample.sum()), dtype=np.int64),
    )
    s_p_true = None
    if p_true is not None:
        s_p_true = np.asarray(p_true, dtype=np.float64)[order][is_sample]
        if not np.isfinite(s_p_true).all():
            raise ValueError(
                f"{name}: {int((~np.isfinite(s_p_true)).sum())} sample(s) have no p_true; "
                "a ground-truth column must be filled for every labelled row"
            )
    ds = Dataset(
        name=name,
        items=items,
        log=log,
        samples=samples,
        user_features=dict(user_features or {}),
        user_vocab=dict(user_vocab or {}),
        meta=dict(meta or {}),
        p_true=s_p_true,
    )
    return ds.validate()


def natural_codes(values: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Codes 1..K for the sorted distinct non-null values (numbers numerically), nulls -> K+1.

    Returns (codes, labels) where ``labels[c - 1]`` is the raw value of code c (and the last
    label is ``None`` when there are nulls).
    """
    codes0, uniq = pd.factorize(values, use_na_sentinel=True)  # -1 = null
    uniq = list(uniq)
    num = pd.to_numeric(pd.Series(uniq, dtype=object), errors="coerce")
    if len(uniq) and num.notna().all():
        perm = np.argsort(num.to_numpy(dtype=float), kind="stable")
    else:
        perm = np.array(sorted(range(len(uniq)), key=lambda i: str(uniq[i])), dtype=np.int64)
    rank = np.empty(len(uniq) + 1, dtype=np.int64)
    rank[perm] = np.arange(1, len(uniq) + 1)
    labels: list[Any] = [uniq[i] for i in perm]
    null = codes0 < 0
    rank[-1] = len(labels) + 1  # index -1: nulls get the code after the last value
    codes = rank[codes0]
    if null.any():
        labels.append(None)
    return codes, labels


def quantile_codes(values: pd.Series, n_buckets: int) -> tuple[np.ndarray, list[float], int]:
    """Quantile buckets 1..B (B <= n_buckets, equal edges merged), nulls -> B+1.

    Returns (codes, inner edges, vocabulary size including the padding code 0).
    """
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    null = np.isnan(x)
    edges = np.unique(np.quantile(x[~null], np.linspace(0, 1, n_buckets + 1)[1:-1]))
    codes = np.zeros(len(x), dtype=np.int64)
    codes[~null] = 1 + np.searchsorted(edges, x[~null], side="right")
    if null.any():
        codes[null] = len(edges) + 2
    return codes, edges.tolist(), len(edges) + 2 + int(null.any())
