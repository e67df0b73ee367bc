"""Datasets, few-shot draws and prompt templates.

- ``load_dataset(name, root=None, source="auto") -> Dataset``: the paper's eight datasets and
  CoOp's other three (``ptnl.data.datasets``), or a "toy-*" task (``ptnl.toy.load_task``);
  ``on_disk(name)`` says cheaply whether it would find the files.
- ``fewshot_indices(labels, shots, seed, allow_fewer=False)``: K images per class from a train
  split (``ptnl.data.sampling``; its random stream is independent of the noise's).
- ``TEMPLATES``, ``SIMPLE_TEMPLATES``, ``ensemble_templates(name)`` (``ptnl.data.templates``).
"""

from ptnl.data.base import Dataset, Split
from ptnl.data.datasets import (
    DATASETS,
    PAPER_DATASETS,
    SOURCES,
    SPECS,
    clean_classname,
    load_dataset,
    on_disk,
    resolve_name,
)
from ptnl.data.sampling import SHOTS, fewshot_indices, rng_stream
from ptnl.data.templates import SIMPLE_TEMPLATES, TEMPLATES, ensemble_templates

__all__ = [
    "DATASETS",
    "PAPER_DATASETS",
    "SHOTS",
    "SIMPLE_TEMPLATES",
    "SOURCES",
    "SPECS",
    "TEMPLATES",
    "Dataset",
    "Split",
    "clean_classname",
    "ensemble_templates",
    "fewshot_indices",
    "load_dataset",
    "on_disk",
    "resolve_name",
    "rng_stream",
]
