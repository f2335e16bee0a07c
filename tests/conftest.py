"""Shared fixtures: a scratch study layout with tiny notebooks written by nbformat."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

DEFAULT_PARAMS = 'profile: str = "quick"  # quick or paper\nout_dir: str = ""  # empty: derived\n'


def write_notebook(path: Path, params: str = DEFAULT_PARAMS, *cells: str) -> Path:
    """A notebook whose first code cell is tagged ``parameters``, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(src) for src in cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A scratch root with an empty ``notebooks/`` and an empty ``profiles/`` folder."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles").mkdir()
    return tmp_path
