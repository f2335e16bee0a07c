"""Execute the study's notebooks with papermill: ``twin-study run``.

A run of profile P over notebooks ``notebooks/NN_*.ipynb`` (in NN order):

1. resolve each notebook's parameters: ``profile`` and ``out_dir`` (always injected), then
   the profile's overrides from ``twin_study/profiles/<P>.yaml`` (``{stem: {name: value}}``),
   then ``-p name=value`` extras; every name is checked against the notebook's ``parameters``
   cell (``papermill.inspect_notebook``) before anything executes. A profile override must
   name a parameter of its notebook; a ``-p`` extra goes to the selected notebooks that
   declare it and is an error only when none does (``-p n_users=50`` skips 01_complexity);
2. skip a notebook whose stamp (sha256 of notebook source + parameters + package sources,
   ``.cpp`` / ``.h`` / ``.yaml`` included) matches and whose results.json exists, unless
   ``force``;
3. execute it into a temp file, rename it to ``outputs/executed/P/<stem>.ipynb`` and write
   the stamp; on failure keep ``<stem>.failed.ipynb`` for inspection, no stamp, and stop:
   later notebooks are reported as not run. The executed copy of the last good run is left
   in place (only a success replaces it).

Output is one line per notebook (status and seconds); papermill's progress bars only with
``progress=True`` (``--progress``), and the kernel's own start-up log (a warning that it
talks TCP without encryption, on every start) is silenced: it is not about the study.

The functions take ``root`` (the folder holding ``notebooks/``, ``figures/``, ``outputs/``)
and ``profiles_dir`` so tests can run them on a scratch layout.

The package, one job a module: ``notebooks`` (discovery and selection, ``RunnerError``),
``params`` (profiles, parameters, the jobs), ``preflight`` (the data a notebook will load),
``stamps`` (up-to-date stamps), ``execution`` (papermill, ``run``, ``list_notebooks``) and
``command`` (the ``twin-study run`` options and exit codes). Import from here.
"""

from twin_study.assignments import UsageError, parse_assignments

from .command import add_arguments, main
from .execution import (
    DEFAULT_TIMEOUT,
    KERNEL_ARGUMENTS,
    KERNEL_NAME,
    Outcome,
    Summary,
    describe_error,
    execute,
    list_notebooks,
    resolve_timeout,
    run,
)
from .notebooks import NOTEBOOK_PATTERN, Notebook, RunnerError, discover, notebooks_dir, select
from .params import (
    REQUIRED_PARAMETERS,
    Job,
    check_parameters,
    inspect_parameters,
    load_profile,
    plan,
    prepare,
)
from .preflight import DATASET_PARAMETERS, USERLOG_PARAMETERS, check_data
from .stamps import is_up_to_date, job_digest, package_digest

__all__ = [
    "DATASET_PARAMETERS",
    "DEFAULT_TIMEOUT",
    "KERNEL_ARGUMENTS",
    "KERNEL_NAME",
    "NOTEBOOK_PATTERN",
    "REQUIRED_PARAMETERS",
    "USERLOG_PARAMETERS",
    "Job",
    "Notebook",
    "Outcome",
    "RunnerError",
    "Summary",
    "UsageError",
    "add_arguments",
    "check_data",
    "check_parameters",
    "describe_error",
    "discover",
    "execute",
    "inspect_parameters",
    "is_up_to_date",
    "job_digest",
    "list_notebooks",
    "load_profile",
    "main",
    "notebooks_dir",
    "package_digest",
    "parse_assignments",
    "plan",
    "prepare",
    "resolve_timeout",
    "run",
    "select",
]
