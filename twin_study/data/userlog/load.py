"""A user's log loaded into the shared schema (``load_userlog``), and its registration as
the data set ``userlog``."""

from __future__ import annotations

import time as _time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..events import events_to_dataset, natural_codes, quantile_codes
from ..registry import register
from ..schema import Dataset, ItemTable
from .preflight import check_userlog
from .read import (
    beside,
    check_ids,
    need_columns,
    parse_labels,
    parse_p_true,
    parse_times,
    read_impressions,
    read_table,
    rows_to_keep,
)
from .spec import UserLogConfig, UserLogSpec

NUMERIC_MIN_DISTINCT = 64  # integer cross columns with more distinct values are bucketised


def _item_feature_table(
    df: pd.DataFrame, spec: UserLogSpec, path: Path, item_raw: pd.Series, order: np.ndarray
) -> tuple[pd.DataFrame, int]:
    """One row of raw item features per item (index = raw item id), first row in time order."""
    feats = spec.item_features
    if spec.item_table:
        ipath = beside(path, spec.item_table)
        key = spec.item_table_key or spec.item
        table = read_table(ipath, what="item table")
        need_columns(
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
    df = read_table(path, spec.sep, spec.columns)
    # With an impressions file the log's label column is optional (history="positive" only).
    log_label = spec.label if (spec.impressions is None or spec.label in df.columns) else None
    roles = spec.log_roles(label=log_label is not None)
    need_columns(df, path, roles)
    check_ids(df, path, roles)

    times = parse_times(df[spec.time], spec.time_unit, spec.time, path)
    if log_label is not None:
        labels = parse_labels(df[log_label], spec.label_map, log_label, path, spec.label_threshold)
    else:
        labels = np.full(len(df), np.nan)
    keep = rows_to_keep(df[spec.user], df[spec.item], times, spec.time, path, cfg.duplicates)
    n_dropped = int((~keep).sum())
    if n_dropped:
        df, times, labels = df[keep].reset_index(drop=True), times[keep], labels[keep]
    imp, imp_path, n_imp_dropped = None, None, 0
    if spec.impressions:
        imp, imp_times, imp_labels, imp_path, n_imp_dropped = read_impressions(
            spec, path, df, cfg.duplicates
        )
    if spec.p_true:  # the ground truth lives where the labelled samples do
        parse_p_true(imp if imp is not None else df, spec.p_true,
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
            p_true[:n_log] = parse_p_true(df, spec.p_true, path)
        else:
            p_true[n_log:] = parse_p_true(imp, spec.p_true, imp_path)
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


@register("userlog")
def _userlog(path: str | Path | None = None, spec: Any = None, **params: Any) -> Dataset:
    if path is None or spec is None:
        check_userlog(path, spec, params)  # raises, naming what is missing
    return load_userlog(path, spec, **params)  # type: ignore[arg-type]
