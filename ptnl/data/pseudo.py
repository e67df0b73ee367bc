"""Pseudo-labels: the K images per pseudo-class that UPL and Robust UPL (Section 5) train on.

``PseudoLabels`` are zero-shot CLIP's predictions on the whole unlabeled train split (made by
``ptnl.train.scores.pseudo_label``); ``select`` picks the training set from them and
``noisy_labels`` gives it as ``NoisyLabels`` (the pseudo-labels are the "noisy" labels; the ground
truth is kept beside them only to report pseudo-label accuracy). ``ptnl.data.labels`` serves them
as the label kinds ``pseudo_topk`` and ``pseudo_random``.

Selection rules (``select``):
- ``topk`` (UPL): per pseudo-class the K most confident images; ties go to the lower image index.
- ``random`` (Robust UPL): per pseudo-class K images drawn uniformly from those pseudo-labelled as
  that class, from the numpy stream ``rng_stream(selection_seed, UPL_STREAM, c)`` of that class
  alone (ptnl.data.sampling), so a class's draw depends only on its own pseudo-labelled images.
Either way every image appears at most once, under its arg-max class (UPL's rule). Classes with
fewer than K pseudo-labels (``fill``): ``"all"`` takes them all (UPL's behaviour); ``"replace"``
tops them up to K by drawing among them with replacement. A class nobody predicts gets none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptnl.core.checks import is_int
from ptnl.data.noise import NoisyLabels
from ptnl.data.sampling import check_seed, class_members, rng_stream

SELECTIONS = ("topk", "random")
FILLS = ("all", "replace")
UPL_STREAM = 11  # numpy stream id of the random selection (ptnl.data.sampling uses 1-3); never renumber
PSEUDO_KIND = "pseudo"  # NoisyLabels.kind of zero-shot pseudo-labels


@dataclass(frozen=True)
class PseudoLabels:
    """Zero-shot predictions on the whole train split (no ground truth is used to make them)."""

    pred: np.ndarray  # int64 [N]: arg-max class
    conf: np.ndarray  # float32 [N]: its softmax probability (UPL's confidence)
    n_classes: int


@dataclass(frozen=True)
class Selection:
    """The training set of one ensemble: indices into the train split and their pseudo-labels."""

    idx: np.ndarray  # int64 [M], grouped by pseudo-class (0..C-1)
    labels: np.ndarray  # int64 [M], the pseudo-label of each
    predicted: np.ndarray  # int64 [C]: train images pseudo-labelled as each class
    counts: np.ndarray  # int64 [C]: training samples of each pseudo-class
    shots: int

    @property
    def n_short_classes(self) -> int:
        """Classes predicted for at least one but fewer than K train images."""
        return int(((self.predicted > 0) & (self.predicted < self.shots)).sum())

    @property
    def n_empty_classes(self) -> int:
        return int((self.predicted == 0).sum())


def select(
    pl: PseudoLabels, shots: int, selection: str = "topk", fill: str = "all", seed: int = 1
) -> Selection:
    """K images per pseudo-class: the most confident (``topk``) or uniformly drawn (``random``).

    Each image is used at most once, for its arg-max class (before ``fill="replace"`` tops short
    classes up with duplicates). See the module docstring for short classes.
    """
    if not is_int(shots) or shots < 1:
        raise ValueError(
            f"shots must be an integer >= 1 (K images per pseudo-class; the paper uses 16), got {shots!r}"
        )
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if fill not in FILLS:
        raise ValueError(
            f"fill must be one of {FILLS} (what to do with classes predicted fewer than K times), "
            f"got {fill!r}"
        )
    seed = check_seed(seed)
    pred, conf = np.asarray(pl.pred, np.int64), np.asarray(pl.conf, np.float64)
    if pred.shape != conf.shape or pred.ndim != 1:
        raise ValueError(f"pred and conf must be 1-D of equal length, got {pred.shape} and {conf.shape}")
    idx, labels = [], []
    groups = class_members(pred, pl.n_classes)
    for c, m in enumerate(groups):
        rng = rng_stream(seed, UPL_STREAM, c)
        if selection == "topk":
            # Most confident first; lexsort's last key is primary, ties go to the lower index.
            take = m[np.lexsort((m, -conf[m]))][:shots]
        else:
            take = m[rng.permutation(len(m))[:shots]] if len(m) else m
        take = np.sort(take)
        if fill == "replace" and 0 < len(take) < shots:
            take = np.concatenate([take, rng.choice(take, shots - len(take), replace=True)])
        idx.append(take)
        labels.append(np.full(len(take), c, dtype=np.int64))
    idx = np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return Selection(
        idx,
        labels,
        np.array([len(m) for m in groups], np.int64),
        np.bincount(labels, minlength=pl.n_classes).astype(np.int64),
        int(shots),
    )


def noisy_labels(dataset, sel: Selection, seed: int):
    """The selection as ``NoisyLabels``: ``noisy`` = pseudo-labels, ``true`` = ground truth."""
    true = np.asarray(dataset.train.labels, np.int64)[sel.idx]
    wrong = sel.labels != true
    return NoisyLabels(
        true, sel.labels.copy(), wrong, PSEUDO_KIND, float(wrong.mean()) if len(wrong) else 0.0, seed
    )
