"""Datasets, few-shot draws and prompt templates.

- ``load_dataset(name, root=None, source="auto") -> Dataset``: the paper's eight datasets and
  CoOp's other three (``ptnl.data.datasets``), or a "toy-*" task (``ptnl.toy.load_task``);
  ``on_disk(name)`` says cheaply whether it would find the files, ``disk_status(name)`` also
  parses the split files and says what is wrong in one line.
- ``identity(name)``: a short string that changes whenever the data a run reads does
  (``Dataset.fingerprint()`` of what would load; "missing" when nothing is on disk), for run ids.
- ``check_images(split, refs=None)``: FileNotFoundError naming the missing images, before encoding.
  An unreadable image raises ``ImageReadError`` (an OSError and a ValueError) naming the file.
- ``fewshot_indices(labels, shots, seed, allow_fewer=False)``: K images per class from a train
  split (``ptnl.data.sampling``; its random stream is independent of the noise's).
- ``TEMPLATES``, ``SIMPLE_TEMPLATES``, ``ensemble_templates(name)`` (``ptnl.data.templates``).
"""

from ptnl.data.base import Dataset, ImageReadError, Split
from ptnl.data.datasets import (
    CORRUPT,
    DATASETS,
    MISSING,
    PAPER_DATASETS,
    SOURCES,
    SPECS,
    DiskStatus,
    check_images,
    clean_classname,
    disk_status,
    identity,
    load_dataset,
    on_disk,
    resolve_name,
)
from ptnl.data.sampling import SHOTS, fewshot_indices, rng_stream
from ptnl.data.templates import SIMPLE_TEMPLATES, TEMPLATES, ensemble_templates

__all__ = [
    "CORRUPT",
    "DATASETS",
    "MISSING",
    "PAPER_DATASETS",
    "SHOTS",
    "SIMPLE_TEMPLATES",
    "SOURCES",
    "SPECS",
    "TEMPLATES",
    "Dataset",
    "DiskStatus",
    "ImageReadError",
    "Split",
    "check_images",
    "clean_classname",
    "disk_status",
    "ensemble_templates",
    "fewshot_indices",
    "identity",
    "load_dataset",
    "on_disk",
    "resolve_name",
    "rng_stream",
]
