"""Reading and validating a log's files: the tables (CSV, TSV, Parquet; whole or only their
header), their columns, ids, times, labels, duplicates, the impressions file and ``p_true``.
Every error names the file, the column and the row."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .spec import UserLogError, UserLogSpec

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def read_table(
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


def need_columns(df: pd.DataFrame, path: Path, wanted: dict[str, str]) -> None:
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


def beside(log_path: Path, name: str) -> Path:
    """A file the spec names: absolute, or relative to the log's folder."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else log_path.parent / path


def check_ids(df: pd.DataFrame, path: Path, roles: Mapping[str, str]) -> None:
    for role in ("user", "item"):
        col = roles[role]
        bad = df[col].isna().to_numpy()
        if bad.any():
            raise UserLogError(
                f"{path.name}: column {col!r} ({role}), row {_first_bad(bad)}: empty id"
            )


def rows_to_keep(
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


def read_impressions(
    spec: UserLogSpec, log_path: Path, log: pd.DataFrame, duplicates: str
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, Path, int]:
    """The impressions file: (rows, times, 0/1 labels, its path, duplicates dropped)."""
    assert spec.impressions is not None
    path = beside(log_path, spec.impressions)
    imp = read_table(path, spec.sep, what="impressions")
    roles = spec.impression_roles()
    need_columns(imp, path, roles)
    check_ids(imp, path, roles)
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
    keep = rows_to_keep(
        imp[roles["user"]], imp[roles["item"]], times, roles["time"], path, duplicates
    )
    imp = imp[keep].reset_index(drop=True)
    # Same column names as the log, so the item features below can read both alike.
    imp = imp.rename(columns={roles[r]: getattr(spec, r) for r in ("user", "item", "time")})
    return imp, times[keep], labels[keep], path, int((~keep).sum())


def parse_p_true(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
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
