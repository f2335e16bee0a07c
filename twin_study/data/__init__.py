"""Data: the shared schema, the synthetic generator, real data and the sample builder."""

from .batching import Batch, SampleBuilder, cross_schema
from .registry import available, dataset_names, load_dataset, load_datasets
from .schema import BehaviourLog, Dataset, ItemTable, Samples, SchemaError
from .synthetic import SyntheticConfig, bayes_auc, generate

__all__ = [
    "Batch",
    "BehaviourLog",
    "Dataset",
    "ItemTable",
    "SampleBuilder",
    "Samples",
    "SchemaError",
    "SyntheticConfig",
    "available",
    "bayes_auc",
    "cross_schema",
    "dataset_names",
    "generate",
    "load_dataset",
    "load_datasets",
]
