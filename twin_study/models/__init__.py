"""TWIN and every baseline of the paper, built from one ``ModelConfig``; the lifelong modules
are declared in ``models/lifelong/`` and listed by ``models.registry``."""

from . import lifelong, registry  # noqa: F401 -- lifelong registers the study's modules
from .attention import TwinAttention
from .config import ModelConfig
from .ctr import CTRModel, build_model
from .topk import merged_topk

__all__ = ["CTRModel", "ModelConfig", "TwinAttention", "build_model", "merged_topk", "registry"]
