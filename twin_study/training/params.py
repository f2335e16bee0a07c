"""Validated configs from flat parameters (notebook parameters, ``-p name=value``).

``configs`` splits one flat mapping into a (ModelConfig, TrainConfig) pair by field name;
``model_config`` / ``train_config`` build one of them. The notebooks call them through
``analysis.sweeps`` (which re-exports them); ``twin-study train`` (``training.distributed``)
calls them here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..assignments import dataclass_values
from ..models.config import ModelConfig
from .train import TrainConfig


def _config(cls, kind: str, params: Mapping[str, Any]):
    values, unknown = dataclass_values(cls, params)
    if unknown:
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ValueError(f"unknown {kind} field(s) {unknown}; known: {known}")
    return cls(**values).validate()


def model_config(**params: Any) -> ModelConfig:
    """A validated ModelConfig from notebook parameters; unknown names are errors."""
    return _config(ModelConfig, "ModelConfig", params)


def train_config(**params: Any) -> TrainConfig:
    """A validated TrainConfig from notebook parameters; unknown names are errors."""
    return _config(TrainConfig, "TrainConfig", params)


def configs(params: Mapping[str, Any], **train_defaults: Any) -> tuple[ModelConfig, TrainConfig]:
    """Split flat notebook parameters into a (ModelConfig, TrainConfig) pair by field name.

    ``train_defaults`` (e.g. ``progress=False``) apply unless ``params`` sets them; a name
    that is neither a ModelConfig nor a TrainConfig field is an error.
    """
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(params) - model_fields - train_fields)
    if unknown:
        raise ValueError(
            f"unknown model/training parameter(s) {unknown}; ModelConfig: "
            f"{', '.join(sorted(model_fields))}; TrainConfig: {', '.join(sorted(train_fields))}"
        )
    model = model_config(**{k: v for k, v in params.items() if k in model_fields})
    train = {**train_defaults, **{k: v for k, v in params.items() if k in train_fields}}
    return model, train_config(**train)
