"""Training, evaluation and the study's one experiment entry point."""

from .experiment import RunResult, run
from .metrics import all_metrics, auc, gauc, logloss
from .train import TrainConfig, TrainResult, evaluate, fit, predict

__all__ = ["RunResult", "TrainConfig", "TrainResult", "all_metrics", "auc", "evaluate", "fit",
           "gauc", "logloss", "predict", "run"]  # fmt: skip
