"""results.json: the scalars a notebook run records, written atomically.

Every notebook's derived-values cell does::

    out = resolve_out_dir("01_complexity", profile, out_dir)

and its last cell ``save_results(out, {...})``. The runner treats a run as done only when
results.json exists, so the file is written through a temp file and ``os.replace``: a crash
never leaves a half-written one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twin_study import paths

RESULTS_NAME = "results.json"


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    Leaves the file untouched (mtime included) when it already holds exactly ``data``. The
    file gets the mode a plain ``open(path, "w")`` would give it: an existing file keeps its
    mode, a new one gets 0666 minus the umask (typically 0644).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return path
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the temp file 0600 (it is private until renamed); without this
        # chmod results, figures and tables would stay unreadable to group and others.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _mode_for(path: Path) -> int:
    """Permission bits for writing ``path``: its current ones, else 0666 minus the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        pass
    # The umask can only be read by setting it; set it back at once (process-wide, but the
    # window is two system calls and nothing here runs threads that create files).
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, tuples and paths into plain JSON types.

    Duck-typed (``.tolist()`` / ``.item()``) so this module never imports numpy or torch.
    Mapping keys become strings. NaN and infinity are rejected: a metric that is NaN is a
    bug to surface, and strict JSON cannot hold it.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj) if isinstance(obj, set | frozenset) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"results must be finite numbers, got {obj!r}")
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "tolist"):  # numpy array or scalar, torch tensor
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    raise TypeError(f"cannot store {type(obj).__name__} in results.json: {obj!r}")


def save_results(out_dir: Path | str, results: Mapping[str, Any]) -> Path:
    """Write ``out_dir/results.json`` (sorted keys, indent 2) atomically; return its path."""
    text = json.dumps(to_jsonable(results), sort_keys=True, indent=2, allow_nan=False)
    return atomic_write_bytes(Path(out_dir) / RESULTS_NAME, (text + "\n").encode())


def load_results(out_dir: Path | str) -> dict[str, Any]:
    """Read ``out_dir/results.json``."""
    return json.loads((Path(out_dir) / RESULTS_NAME).read_text())


def resolve_out_dir(notebook: str, profile: str, out_dir: str = "") -> Path:
    """The folder a notebook writes figures and results.json to, created.

    ``out_dir`` is the notebook's ``out_dir`` parameter: the runner injects an absolute path;
    the saved default ``""`` (nbval, or a run in JupyterLab) means
    ``paths.output_dir(profile, notebook)``. Unknown profiles raise ValueError.
    """
    paths.check_profile(profile)
    path = Path(out_dir).expanduser().resolve() if out_dir else paths.output_dir(profile, notebook)
    path.mkdir(parents=True, exist_ok=True)
    return path
