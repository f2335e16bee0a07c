"""Which notebooks a run covers: ``notebooks/NN_*.ipynb`` found and picked by name; and the
runner's usage error, ``RunnerError``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from twin_study import paths
from twin_study.assignments import UsageError

NOTEBOOK_PATTERN = re.compile(r"^(\d{2})_\w+\.ipynb$")

# A usage error found before anything executes (the CLI exits with code 2); one class with
# the ``-p`` parser's error (``assignments``), which ``twin-study train`` shares.
RunnerError = UsageError


@dataclass(frozen=True)
class Notebook:
    path: Path

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def prefix(self) -> str:
        return self.stem[:2]


def notebooks_dir(root: Path | None) -> Path:
    try:
        return paths.notebooks_dir(root)
    except FileNotFoundError as exc:
        raise RunnerError(str(exc)) from exc


def discover(notebooks_dir: Path) -> list[Notebook]:
    """``NN_*.ipynb`` in ``notebooks_dir``, sorted by name (so by NN)."""
    return [
        Notebook(p)
        for p in sorted(Path(notebooks_dir).iterdir())
        if p.is_file() and NOTEBOOK_PATTERN.match(p.name)
    ]


def select(notebooks: Sequence[Notebook], only: Iterable[str] | None) -> list[Notebook]:
    """Keep the notebooks named in ``only`` (in discovery order); all when empty.

    A name is a stem (``01_complexity``), a file name (``01_complexity.ipynb``) or the NN
    prefix alone (``01``). Unknown names raise RunnerError listing what exists.
    """
    only = list(only or [])
    if not only:
        return list(notebooks)
    wanted: set[str] = set()
    unknown = []
    for name in only:
        key = paths.notebook_stem(name)
        hits = [nb.stem for nb in notebooks if key in (nb.stem, nb.prefix)]
        if hits:
            wanted.update(hits)
        else:
            unknown.append(name)
    if unknown:
        available = ", ".join(nb.stem for nb in notebooks) or "(none)"
        raise RunnerError(f"unknown notebook(s): {', '.join(unknown)}; available: {available}")
    return [nb for nb in notebooks if nb.stem in wanted]
