"""Users' own behaviour logs (CSV, TSV or Parquet) loaded into the shared schema.

A log is one table with one row per behaviour, optionally with a second table of impressions
(the samples, with labels). ``UserLogSpec`` says which column is what::

    spec = UserLogSpec(
        user="user_id", item="video_id", time="time_ms", time_unit="ms", label="is_click",
        item_features={"category": "tag", "author": "author_id"},
        cross_features={"tab": "tab", "liked": "is_like", "play_time": "play_time_ms"},
    )
    ds = load_dataset("userlog", path="log.csv", spec=spec)        # or spec="spec.yaml" / a dict

Columns and how they are read:

* ``user``, ``item``: any raw ids. Users sorted by raw id become ``0..n_users-1``, items sorted by
  raw id become ``1..n_items`` (0 is the padding item).
* ``time``: unix time as numbers (``time_unit`` ``"s"``, ``"ms"``, ``"us"``, ``"ns"``) or ISO-8601
  datetime strings (``"iso"``; zone-less values are read as UTC). ``"auto"`` (default): strings are
  ISO, numbers are seconds unless their size says milliseconds (> 1e11) or finer. The schema
  stores whole seconds.
* ``label``: 0/1 (also ``true``/``false``), raw values translated by ``label_map`` (e.g. Taobao's
  behaviour type ``{"buy": 1, "cart": 1, "pv": 0, "fav": 0}``), or numbers cut at
  ``label_threshold`` (a rating >= 4 -> 1, else 0). A null label means the row is a behaviour
  only, never a sample. Any other value is an error naming its row.
* ``impressions``: a second file (path relative to the log's folder) whose rows are the
  samples: user, item, time and label, in columns named as in the log unless
  ``impression_columns`` renames them (``{"label": "clicked"}``). Impression rows never enter
  anyone's history, and the log's rows are then never samples (its label column, if it has
  one, only serves ``history="positive"``). An impression sees the behaviours strictly before
  its time, so the behaviour logged for the click it records (same time) is not visible to it.
  Item feature columns present in the impressions file describe items only seen there.
* ``item_features``: schema feature name -> column (a list means the same names). A feature
  named ``category`` is required (SIM Hard retrieves by it); map it to whatever column plays
  that role (a genre, a tag, a leaf category). Item features are inherent to the item: the value
  of an item's first row in time order is used, and ``meta["inconsistent_item_features"]``
  counts items whose rows disagree. ``item_table`` (+ ``item_table_key``) reads them from a
  second file joined on the item id instead (KuaiRand ships video features apart).
  ``multi_value_sep`` keeps the first token of list-valued cells (``"28,11"`` -> ``"28"``).
* ``cross_features``: name -> column, request-independent user-item features stored with each
  behaviour. Categorical columns become codes ``1..K`` (sorted raw values, numbers numerically);
  numeric columns (listed in ``numeric``, or by default: float columns and integer columns with
  more than 64 distinct values) become quantile buckets ``1..B`` with at most ``n_buckets``
  buckets, edges from the whole log (no label is used). Null cells of any feature get one
  extra code. Code 0 is always the padding slot. The time gap to the request is not stored:
  the batch builder computes it (``batching.time_gap_bucket``).
* ``user_features``: name -> column, per-user categorical features (first row's value).

How samples are made (the same rule as MovieLens): rows are sorted by (user, time, item raw id,
file order) -- a stable tie-break for equal timestamps. With ``history="all"`` every row is a
behaviour; with ``history="positive"`` only rows labelled 1 (or unlabelled) are, so that
impressions without a click are not part of anyone's history. Each row with a non-null label
whose visible history (behaviours of the same user strictly before it in that order) has at least
``min_history`` entries becomes one sample (one request), target = its item, label = its label.
Splits (``split``):

* ``"global"`` (default): by request time at global quantiles (``split_quantiles``, default
  0.8/0.9): train <= q0 < valid <= q1 < test. No split sees the future of an earlier one,
  across users too; but a user active only late has all samples in valid/test and none in
  training.
* ``"per_user"``: each user's samples in time order, the last ``1 - q1`` of them (rounded, at
  least one for a user with 2+ samples) go to test and the ``q1 - q0`` before them (at least
  one for 3+ samples) to valid; a user keeps at least one training sample. Every test user has
  training samples, at the cost of leakage across users: one user's test may lie before
  another user's training samples in time.

Validation errors name the column and the row (rows are counted from 0 in file order, header not
counted): a missing column, an unparseable time, a non-binary label, an empty file, and
duplicate (user, item, time) rows, which are an error unless ``duplicates="drop"`` (keeps the
first of each group).

Public data sets that fit (see docs/data.md, "Bring your own logs"):

* **KuaiRand** (``log_standard_*.csv`` + ``video_features_basic_*.csv``): ``user="user_id"``,
  ``item="video_id"``, ``time="time_ms"``, ``time_unit="ms"``, ``label="is_click"``,
  ``cross_features={"tab": "tab", "liked": "is_like", "play_time": "play_time_ms"}``,
  ``numeric=["play_time"]``,
  ``item_table="video_features_basic_pure.csv"``, ``item_features={"category": "tag",
  "author": "author_id"}``, ``multi_value_sep=","``, and ``history="positive"`` (only clicked
  videos are behaviours).
* **Taobao UserBehavior** (``UserBehavior.csv``, no header): ``columns=["user", "item",
  "category", "behaviour", "timestamp"]``, ``user="user"``, ``item="item"``,
  ``time="timestamp"``, ``label="behaviour"``, ``label_map={"buy": 1, "cart": 1, "pv": 0,
  "fav": 0}`` (conversion after a click; every row is a click), ``item_features=["category"]``,
  ``cross_features={"behaviour": "behaviour"}``, ``duplicates="drop"``.
"""

