"""Reading MovieLens out of a zip or a folder, and its three parsers (GroupLens ML-1M,
GroupLens ML-100k, RecBole atomic files), each returning the same dict of arrays: the layout
of the ``.npz`` cache."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .variants import VARIANTS, MovieLensError, Variant

PARSE_VERSION = 1  # bump when the parsed .npz layout changes; old caches are re-parsed
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)  # ML-1M: "under 18", 18-24, ..., "56+"
# ML-100k's u.item genre flags, in file order.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


def collect(path: Path, names: tuple[str, ...]) -> dict[str, bytes] | None:
    """The files ``names`` (matched by base name) from a zip or a folder tree, or None."""
    found: dict[str, bytes] = {}
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename.count("/")):
                base = info.filename.rsplit("/", 1)[-1]
                if base in names and base not in found and not info.filename.startswith("__"):
                    found[base] = zf.read(info)
    elif path.is_dir():
        for name in names:
            hits = sorted(path.rglob(name), key=lambda p: len(p.parts))
            if hits:
                found[name] = hits[0].read_bytes()
    return found if len(found) == len(names) else None


def read_local(path: Path, v: Variant) -> tuple[str, dict[str, Any]]:
    """Parse a local zip or folder in GroupLens or RecBole format -> (format, parsed)."""
    if not path.exists():
        raise MovieLensError(f"{path} does not exist")
    if not (path.is_dir() or zipfile.is_zipfile(path)):
        raise MovieLensError(f"{path} is neither a zip file nor a folder")
    gl = (
        ("ratings.dat", "movies.dat", "users.dat")
        if v.marker == "ratings.dat"
        else (
            "u.data",
            "u.item",
            "u.user",
        )
    )
    files = collect(path, gl)
    if files is not None:
        return "grouplens", (
            _parse_grouplens_1m if v.marker == "ratings.dat" else _parse_grouplens_100k
        )(files)
    rb = tuple(f"{v.key}.{ext}" for ext in ("inter", "item", "user"))
    files = collect(path, rb)
    if files is not None:
        return "recbole", parse_recbole(files, v)
    other = next(w for w in VARIANTS.values() if w is not v)
    if collect(path, (other.marker,)) is not None:
        raise MovieLensError(f"{path} holds {other.title} ({other.marker}), not {v.title}")
    raise MovieLensError(
        f"{path} has neither the GroupLens files {', '.join(gl)} nor the RecBole atomic files "
        f"{', '.join(rb)}"
    )


_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _table(data: bytes, sep: str, names: list[str], encoding: str = "latin-1") -> pd.DataFrame:
    if sep == "::":  # GroupLens .dat: one C-engine pass after turning "::" into a tab
        data, sep = data.replace(b"::", b"\t"), "\t"
    return pd.read_csv(
        io.BytesIO(data),
        sep=sep,
        header=None,
        names=names,
        quoting=3,
        encoding=encoding,
        dtype=str,
        keep_default_na=False,
    )


def _finish(
    ratings: pd.DataFrame, movies: pd.DataFrame, users: pd.DataFrame, fmt: str
) -> dict[str, Any]:
    """Common tail of the parsers.

    ``ratings``: user (int raw id), movie (key into ``movies``), rating, time.
    ``movies``: key, raw_id (-1 when unknown), title, genres ('|'-joined), year, in id order.
    ``users``: raw_id, gender, age (group), occupation.
    """
    movies = movies.drop_duplicates(subset="key", keep="first").reset_index(drop=True)
    # Hash lookups via an Index (Series.isin/map on pandas-3 string columns are very slow).
    pos = pd.Index(movies["key"]).get_indexer(ratings["movie"])
    if (pos < 0).any():
        raise MovieLensError(
            f"{int((pos < 0).sum())} ratings name a movie missing from the movie list, e.g. "
            f"{ratings['movie'].iloc[int(np.flatnonzero(pos < 0)[0])]!r}"
        )
    is_rated = np.zeros(len(movies), dtype=bool)
    is_rated[pos] = True
    new_id = np.cumsum(is_rated)  # rated movies keep the list order: ids 1..n_items
    rated = movies[is_rated].reset_index(drop=True)
    title_year = rated["title"].str.extract(_YEAR, expand=False)
    year = pd.to_numeric(title_year.fillna(rated["year"]), errors="coerce").fillna(0)
    user_ids = np.unique(ratings["user"].to_numpy(np.int64))
    users = users.drop_duplicates(subset="raw_id").set_index("raw_id").reindex(user_ids)
    return {
        "version": np.int64(PARSE_VERSION),
        "format": np.array(fmt),
        "rating_user": ratings["user"].to_numpy(np.int64),
        "rating_item": new_id[pos].astype(np.int32),
        "rating_value": pd.to_numeric(ratings["rating"]).to_numpy(np.int8),
        "rating_time": pd.to_numeric(ratings["time"]).to_numpy(np.int64),
        "item_raw_id": rated["raw_id"].to_numpy(np.int64),
        "item_title": rated["title"].to_numpy(str),
        "item_genres": rated["genres"].to_numpy(str),
        "item_year": year.to_numpy(np.int32),
        "user_raw_id": user_ids,
        "user_gender": users["gender"].fillna("").to_numpy(str),
        "user_age": pd.to_numeric(users["age"], errors="coerce").fillna(0).to_numpy(np.int32),
        "user_occupation": users["occupation"].fillna("").to_numpy(str),
    }


def _age_group(age: pd.Series) -> pd.Series:
    """Ages in years -> the ML-1M group (the group's lower bound; 1 = under 18)."""
    years = pd.to_numeric(age, errors="coerce")
    idx = np.searchsorted(np.array(AGE_GROUPS[1:]), years.fillna(-1).to_numpy(), side="right")
    return pd.Series(np.where(years.isna(), 0, np.array(AGE_GROUPS)[idx]), index=age.index)


def _parse_grouplens_1m(files: dict[str, bytes]) -> dict[str, Any]:
    r = _table(files["ratings.dat"], "::", ["user", "movie", "rating", "time"])
    m = _table(files["movies.dat"], "::", ["raw_id", "title", "genres"])
    u = _table(files["users.dat"], "::", ["raw_id", "gender", "age", "occupation", "zip"])
    r["user"] = r["user"].astype(np.int64)
    r["movie"] = r["movie"].astype(np.int64)
    m["raw_id"] = m["raw_id"].astype(np.int64)
    m = m.sort_values("raw_id", kind="stable").assign(key=lambda d: d["raw_id"], year="")
    u["raw_id"] = u["raw_id"].astype(np.int64)
    return _finish(r, m, u, "grouplens")


def _parse_grouplens_100k(files: dict[str, bytes]) -> dict[str, Any]:
    r = _table(files["u.data"], "\t", ["user", "movie", "rating", "time"])
    cols = ["raw_id", "title", "release", "video", "url", *GENRES_100K]
    m = _table(files["u.item"], "|", cols)
    u = _table(files["u.user"], "|", ["raw_id", "age", "gender", "occupation", "zip"])
    r["user"] = r["user"].astype(np.int64)
    r["movie"] = r["movie"].astype(np.int64)
    flags = m[list(GENRES_100K)].to_numpy() == "1"
    genres = ["|".join(g for g, f in zip(GENRES_100K, row, strict=True) if f) for row in flags]
    m = pd.DataFrame(
        {
            "raw_id": m["raw_id"].astype(np.int64),
            "title": m["title"],
            "genres": genres,
            "year": m["release"].str[-4:],
        }
    )
    m = m.sort_values("raw_id", kind="stable").assign(key=lambda d: d["raw_id"])
    u["raw_id"] = u["raw_id"].astype(np.int64)
    u["age"] = _age_group(u["age"])
    return _finish(r, m, u, "grouplens")


def _recbole_table(data: bytes, name: str) -> pd.DataFrame:
    df = pd.read_csv(
        io.BytesIO(data), sep="\t", quoting=3, encoding="utf-8", dtype=str, keep_default_na=False
    )
    df.columns = [c.split(":", 1)[0] for c in df.columns]
    if df.empty:
        raise MovieLensError(f"RecBole file {name} has no rows")
    return df


def parse_recbole(files: dict[str, bytes], v: Variant) -> dict[str, Any]:
    """RecBole atomic files: ratings keyed by title, users by '<prefix><GroupLens id>'."""
    inter = _recbole_table(files[f"{v.key}.inter"], f"{v.key}.inter")
    item = _recbole_table(files[f"{v.key}.item"], f"{v.key}.item")
    user = _recbole_table(files[f"{v.key}.user"], f"{v.key}.user")
    for df, what in ((inter, "inter"), (user, "user")):
        ok = df["user_id"].str.startswith(v.user_prefix)
        if not ok.all():
            raise MovieLensError(
                f"{v.key}.{what}: user id {df['user_id'][~ok].iloc[0]!r} lacks the prefix "
                f"{v.user_prefix!r} of {v.title}"
            )
        df["user_id"] = df["user_id"].str.slice(len(v.user_prefix)).astype(np.int64)
    r = pd.DataFrame(
        {
            "user": inter["user_id"],
            "movie": inter["item_id"],
            "rating": inter["rating"].astype(float).astype(np.int64),
            "time": inter["timestamp"].astype(float).astype(np.int64),
        }
    )
    genre_col = next(c for c in item.columns if c in ("genre", "class"))
    # The item file lists movies in GroupLens id order; the ids themselves are not shipped.
    m = pd.DataFrame(
        {
            "key": item["item_id"],
            "raw_id": -1,
            "title": item["item_id"],
            "genres": item[genre_col].str.split().str.join("|"),
            "year": item["release_year"],
        }
    )
    u = pd.DataFrame(
        {
            "raw_id": user["user_id"],
            "gender": user["gender"],
            "age": _age_group(user["age"]) if v.key == "ml-100k" else user["age"],
            "occupation": user["occupation"],
        }
    )
    return _finish(r, m, u, "recbole")
