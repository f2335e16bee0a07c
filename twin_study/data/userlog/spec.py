"""What a user's log is: the spec of its columns (``UserLogSpec``), the loader options
(``UserLogConfig``) and the error that names a file, column and row (``UserLogError``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..events import SPLITS, check_quantiles

TIME_UNITS = ("auto", "s", "ms", "us", "ns", "iso")


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
