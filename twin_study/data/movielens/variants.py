"""The MovieLens sets this package knows (``VARIANTS``: names, URLs, files, expected counts)
and the errors of obtaining or parsing them."""

from __future__ import annotations

from dataclasses import dataclass


class MovieLensError(RuntimeError):
    """MovieLens could not be obtained or parsed; the message says what was tried and why."""


class MovieLensCountError(MovieLensError):
    """A source gave other user/movie/rating counts than the original data set has."""


@dataclass(frozen=True)
class Variant:
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
    "movielens-1m": Variant(
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
    "movielens-100k": Variant(
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
