"""TWIN and every baseline of the paper, built from one ``ModelConfig``."""

from .attention import TwinAttention
from .config import LONG_MODULES, TWO_STAGE, ModelConfig
from .ctr import CTRModel, build_model
from .topk import merged_topk

__all__ = ["CTRModel", "LONG_MODULES", "ModelConfig", "TWO_STAGE", "TwinAttention", "build_model",
           "merged_topk"]  # fmt: skip
