"""Noise manifests: a run's noisy training set as a file another code base can train on.

A manifest is a CSV file with one row per training sample, in training-set order:

    sample_id,image_path,true_label,given_label,true_class,given_class

- ``sample_id``: the image's index in ptnl's train split of the dataset;
- ``image_path``: its path relative to the dataset's image folder, as CoOp's split files write it
  (a toy image's ref for the toy world);
- ``true_label``, ``given_label``: 0-based class indices (``given`` is what training sees; -1 where
  the truth is unknown, as for the unverified part of Food-101N);
- ``true_class``, ``given_class``: the class names, for a reader's eye (ignored on read).

``write_manifest`` exports (atomically); ``read_manifest`` checks a file against the dataset it is
read for (every path must be the train image of that id, every label in range) and returns the
indices and labels a run trains on (``RunConfig(noise_kind="manifest", noise_file=...)``). A run
trained from the manifest of another run, with that run's other settings, is that run: the same
images in the same order with the same labels give the same views, batches and numbers.
``manifest_digest`` is the file's content hash, which enters the run id.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np

from ptnl.core.files import atomic_write_bytes
from ptnl.core.paths import REPO_ROOT
from ptnl.data.noise import NoisyLabels

COLUMNS = ("sample_id", "image_path", "true_label", "given_label", "true_class", "given_class")
MANIFEST_KIND = "manifest"
UNKNOWN = -1  # a true label nobody knows


def write_manifest(path, dataset, idx, labels: NoisyLabels) -> Path:
    """Write the training set ``idx`` (indices into ``dataset.train``) with ``labels`` to ``path``."""
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) != len(labels):
        raise ValueError(f"{len(idx)} sample ids but {len(labels)} labels")
    names = dataset.classnames
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for i, t, g in zip(idx.tolist(), labels.true.tolist(), labels.noisy.tolist()):
        w.writerow([i, dataset.train.refs[i], t, g, names[t] if t >= 0 else "", names[g]])
    path = resolve(path)
    atomic_write_bytes(path, out.getvalue().encode())
    return path


def manifest_digest(path) -> str:
    """sha256 (16 hex digits) of the file's bytes; a missing file is a one-line error."""
    return hashlib.sha256(_bytes(path)).hexdigest()[:16]


def resolve(path) -> Path:
    """A manifest path: absolute as given, relative from the repository root (as notebooks and the
    Makefile resolve every path, whatever folder their kernel runs in)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _bytes(path) -> bytes:
    path = resolve(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"noise manifest {path} not found: export one with `python -m ptnl noise export` "
            "(or write a CSV with columns " + ",".join(COLUMNS[:4]) + ")"
        )
    return path.read_bytes()


def read_manifest(path, dataset) -> tuple[np.ndarray, NoisyLabels]:
    """The indices into ``dataset.train`` and their labels, as ``path`` lists them (module docstring)."""
    text = _bytes(path).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    head = text.splitlines()[0].split(",") if text else []
    missing = [c for c in COLUMNS[:4] if c not in head]
    if missing:
        raise ValueError(
            f"noise manifest {path} lacks the column(s) {', '.join(missing)}; it needs {COLUMNS[:4]}"
        )
    if not rows:
        raise ValueError(f"noise manifest {path} lists no samples")
    n_train, n_classes = len(dataset.train), dataset.n_classes
    idx, true, given = [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            i, t, g = int(row["sample_id"]), int(row["true_label"]), int(row["given_label"])
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}:{line}: sample_id, true_label and given_label must be integers"
            ) from None
        if not 0 <= i < n_train:
            raise ValueError(
                f"{path}:{line}: sample_id {i} is outside {dataset.name}'s train split (0..{n_train - 1})"
            )
        if dataset.train.refs[i] != row["image_path"]:
            raise ValueError(
                f"{path}:{line}: sample {i} is {dataset.train.refs[i]!r} in {dataset.name}'s train split, not "
                f"{row['image_path']!r}: the manifest was made for another split of the data"
            )
        if not (0 <= g < n_classes and (t == UNKNOWN or 0 <= t < n_classes)):
            raise ValueError(f"{path}:{line}: labels must lie in [0, {n_classes}) (true_label may be -1)")
        idx.append(i)
        true.append(t)
        given.append(g)
    true, given = np.asarray(true, np.int64), np.asarray(given, np.int64)
    wrong = (given != true) & (true != UNKNOWN)
    rate = float(wrong[true != UNKNOWN].mean()) if (true != UNKNOWN).any() else 0.0
    return np.asarray(idx, np.int64), NoisyLabels(true, given, wrong, MANIFEST_KIND, rate, 0)
