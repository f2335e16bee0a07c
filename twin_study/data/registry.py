"""Load any data set of the study by name: ``load_dataset("synthetic", n_users=200)``.

Notebooks take a ``dataset`` parameter and call this, so every notebook runs on every source.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from .schema import Dataset
from .synthetic import SyntheticConfig, generate

_LOADERS: dict[str, Callable[..., Dataset]] = {}


def register(name: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _LOADERS[name] = fn
        return fn

    return deco


def available() -> list[str]:
    _import_loaders()
    return sorted(_LOADERS)


def load_dataset(name: str, /, **params: Any) -> Dataset:
    """Load data set ``name`` with loader parameters; unknown names or parameters are errors.

    ``name`` is positional-only so that a loader parameter called ``name`` (the userlog's
    display name) reaches the loader instead of clashing with it.
    """
    _import_loaders()
    if name not in _LOADERS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name](**params)


def dataset_names(spec: str | Sequence[str]) -> list[str]:
    """``"synthetic, userlog"`` or ``["synthetic", "userlog"]`` -> the names, in order, without
    duplicates; at least one."""
    parts = spec.split(",") if isinstance(spec, str) else [str(n) for n in spec]
    names = list(dict.fromkeys(n.strip() for n in parts if n.strip()))
    if not names:
        raise ValueError(f"no data set named in {spec!r}")
    return names


def load_datasets(
    spec: str | Sequence[str],
    params: Mapping[str, Mapping[str, Any]],
    default: Mapping[str, Any] | None = None,
) -> dict[str, Dataset]:
    """The data sets named in ``spec`` (see ``dataset_names``), each loaded with
    ``params[name]``, or ``default`` for a name without an entry (the notebooks give
    MovieLens its ``max_users`` that way).

    Keyed by each Dataset's own ``name``, the name its training runs and tables carry: the
    source's name, except a user log's (its file stem, or its ``name`` option).
    """
    out: dict[str, Dataset] = {}
    for source in dataset_names(spec):
        ds = load_dataset(source, **dict(params.get(source, default or {})))
        if ds.name in out:
            raise ValueError(f"two data sets are both named {ds.name!r}; pass name= to one")
        out[ds.name] = ds
    return out


@register("synthetic")
def _synthetic(progress: bool = False, **params: Any) -> Dataset:
    known = {f.name for f in fields(SyntheticConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"unknown synthetic data parameter(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    return generate(SyntheticConfig(**params), progress=progress)


def _import_loaders() -> None:
    """Import modules that register more loaders (real data), if present."""
    for mod in ("movielens", "userlog"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:  # module not written yet
            if e.name != f"{__package__}.{mod}":
                raise
