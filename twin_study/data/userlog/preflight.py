"""A log checked without loading it: its files exist, the spec and options are valid and the
columns the spec names are in the files' header rows (the runner's check before a notebook)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .read import beside, need_columns, read_table
from .spec import UserLogConfig, UserLogError, UserLogSpec


def check_userlog(path: str | Path | None, spec: Any, params: Mapping[str, Any]) -> None:
    """Validate what ``load_dataset("userlog", path=path, spec=spec, **params)`` needs
    without loading the log: the files exist, the spec and options are valid and the columns
    the spec names are in the files' header rows. Raises ValueError (UserLogError) naming the
    problem; the runner calls this before any notebook executes."""
    if not path or not spec:
        raise UserLogError(
            "userlog needs path= (a CSV/TSV/Parquet log) and spec= (a UserLogSpec, a dict or "
            "a YAML file); see twin_study.data.userlog"
        )
    spec = UserLogSpec.from_any(spec).validate()
    UserLogConfig.from_params(params)
    path = Path(path).expanduser()
    head = read_table(path, spec.sep, spec.columns, "log", head=True)
    need_columns(head, path, spec.log_roles(label=spec.impressions is None))
    if spec.item_table:
        ipath = beside(path, spec.item_table)
        key = spec.item_table_key or spec.item
        feats = {f"item feature {k}": v for k, v in spec.item_features.items()}
        need_columns(read_table(ipath, what="item table", head=True), ipath, {"key": key} | feats)
    if spec.impressions:
        ipath = beside(path, spec.impressions)
        need_columns(
            read_table(ipath, spec.sep, what="impressions", head=True),
            ipath,
            spec.impression_roles(),
        )
