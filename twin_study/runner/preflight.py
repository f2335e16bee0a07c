"""The data a notebook will load, checked before anything runs: the data set names are
registered, and a user's log has its parameters, files, spec and options in order."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .notebooks import Notebook, RunnerError

# Parameters that name the data sets a notebook loads: "dataset" (comma-separated) in 00 and
# 03-05, "datasets" (a list) in 02; and those that carry a user's log (dataset "userlog").
DATASET_PARAMETERS = ("dataset", "datasets")
USERLOG_PARAMETERS = ("userlog_path", "userlog_spec", "userlog_params")


def _value(name: str, values: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]]):
    """A parameter's value for this run: given, else the notebook's saved default."""
    if name in values:
        return values[name]
    try:
        return ast.literal_eval(str(declared[name].get("default")))
    except (ValueError, SyntaxError):
        return None


def check_data(
    notebook: Notebook, values: dict[str, Any], declared: Mapping[str, Mapping[str, Any]]
) -> None:
    """Check the data a notebook will load before anything runs, so a typo fails in a second
    rather than inside a notebook minutes in: the data set names are registered, and a user
    log (data set ``userlog``) has its parameters, files, spec and options in order (the
    files' header rows are read, not the whole log).

    Relative ``userlog_path`` / ``userlog_spec`` values are made absolute here (in
    ``values``), against the caller's folder: papermill runs the notebook in notebooks/.
    """
    from twin_study.data.registry import available, dataset_names  # lazy: data imports torch

    where = notebook.path.name
    names: list[str] = []
    for key in DATASET_PARAMETERS:
        if key in declared:
            try:
                names += dataset_names(_value(key, values, declared))
            except (ValueError, TypeError) as exc:
                raise RunnerError(f"{where}: parameter {key!r}: {exc}") from exc
    if not names:
        return
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise RunnerError(
            f"{where}: unknown data set(s) {', '.join(unknown)}; available: "
            f"{', '.join(available())}"
        )
    for key in ("userlog_path", "userlog_spec"):
        if isinstance(values.get(key), str) and values[key]:
            values[key] = str(Path(values[key]).expanduser().resolve())
    if "userlog" not in names:
        return
    missing = [k for k in USERLOG_PARAMETERS if k not in declared]
    if missing:
        raise RunnerError(
            f"{where}: data set 'userlog' needs the parameters {', '.join(USERLOG_PARAMETERS)}; "
            f"this notebook lacks {', '.join(missing)}"
        )
    from twin_study.data.userlog import check_userlog  # lazy: data imports torch

    options = _value("userlog_params", values, declared) or {}
    if not isinstance(options, Mapping):
        raise RunnerError(f"{where}: userlog_params must be a mapping, got {options!r}")
    try:
        check_userlog(
            _value("userlog_path", values, declared),
            _value("userlog_spec", values, declared),
            options,
        )
    except ValueError as exc:
        raise RunnerError(
            f"{where}: userlog: {exc} (set -p userlog_path=LOG -p userlog_spec=SPEC.yaml "
            "and loader options as -p 'userlog_params={min_history: 5}')"
        ) from exc