from __future__ import annotations

import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .registry import register
from .schema import BehaviourLog, Dataset, ItemTable, Samples

TIME_UNITS = ("auto", "s", "ms", "us", "ns", "iso")
NUMERIC_MIN_DISTINCT = 64  # integer cross columns with more distinct values are bucketised
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


class UserLogError(ValueError):
    """A user log does not match its spec; the message names the file, column and row."""


@dataclass
class UserLogSpec:
    """Which column of a behaviour log is what (see the module docstring)."""

    user: str  # column of raw user ids
    item: str  # column of raw item ids
    time: str  # column of event times
    label: str | None = None  # column of labels; null = behaviour only. Needed without impressions
    item_features: dict[str, str] | list[str] = field(default_factory=dict)  # needs "category"
    cross_features: dict[str, str] | list[str] = field(default_factory=dict)
    user_features: dict[str, str] | list[str] = field(default_factory=dict)
    time_unit: str = "auto"  # auto | s | ms | us | ns | iso
    label_map: dict[Any, int] | None = None  # raw label value -> 0/1
    label_threshold: float | None = None  # numeric label >= threshold -> 1, else 0
    numeric: list[str] | None = None  # cross features to bucketise; None = decide by dtype
    item_table: str | None = None  # optional file with item features, joined on item_table_key
    item_table_key: str | None = None  # its item id column (default: same name as `item`)
    multi_value_sep: str | None = None  # keep the first token of list-valued item features
    columns: list[str] | None = None  # names for a file without a header row
    sep: str | None = None  # CSV separator (default: "," or tab for .tsv)
    impressions: str | None = None  # optional file of samples (user, item, time, label)
    impression_columns: dict[str, str] | None = None  # role -> its column there, if renamed
    # Optional column of a known true click probability in [0, 1] (a simulator's ground truth),
    # in the impressions file when there is one, else in the log: the data set then has a
    # Bayes-optimal AUC, and the panel (notebook 08) reports the gap each model closes.
    p_true: str | None = None

    @staticmethod
    def _as_map(value: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
        return dict(value) if isinstance(value, Mapping) else {v: v for v in value}

    @classmethod
    def from_any(cls, spec: UserLogSpec | Mapping[str, Any] | str | Path) -> UserLogSpec:
        """A spec from itself, a dict, or the path of a YAML file holding that dict."""
        if isinstance(spec, UserLogSpec):
            return spec
        if isinstance(spec, str | Path):
            path = Path(spec)
            if not path.is_file():
                raise UserLogError(f"spec file {path} does not exist")
            spec = yaml.safe_load(path.read_text())
            if not isinstance(spec, Mapping):
                raise UserLogError(f"spec file {path} must hold a mapping of spec fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise UserLogError(
                f"unknown spec field(s) {unknown}; known: {', '.join(sorted(known))}"
            )
        missing = sorted({"user", "item", "time"} - set(spec))
        if missing:
            raise UserLogError(f"spec: required field(s) {missing} missing")
        return cls(**spec)

    def validate(self) -> UserLogSpec:
        self.item_features = self._as_map(self.item_features)
        self.cross_features = self._as_map(self.cross_features)
        self.user_features = self._as_map(self.user_features)
        if "category" not in self.item_features:
            raise UserLogError(
                "spec.item_features: a feature named 'category' is required (SIM Hard retrieves "
                "by it); map it to a column, e.g. item_features={'category': 'tag'}"
            )
        if self.time_unit not in TIME_UNITS:
            raise UserLogError(f"spec.time_unit: {self.time_unit!r} not in {TIME_UNITS}")
        if self.label is None and self.impressions is None:
            raise UserLogError(
                "spec: required field 'label' missing (a label column in the log, or an "
                "impressions file holding the labelled samples)"
            )
        if self.label_map is not None and self.label_threshold is not None:
            raise UserLogError("spec: give label_map or label_threshold, not both")
        roles = set(self.impression_columns or {}) - {"user", "item", "time", "label"}
        if roles:
            raise UserLogError(
                f"spec.impression_columns: unknown role(s) {sorted(roles)}; roles: user, "
                "item, time, label"
            )
        if self.impression_columns and not self.impressions:
            raise UserLogError("spec.impression_columns given without an impressions file")
        for name in self.numeric or []:
            if name not in self.cross_features:
                raise UserLogError(f"spec.numeric: {name!r} is not a cross feature")
        return self

    def log_roles(self, label: bool) -> dict[str, str]:
        """Role -> column the log file must have (item features only without item_table)."""
        roles = {"user": self.user, "item": self.item, "time": self.time}
        if label and self.label is not None:
            roles["label"] = self.label
        roles |= {f"cross feature {k}": v for k, v in self._as_map(self.cross_features).items()}
        roles |= {f"user feature {k}": v for k, v in self._as_map(self.user_features).items()}
        if not self.item_table:
            feats = self._as_map(self.item_features)
            roles |= {f"item feature {k}": v for k, v in feats.items()}
        return roles

    def impression_roles(self) -> dict[str, str]:
        """Column of each role in the impressions file: the log's names unless renamed."""
        base = {"user": self.user, "item": self.item, "time": self.time}
        base["label"] = self.label or "label"
        return base | dict(self.impression_columns or {})


SPLITS = ("global", "per_user")


@dataclass
class UserLogConfig:
    """Loader options of ``load_dataset("userlog", path=..., spec=..., **options)``."""

    name: str | None = None  # data set name (default: the log file's stem)
    min_history: int = 20  # earlier behaviours a labelled row needs to become a sample
    split: str = "global"  # global | per_user (see the module docstring)
    split_quantiles: tuple[float, float] = (0.8, 0.9)  # train | valid | test cut points
    duplicates: str = "error"  # error | drop (keep the first of each (user, item, time))
    n_buckets: int = 10  # quantile buckets of numeric cross features
    history: str = "all"  # all | positive (only rows labelled 1 or unlabelled are behaviours)
    max_users: int | None = None  # keep the first N users by sorted raw id (quick runs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> UserLogConfig:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"unknown userlog parameter(s) {unknown}; known: path, spec, {', '.join(known)}"
            )
        return cls(**params).validate()

    def validate(self) -> UserLogConfig:
        if not isinstance(self.min_history, int) or self.min_history < 0:
            raise ValueError(f"min_history must be an integer >= 0, got {self.min_history!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        self.split_quantiles = check_quantiles(self.split_quantiles)
        if self.duplicates not in ("error", "drop"):
            raise ValueError(f"duplicates must be 'error' or 'drop', got {self.duplicates!r}")
        if self.history not in ("all", "positive"):
            raise ValueError(f"history must be 'all' or 'positive', got {self.history!r}")
        if not isinstance(self.n_buckets, int) or self.n_buckets < 2:
            raise ValueError(f"n_buckets must be an integer >= 2, got {self.n_buckets!r}")
        if self.max_users is not None and (
            not isinstance(self.max_users, int) or self.max_users < 1
        ):
            raise ValueError(f"max_users must be an integer >= 1 or None, got {self.max_users!r}")
        return self


# --------------------------------------------------------------------------------------------
# Shared assembly: sorted events -> Dataset (MovieLens uses it too)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Reading and validating a log
# --------------------------------------------------------------------------------------------


def _read_table(
    path: Path,
    sep: str | None = None,
    columns: list[str] | None = None,
    what: str = "log",
    head: bool = False,
) -> pd.DataFrame:
    """The whole table, or with ``head`` only enough of it to know its columns (a Parquet
    file's schema, a CSV's first rows): what the up-front check needs, in no time."""
    if not path.is_file():
        raise UserLogError(f"{what} file {path} does not exist")
    suffixes = "".join(path.suffixes).lower()
    parquet = ".parquet" in suffixes or suffixes.endswith(".pq")
    if columns and parquet:
        raise UserLogError("spec.columns names a header-less CSV; Parquet files have names")
    try:
        if parquet and head:
            import pyarrow.parquet as pq  # lazy: pyarrow is heavy; only Parquet logs need it

            meta = pq.read_metadata(path)
            df = pd.DataFrame(index=range(min(meta.num_rows, 1)), columns=meta.schema.names)
        elif parquet:
            df = pd.read_parquet(path)
        else:
            sep = sep or ("\t" if ".tsv" in suffixes else ",")
            df = pd.read_csv(
                path,
                sep=sep,
                header=None if columns else "infer",
                names=columns,
                nrows=5 if head else None,
            )
    except pd.errors.EmptyDataError:
        raise UserLogError(f"{what} file {path} is empty (no header, no rows)") from None
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise UserLogError(f"{what} file {path} cannot be read: {exc}") from None
    if len(df) == 0:
        raise UserLogError(f"{what} file {path} has no rows")
    return df


def _need_columns(df: pd.DataFrame, path: Path, wanted: dict[str, str]) -> None:
    for role, col in wanted.items():
        if col not in df.columns:
            raise UserLogError(
                f"{path.name}: column {col!r} ({role}) not found; the file has columns "
                f"{list(map(str, df.columns))}"
            )


def _show(value: Any) -> str:
    """repr of a cell without numpy's type wrapper (``3``, not ``np.int64(3)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def parse_times(col: pd.Series, unit: str, column: str, path: Path) -> np.ndarray:
    """Unix seconds (int64) from numbers or ISO strings; errors name the column and row."""
    raw = col
    if unit == "auto":
        unit = "iso" if raw.dtype == object or pd.api.types.is_string_dtype(raw) else "s"
        if unit == "s":
            mx = pd.to_numeric(raw, errors="coerce").abs().max()
            unit = "ns" if mx > 1e17 else "us" if mx > 1e14 else "ms" if mx > 1e11 else "s"
    if unit == "iso":
        ts = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        bad = ts.isna().to_numpy()
        if bad.any():
            i = _first_bad(bad)
            raise UserLogError(
                f"{path.name}: column {column!r}, row {i}: cannot parse {_show(raw.iloc[i])} as an "
                "ISO-8601 time"
            )
        # pandas 3 picks the resolution (s/ms/us/ns) itself: divide by a Timedelta instead.
        return ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna().to_numpy()
    if bad.any():
        i = _first_bad(bad)
        raise UserLogError(
            f"{path.name}: column {column!r}, row {i}: cannot parse {_show(raw.iloc[i])} as a unix "
            f"time in {unit}"
        )
    return (num.to_numpy(dtype=np.float64) // _PER_SECOND[unit]).astype(np.int64)


def parse_labels(
    col: pd.Series,
    label_map: dict | None,
    column: str,
    path: Path,
    threshold: float | None = None,
) -> np.ndarray:
    """Float 0/1 labels with NaN for null; a non-binary value is an error naming its row.

    With ``threshold``, labels are numbers and ``value >= threshold`` is 1 (ratings)."""
    null = col.isna().to_numpy()
    if threshold is not None:
        num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(num) & ~null
        if bad.any():
            i = _first_bad(bad)
            raise UserLogError(
                f"{path.name}: column {column!r}, row {i}: label {_show(col.iloc[i])} is not a "
                f"number (label_threshold={threshold} needs numeric labels)"
            )
        return np.where(null, np.nan, (num >= threshold).astype(float))
    if label_map is not None:
        mapped = col.map(label_map)
        bad = mapped.isna().to_numpy() & ~null
        if bad.any():
            i = _first_bad(bad)
            raise UserLogError(
                f"{path.name}: column {column!r}, row {i}: value {_show(col.iloc[i])} is not in "
                f"label_map {label_map}"
            )
        col = mapped
    if col.dtype == object or pd.api.types.is_string_dtype(col):
        col = col.map(lambda v: {"true": 1, "false": 0}.get(str(v).strip().lower(), v))
    num = np.array(pd.to_numeric(col, errors="coerce"), dtype=float)  # writable copy
    bad = ~null & ~np.isin(num, (0.0, 1.0))
    if bad.any():
        i = _first_bad(bad)
        raise UserLogError(
            f"{path.name}: column {column!r}, row {i}: label {_show(col.iloc[i])} is not binary "
            "(0/1, true/false, or null for a behaviour without label; use label_map to "
            "translate other values)"
        )
    num[null] = np.nan
    return num


def _beside(log_path: Path, name: str) -> Path:
    """A file the spec names: absolute, or relative to the log's folder."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else log_path.parent / path


def _item_feature_table(
    df: pd.DataFrame, spec: UserLogSpec, path: Path, item_raw: pd.Series, order: np.ndarray
) -> tuple[pd.DataFrame, int]:
    """One row of raw item features per item (index = raw item id), first row in time order."""
    feats = spec.item_features
    if spec.item_table:
        ipath = _beside(path, spec.item_table)
        key = spec.item_table_key or spec.item
        table = _read_table(ipath, what="item table")
        _need_columns(
            table,
            ipath,
            {"item_table_key": key, **{f"item feature {k}": v for k, v in feats.items()}},
        )
        table = table.drop_duplicates(subset=key, keep="first").set_index(key)
        out = table[list(feats.values())].reindex(pd.unique(item_raw))
        out.columns = list(feats)
        return out, 0
    sub = df[list(feats.values())].iloc[order].copy()
    sub.columns = list(feats)
    sub.index = item_raw.iloc[order].to_numpy()
    first = sub[~sub.index.duplicated(keep="first")]
    n_inconsistent = int(
        (sub.groupby(level=0, sort=False).nunique(dropna=False) > 1).any(axis=1).sum()
    )
    return first, n_inconsistent


def _check_ids(df: pd.DataFrame, path: Path, roles: Mapping[str, str]) -> None:
    for role in ("user", "item"):
        col = roles[role]
        bad = df[col].isna().to_numpy()
        if bad.any():
            raise UserLogError(
                f"{path.name}: column {col!r} ({role}), row {_first_bad(bad)}: empty id"
            )


def _duplicates(
    users: pd.Series, items: pd.Series, times: np.ndarray, time_col: str, path: Path, policy: str
) -> np.ndarray:
    """Rows to keep: all, or (``policy="drop"``) the first of each (user, item, time)."""
    key = pd.DataFrame({"u": users.to_numpy(), "i": items.to_numpy(), "t": times})
    dup = key.duplicated(keep="first").to_numpy()
    if dup.any() and policy == "error":
        j = _first_bad(dup)
        same = key.iloc[:j][(key.iloc[:j] == key.iloc[j]).all(axis=1)].index[0]
        raise UserLogError(
            f"{path.name}: rows {int(same)} and {j} are duplicates (same {users.name!r}, "
            f"{items.name!r}, {time_col!r}); pass duplicates='drop' to keep the first of each"
        )
    return ~dup


def _read_impressions(
    spec: UserLogSpec, log_path: Path, log: pd.DataFrame, duplicates: str
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, Path, int]:
    """The impressions file: (rows, times, 0/1 labels, its path, duplicates dropped)."""
    assert spec.impressions is not None
    path = _beside(log_path, spec.impressions)
    imp = _read_table(path, spec.sep, what="impressions")
    roles = spec.impression_roles()
    _need_columns(imp, path, roles)
    _check_ids(imp, path, roles)
    for role in ("user", "item"):
        a, b = log[getattr(spec, role)], imp[roles[role]]
        if pd.api.types.is_numeric_dtype(a) != pd.api.types.is_numeric_dtype(b):
            raise UserLogError(
                f"{path.name}: column {roles[role]!r} ({role}) holds {b.dtype} ids but the "
                f"log's {getattr(spec, role)!r} holds {a.dtype}; the ids must match"
            )
    times = parse_times(imp[roles["time"]], spec.time_unit, roles["time"], path)
    labels = parse_labels(
        imp[roles["label"]], spec.label_map, roles["label"], path, spec.label_threshold
    )
    if np.isnan(labels).any():
        raise UserLogError(
            f"{path.name}: column {roles['label']!r}, row {_first_bad(np.isnan(labels))}: "
            "empty label (every impression is a sample and needs one)"
        )
    keep = _duplicates(
        imp[roles["user"]], imp[roles["item"]], times, roles["time"], path, duplicates
    )
    imp = imp[keep].reset_index(drop=True)
    # Same column names as the log, so the item features below can read both alike.
    imp = imp.rename(columns={roles[r]: getattr(spec, r) for r in ("user", "item", "time")})
    return imp, times[keep], labels[keep], path, int((~keep).sum())


def load_userlog(
    path: str | Path,
    spec: UserLogSpec | Mapping[str, Any] | str | Path,
    config: UserLogConfig | None = None,
    **options: Any,
) -> Dataset:
    """Load a behaviour log file into the shared schema (rules in the module docstring).

    ``options`` are ``UserLogConfig`` fields (or pass ``config``)."""
    t0 = _time.perf_counter()
    spec = UserLogSpec.from_any(spec).validate()
    if config is not None and options:
        raise ValueError("pass config= or loader options, not both")
    cfg = config.validate() if config is not None else UserLogConfig.from_params(options)
    path = Path(path).expanduser()
    df = _read_table(path, spec.sep, spec.columns)
    # With an impressions file the log's label column is optional (history="positive" only).
    log_label = spec.label if (spec.impressions is None or spec.label in df.columns) else None
    roles = spec.log_roles(label=log_label is not None)
    _need_columns(df, path, roles)
    _check_ids(df, path, roles)

    times = parse_times(df[spec.time], spec.time_unit, spec.time, path)
    if log_label is not None:
        labels = parse_labels(df[log_label], spec.label_map, log_label, path, spec.label_threshold)
    else:
        labels = np.full(len(df), np.nan)
    keep = _duplicates(df[spec.user], df[spec.item], times, spec.time, path, cfg.duplicates)
    n_dropped = int((~keep).sum())
    if n_dropped:
        df, times, labels = df[keep].reset_index(drop=True), times[keep], labels[keep]
    imp, imp_path, n_imp_dropped = None, None, 0
    if spec.impressions:
        imp, imp_times, imp_labels, imp_path, n_imp_dropped = _read_impressions(
            spec, path, df, cfg.duplicates
        )
    if spec.p_true:  # the ground truth lives where the labelled samples do
        _parse_p_true(imp if imp is not None else df, spec.p_true,
                      imp_path or path)  # fmt: skip
    if cfg.max_users is not None:
        users = df[spec.user] if imp is None else pd.concat([df[spec.user], imp[spec.user]])
        first = pd.Series(pd.unique(users)).sort_values().iloc[: cfg.max_users]
        kept = df[spec.user].isin(first).to_numpy()
        df, times, labels = df[kept].reset_index(drop=True), times[kept], labels[kept]
        if imp is not None:
            kept = imp[spec.user].isin(first).to_numpy()
            imp, imp_times, imp_labels = (
                imp[kept].reset_index(drop=True),
                imp_times[kept],
                imp_labels[kept],
            )

    n_log = len(df)
    n_imp = 0 if imp is None else len(imp)
    both = df if imp is None else pd.concat([df, imp], ignore_index=True, sort=False)
    user_codes, user_labels = pd.factorize(both[spec.user], sort=True)
    item_codes, item_labels = pd.factorize(both[spec.item], sort=True)
    n_users, n_items = len(user_labels), len(item_labels)
    user_idx = user_codes.astype(np.int64)
    item_id = item_codes.astype(np.int64) + 1
    row = np.arange(n_log)
    # Log rows in time order: the first row of an item or user gives its features.
    order = np.lexsort((row, item_id[:n_log], times, user_idx[:n_log]))

    # Item table (row 0 = padding, code 0).
    raw_feats, n_inconsistent = _item_feature_table(df, spec, path, df[spec.item], order)
    only_imp: list[Any] = []
    if imp is not None:
        only_imp = sorted(set(pd.unique(imp[spec.item])) - set(pd.unique(df[spec.item])))
        cols = list(spec.item_features.values())
        if only_imp and not spec.item_table and set(cols) <= set(imp.columns):
            extra = imp[imp[spec.item].isin(only_imp)].drop_duplicates(spec.item)
            extra = extra.set_index(spec.item)[cols]
            extra.columns = list(spec.item_features)
            raw_feats = pd.concat([raw_feats, extra])
    raw_feats = raw_feats.reindex(item_labels)
    features, vocab, item_labels_of = {}, {}, {}
    for fname in spec.item_features:
        col = raw_feats[fname]
        if spec.multi_value_sep:
            col = col.map(
                lambda v: v.split(spec.multi_value_sep)[0].strip() if isinstance(v, str) else v
            )
        codes, labels_ = natural_codes(col)
        features[fname] = np.concatenate([[0], codes]).astype(np.int32)
        vocab[fname] = len(labels_) + 1
        item_labels_of[fname] = labels_
    items = ItemTable(n_items=n_items, features=features, vocab=vocab)

    # Cross features, from the log's rows only; impression rows never enter a history, so
    # their cross codes are never read and stay 0 (padding).
    cross_names, cross_vocab, cross_cols, cross_info = [], [], [], {}
    for cname, col_name in spec.cross_features.items():
        col = df[col_name]
        is_num = (
            cname in spec.numeric
            if spec.numeric is not None
            else pd.api.types.is_float_dtype(col)
            or (pd.api.types.is_integer_dtype(col) and col.nunique() > NUMERIC_MIN_DISTINCT)
        )
        if is_num:
            codes, edges, vocab_size = quantile_codes(col, cfg.n_buckets)
            cross_info[cname] = {"kind": "quantile", "edges": edges}
        else:
            codes, labels_ = natural_codes(col)
            vocab_size = len(labels_) + 1
            cross_info[cname] = {"kind": "categorical", "values": labels_}
        cross_names.append(cname)
        cross_vocab.append(max(vocab_size, 2))
        cross_cols.append(np.concatenate([codes, np.zeros(n_imp, dtype=np.int64)]))
    cross_dtype = np.int16 if max(cross_vocab, default=0) < 2**15 else np.int32
    cross = (
        np.stack(cross_cols, axis=1).astype(cross_dtype)
        if cross_cols
        else np.zeros((n_log + n_imp, 0), dtype=np.int16)
    )

    # User features: the user id plus per-user categorical columns (first log row in time
    # order; a user seen only in impressions gets the null code).
    user_features = {"user": np.arange(n_users, dtype=np.int64)}
    user_vocab = {"user": n_users}
    for fname, col_name in spec.user_features.items():
        first = pd.Series(df[col_name].to_numpy()[order]).groupby(user_idx[:n_log][order]).first()
        codes, labels_ = natural_codes(first.reindex(range(n_users)))
        user_features[fname] = codes
        user_vocab[fname] = len(labels_) + 1

    in_history = np.ones(n_log, dtype=bool)
    if cfg.history == "positive":
        in_history = np.isnan(labels) | (labels == 1)
    time_rank = None
    if imp is not None:
        # Log rows are behaviours only, impressions samples only; at equal times the
        # impression comes first, so it does not see the behaviour its own click logged.
        labels = np.concatenate([np.full(n_log, np.nan), imp_labels])
        times = np.concatenate([times, imp_times])
        in_history = np.concatenate([in_history, np.zeros(n_imp, dtype=bool)])
        time_rank = np.concatenate([np.ones(n_log, np.int8), np.zeros(n_imp, np.int8)])
    meta = {
        "source": str(path),
        "impressions": None if imp_path is None else str(imp_path),
        "spec": asdict(spec),
        "user_raw_ids": np.asarray(user_labels),
        "item_raw_ids": np.asarray(item_labels),
        "item_feature_values": item_labels_of,
        "cross_features": cross_info,
        "duplicates_dropped": n_dropped,
        "impression_duplicates_dropped": n_imp_dropped,
        "items_only_in_impressions": len(only_imp),
        "inconsistent_item_features": n_inconsistent,
        "params": asdict(cfg),
    }
    p_true = None
    if spec.p_true:
        p_true = np.full(n_log + n_imp, np.nan)
        if imp is None:
            p_true[:n_log] = _parse_p_true(df, spec.p_true, path)
        else:
            p_true[n_log:] = _parse_p_true(imp, spec.p_true, imp_path)
    ds = events_to_dataset(
        cfg.name or path.stem,
        user=user_idx,
        item=item_id,
        time=times,
        label=labels,
        cross=cross,
        cross_names=cross_names,
        cross_vocab=cross_vocab,
        items=items,
        n_users=n_users,
        min_history=cfg.min_history,
        split_quantiles=cfg.split_quantiles,
        split=cfg.split,
        tie=np.arange(n_log + n_imp),
        time_rank=time_rank,
        in_history=in_history,
        user_features=user_features,
        user_vocab=user_vocab,
        meta=meta,
        p_true=p_true,
    )
    ds.meta["load_seconds"] = _time.perf_counter() - t0
    return ds


def _parse_p_true(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """The ground-truth column as floats in [0, 1]; a named error for a missing column, a
    non-number or a value outside [0, 1] (rows with no label are allowed to be empty)."""
    if column not in frame.columns:
        raise UserLogError(f"{Path(path).name}: no column {column!r} (spec.p_true)")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = (~np.isnan(values) & ((values < 0) | (values > 1))) | (
        np.isnan(values) & frame[column].notna().to_numpy()
    )
    if bad.any():
        raise UserLogError(
            f"{Path(path).name}: column {column!r}, row {_first_bad(bad)}: p_true must be a "
            f"probability in [0, 1], got {frame[column].iloc[_first_bad(bad)]!r}"
        )
    return values


def check_userlog(path: str | Path | None, spec: Any, params: Mapping[str, Any]) -> None:
    """Validate what ``load_dataset("userlog", path=path, spec=spec, **params)`` needs
    without loading the log: the files exist, the spec and options are valid and the columns
    the spec names are in the files' header rows. Raises ValueError (UserLogError) naming the
    problem; the runner calls this before any notebook executes."""
    if not path or not spec:
        raise UserLogError(
            "userlog needs path= (a CSV/TSV/Parquet log) and spec= (a UserLogSpec, a dict or "
            "a YAML file); see twin_study.data.userlogs"
        )
    spec = UserLogSpec.from_any(spec).validate()
    UserLogConfig.from_params(params)
    path = Path(path).expanduser()
    head = _read_table(path, spec.sep, spec.columns, "log", head=True)
    _need_columns(head, path, spec.log_roles(label=spec.impressions is None))
    if spec.item_table:
        ipath = _beside(path, spec.item_table)
        key = spec.item_table_key or spec.item
        feats = {f"item feature {k}": v for k, v in spec.item_features.items()}
        _need_columns(_read_table(ipath, what="item table", head=True), ipath, {"key": key} | feats)
    if spec.impressions:
        ipath = _beside(path, spec.impressions)
        _need_columns(
            _read_table(ipath, spec.sep, what="impressions", head=True),
            ipath,
            spec.impression_roles(),
        )


@register("userlog")
def _userlog(path: str | Path | None = None, spec: Any = None, **params: Any) -> Dataset:
    if path is None or spec is None:
        check_userlog(path, spec, params)  # raises, naming what is missing
    return load_userlog(path, spec, **params)  # type: ignore[arg-type]


__all__ = [
    "UserLogConfig",
    "UserLogError",
    "UserLogSpec",
    "check_userlog",
    "events_to_dataset",
    "load_userlog",
    "natural_codes",
    "per_user_split",
    "quantile_codes",
]
