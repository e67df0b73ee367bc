"""Datasets, few-shot draws and prompt templates.

- ``load_dataset(name, root=None, source="auto") -> Dataset``: a dataset registered in memory
  under ``name``, the paper's eight datasets and CoOp's other three (``ptnl.data.readers``, named
  in ``ptnl.data.specs``), or a "toy-*" task (``ptnl.data.toy.tasks.load_task``); ``on_disk(name)``
  says cheaply whether it would find the files, ``disk_status(name)`` (``ptnl.data.disk``) also
  parses the split files and says what is wrong in one line.
- ``NOISY_DATASETS``, ``load_noisy_set(name)``, ``noisy_on_disk(name)`` (``ptnl.data.noisy_sets``):
  the real noisy-label benchmarks Food101N, CIFAR10N-{aggre,worse,random1..3,clean}, CIFAR100N(-clean),
  read as they ship (``load_dataset`` dispatches to them too); their ``Dataset.train_true_labels``
  holds the ground truth where known (-1 elsewhere), ``train.labels`` the noisy labels.
- ``register_dataset(ds)``, ``unregister_dataset(name)``, ``registered(name)``: hand ptnl a
  ``Dataset`` that no loader on disk knows (``ptnl.data.registry``); ``get_dataset(name)``
  (``ptnl.data.readers``) is what a run loads: the registered one, else ``load_dataset(name)``
  once per process.
- ``identity(name)``: a short string that changes whenever the data a run reads does
  (``Dataset.fingerprint()`` of what would load; "missing" when nothing is on disk), for run ids.
- ``check_images(split, refs=None)``: FileNotFoundError naming the missing images, ``ImageReadError``
  (an OSError and a ValueError) the unreadable ones, before encoding; loading an unreadable image
  raises it too, naming the file.
- ``fewshot_indices(labels, shots, seed, allow_fewer=False)``: K images per class from a train
  split (``ptnl.data.sampling``; its random stream is independent of the noise's).
- ``SPECS``, ``dataset_names()`` (``ptnl.data.specs``): each real dataset declared once, as a
  ``Spec`` (names, folders, sources, template, files, sizes); every module reads it from there.
- ``TEMPLATES``, ``NOISY_TEMPLATES``, ``SIMPLE_TEMPLATES``, ``template(name)``,
  ``ensemble_templates(name)`` (``ptnl.data.templates``).
"""

from ptnl.data.base import Dataset, ImageReadError, Split
from ptnl.data.disk import CORRUPT, MISSING, DiskStatus, check_images, disk_status, identity
from ptnl.data.noisy_sets import NOISY_DATASETS, load_noisy_set, noisy_on_disk
from ptnl.data.readers import get_dataset, load_dataset, on_disk
from ptnl.data.registry import register_dataset, registered, unregister_dataset
from ptnl.data.sampling import SHOTS, fewshot_indices, rng_stream
from ptnl.data.specs import (
    DATASETS,
    PAPER_DATASETS,
    SOURCES,
    SPECS,
    clean_classname,
    dataset_names,
    resolve_name,
)
from ptnl.data.templates import NOISY_TEMPLATES, SIMPLE_TEMPLATES, TEMPLATES, ensemble_templates, template

__all__ = [
    "CORRUPT",
    "DATASETS",
    "MISSING",
    "NOISY_DATASETS",
    "NOISY_TEMPLATES",
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
    "dataset_names",
    "disk_status",
    "ensemble_templates",
    "fewshot_indices",
    "get_dataset",
    "identity",
    "load_dataset",
    "load_noisy_set",
    "noisy_on_disk",
    "on_disk",
    "register_dataset",
    "registered",
    "resolve_name",
    "rng_stream",
    "template",
    "unregister_dataset",
]
