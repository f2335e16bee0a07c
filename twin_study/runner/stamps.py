"""Up-to-date stamps: the sha256 of a notebook, its parameters and every package source, and
whether a job's stamp matches and its results exist."""

from __future__ import annotations

import hashlib
import json

from twin_study import paths
from twin_study.results import RESULTS_NAME

from .params import Job


def package_digest() -> str:
    """sha256 over every source of the package (``paths.package_sources``: path and content
    of the Python modules, the C++ kernels and ``common.h``, the yaml profiles and
    ``panel.yaml``), so an edited kernel or profile leaves every notebook out of date."""
    return paths.digest_files(paths.package_sources(), paths.PACKAGE_DIR)


def job_digest(job: Job, package: str) -> str:
    h = hashlib.sha256()
    h.update(job.notebook.path.read_bytes() + b"\0")
    h.update(json.dumps(job.parameters, sort_keys=True, default=str).encode() + b"\0")
    h.update(package.encode())
    return h.hexdigest()


def is_up_to_date(job: Job, digest: str) -> bool:
    """The stamp matches and the notebook's results.json exists."""
    try:
        stamp = json.loads(job.stamp_path.read_text())
    except (OSError, ValueError):
        return False
    return (
        stamp.get("sha256") == digest
        and job.executed.is_file()
        and (job.out_dir / RESULTS_NAME).is_file()
    )
