"""``NAME=VALUE`` command-line parameters and the usage error of the study's commands.

Light on purpose (yaml only): ``twin-study run`` (``runner``) and ``twin-study train``
(``training.distributed``) both parse ``-p name=value``, and the runner must not import torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import yaml


class UsageError(Exception):
    """A usage error found before anything executes (the CLI exits with code 2).
    ``runner.RunnerError`` is this class."""


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["n_users=1000", "lr=1.0e-3"]`` -> ``{"n_users": 1000, "lr": 0.001}`` (YAML values)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise UsageError(f"bad parameter {item!r}: use NAME=VALUE")
        out[name.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def dataclass_values(cls: type, params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``params`` ready for ``cls(**values)``, and the names ``cls`` has no field for (sorted).
    YAML and papermill give lists where a dataclass field holds a tuple (``mlp``); those are
    made tuples. Callers raise their own error for the unknown names."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    values = {
        k: tuple(v) if isinstance(v, list) and isinstance(fields[k].default, tuple) else v
        for k, v in params.items()
        if k in fields
    }
    return values, unknown
