"""Sweeps over models x seeds x settings, and their tidy summaries.

Notebooks 03-05 call this module; nothing here trains by itself: every model goes through
``twin_study.training.run``, whose results cache is keyed by the full configuration, so a
sweep that is repeated or interrupted never retrains what it already has.

The pieces:

* the paper's Table 4 as a data frame (``PAPER_TABLE4``, from ``twin_study.paper``) and the
  models' labels;
* ``configs`` / ``model_config`` / ``train_config`` (from ``training.params``): validated
  configs from notebook parameters (the notebooks' data sets come from
  ``twin_study.data.load_datasets``);
* ``Setting``: a labelled ``ModelConfig`` plus tag columns (``{"long_len": 1000}``), and
  ``table4_settings`` for the nine models of the paper's Table 4;
* ``sweep``: one tidy row per (setting, seed) with AUC / GAUC / LogLoss and training facts;
* summaries: ``summarize`` (mean, std, n_seeds), ``relative_improvement`` (percent of a
  baseline's mean, as the paper reports it), ``lead_over``, ``check_table``, and inference
  ``timings``.

The paper's claims checked on these runs are in ``twin_study.claims``; markdown tables and the
records of results.json in ``tables``.

One module per job: ``settings``, ``run`` (the sweep), ``curves`` (learning curves),
``tuning``, ``stats`` (LogLoss noise and the summaries) and ``inference`` (timings); every
public name is re-exported here, so ``sweeps.X`` is the way to call them.
"""

from ...training.params import configs, model_config, train_config
from .curves import curve_status, learning_curves
from .inference import inference_time, timings
from .run import RUN_FACTS, stable_runs, sweep, sweep_or_none
from .settings import PAPER_TABLE4, Setting, module_settings, table4_settings, vary
from .stats import (
    HIGHER_IS_BETTER,
    METRICS,
    bayes_auc_or_none,
    check_table,
    eval_logloss_se,
    gap_closure,
    lead_over,
    logloss_se,
    relative_improvement,
    summarize,
    with_relative,
)
from .tuning import select_per_setting, tuning_choice, tuning_settings

# ``configs`` / ``model_config`` / ``train_config`` are defined in ``training.params``: the
# notebooks call them from here.

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "PAPER_TABLE4",
    "RUN_FACTS",
    "Setting",
    "bayes_auc_or_none",
    "check_table",
    "configs",
    "curve_status",
    "eval_logloss_se",
    "gap_closure",
    "inference_time",
    "lead_over",
    "learning_curves",
    "logloss_se",
    "model_config",
    "module_settings",
    "relative_improvement",
    "select_per_setting",
    "stable_runs",
    "summarize",
    "sweep",
    "sweep_or_none",
    "table4_settings",
    "timings",
    "train_config",
    "tuning_choice",
    "tuning_settings",
    "vary",
    "with_relative",
]
