"""Each notebook's parameters for a run: ``profile`` and ``out_dir``, the profile's overrides
(``twin_study/profiles/<P>.yaml``) and ``-p`` extras, checked against the notebook's
``parameters`` cell; ``plan`` and ``prepare`` turn them into jobs, executing nothing."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from twin_study import paths

from .notebooks import Notebook, RunnerError, discover, notebooks_dir, select
from .preflight import check_data

REQUIRED_PARAMETERS = ("profile", "out_dir")

# Parameter annotations whose values can be checked cheaply; anything else is passed through.
_TYPE_CHECKS = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


@dataclass
class Job:
    """One notebook with its resolved parameters and where its run goes."""

    notebook: Notebook
    parameters: dict[str, Any]
    out_dir: Path
    executed: Path  # executed copy, outputs/executed/<profile>/<stem>.ipynb
    not_applied: tuple[str, ...] = ()  # -p names this notebook does not declare

    @property
    def stamp_path(self) -> Path:
        return self.executed.with_name(f"{self.notebook.stem}.stamp.json")

    @property
    def failed_path(self) -> Path:
        return self.executed.with_name(f"{self.notebook.stem}.failed.ipynb")


def load_profile(profile: str, profiles_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The profile's overrides ``{notebook_stem: {param: value}}``; ``{}`` when no file."""
    try:
        paths.check_profile(profile)
    except ValueError as exc:
        raise RunnerError(str(exc)) from exc
    path = Path(profiles_dir or paths.PROFILES_DIR) / f"{profile}.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict | None) for v in data.values()):
        raise RunnerError(f"{path}: expected a mapping {{notebook_stem: {{param: value}}}}")
    return {str(stem): dict(values or {}) for stem, values in data.items()}


def inspect_parameters(notebook: Notebook) -> dict[str, dict[str, Any]]:
    """The notebook's ``parameters`` cell as papermill reads it: ``{name: {inferred_type_name,
    default, help, ...}}``. A notebook without one, or without ``profile``/``out_dir``, is an
    error."""
    import nbformat  # lazy: heavy; importing the runner (cli.py) must not pay for it
    import papermill  # lazy: heavy; importing the runner (cli.py) must not pay for it

    try:
        params = papermill.inspect_notebook(str(notebook.path))
    except ValueError as exc:  # e.g. no kernelspec in the notebook metadata
        raise RunnerError(f"{notebook.path.name}: cannot read parameters: {exc}") from exc
    if not params:
        raise RunnerError(f"{notebook.path.name}: no code cell tagged 'parameters'")
    # papermill silently drops a line holding more than one "=" (say in its comment); such a
    # parameter could not be overridden, so name it instead of calling it unknown later.
    cell = next(
        c
        for c in nbformat.read(notebook.path, as_version=4).cells
        if "parameters" in c.get("metadata", {}).get("tags", [])
    )
    unread = [name for name in _assigned_names(cell.source) if name not in params]
    if unread:
        raise RunnerError(
            f"{notebook.path.name}: papermill cannot read parameter(s) {', '.join(unread)}; "
            "write each as one line `name: type = value  # meaning` with a single '='"
        )
    missing = [name for name in REQUIRED_PARAMETERS if name not in params]
    if missing:
        raise RunnerError(
            f"{notebook.path.name}: the parameters cell must define {', '.join(missing)} "
            '(profile: str = "quick" and out_dir: str = "")'
        )
    return params


def _assigned_names(source: str) -> list[str]:
    """Names assigned at the top level of a parameters cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the kernel will report it
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def check_parameters(
    notebook: Notebook, values: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]]
) -> None:
    """Raise RunnerError for a name the notebook does not declare or a value of the wrong
    simple type (bool/int/float/str annotations)."""
    allowed = ", ".join(declared)
    for name, value in values.items():
        if name not in declared:
            raise RunnerError(
                f"{notebook.path.name}: unknown parameter {name!r}; allowed: {allowed}"
            )
        type_name = str(declared[name].get("inferred_type_name", "None"))
        check = _TYPE_CHECKS.get(type_name)
        if check is not None and not check(value):
            raise RunnerError(
                f"{notebook.path.name}: parameter {name!r} is {type_name}, "
                f"got {type(value).__name__} {value!r}"
            )


def plan(
    notebooks: Sequence[Notebook],
    profile: str,
    *,
    root: Path | None = None,
    profiles_dir: Path | None = None,
    extra: Mapping[str, Any] | None = None,
    all_stems: Iterable[str] | None = None,
) -> list[Job]:
    """Resolve and validate the parameters of every notebook; executes nothing.

    ``all_stems`` (default: the stems of ``notebooks``) are the notebooks that exist; a
    profile entry for any other stem is an error (a typo would silently do nothing).
    ``extra`` (``-p``) names go to the notebooks that declare them: notebooks differ in their
    parameters (01_complexity has no ``n_users``), so a name is an error only when no
    notebook in ``notebooks`` declares it.
    """
    overrides = load_profile(profile, profiles_dir)
    known = set(all_stems if all_stems is not None else (nb.stem for nb in notebooks))
    stray = sorted(set(overrides) - known)
    if stray:
        raise RunnerError(
            f"profile {profile!r} names unknown notebook(s): {', '.join(stray)}; "
            f"available: {', '.join(sorted(known)) or '(none)'}"
        )
    extra = dict(extra or {})
    jobs, declared_by = [], {}
    for nb in notebooks:
        declared = declared_by[nb] = inspect_parameters(nb)
        out_dir = paths.output_dir(profile, nb.stem, root)
        values = {"profile": profile, "out_dir": str(out_dir)}
        values.update(overrides.get(nb.stem, {}))
        check_parameters(nb, values, declared)
        mine = {k: v for k, v in extra.items() if k in declared}
        check_parameters(nb, mine, declared)
        values.update(mine)
        check_data(nb, values, declared)
        executed = paths.executed_dir(profile, root) / f"{nb.stem}.ipynb"
        not_applied = tuple(k for k in extra if k not in declared)
        jobs.append(Job(nb, values, out_dir, executed, not_applied))
    nobody = [k for k in extra if all(k in job.not_applied for job in jobs)]
    if nobody and jobs:
        have = "; ".join(f"{nb.path.name}: {', '.join(d)}" for nb, d in declared_by.items())
        raise RunnerError(
            f"unknown parameter(s) {', '.join(map(repr, nobody))}: no selected notebook has "
            f"it ({have})"
        )
    return jobs


def prepare(
    profile: str,
    only: Iterable[str] | None = None,
    *,
    root: Path | None = None,
    profiles_dir: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, list[Job]]:
    """Discover, select and plan: the notebooks folder and the validated jobs."""
    nb_dir = notebooks_dir(root)
    available = discover(nb_dir)
    jobs = plan(
        select(available, only),
        profile,
        root=root,
        profiles_dir=profiles_dir,
        extra=extra,
        all_stems=[nb.stem for nb in available],
    )
    return nb_dir, jobs
