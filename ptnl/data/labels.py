"""A run's training set and its labels: every way of making them behind one interface.

``training_set(dataset, request, scores)`` is all the engine asks. A ``LabelRequest`` names the
kind and its settings (``RunConfig.label_request()``); the kind draws the images and gives them
labels; ``scores`` is how a kind that needs a model's view of the images gets it (confusion noise
reads zero-shot probabilities, pseudo-labels zero-shot predictions on the whole train split),
a ``Scores`` object the engine builds (``ptnl.train.scores.Scorer``), so this layer never loads a
model and kinds that need none never load one.

The kinds (``KINDS``):
- relabelling a K-shot draw (``ptnl.data.noise``): ``symmetric``, ``symmetric_flip``, ``pair``,
  ``confusion``; the other code bases' protocols on the same draw (``ptnl.data.protocols``):
  ``nlprompt_sym``, ``nlprompt_asym``, ``instance``. On a dataset that ships real noisy labels
  (``Dataset.train_true_labels``) these give its own labels at rate 0.
- kinds that pick the images too: ``ptnl``, PTNL's sampler (its set changes with the rate);
  ``manifest``, a run's training set and labels read from a file (``ptnl.data.manifest``);
  ``pseudo_topk`` / ``pseudo_random``, zero-shot pseudo-labels with K images per pseudo-class
  (UPL / Robust UPL, ``ptnl.data.pseudo``).

Adding a label kind is one ``LabelSource`` in ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ptnl.core.checks import choice
from ptnl.data import manifest, protocols, pseudo
from ptnl.data.noise import CONFUSION_FROM, NoisyLabels, add_noise
from ptnl.data.noise import KINDS as RELABEL_KINDS
from ptnl.data.sampling import fewshot_indices

REAL_KIND = "real"  # NoisyLabels.kind of a dataset's own noisy labels
PSEUDO_KINDS = {"pseudo_topk": "topk", "pseudo_random": "random"}  # kind -> pseudo.select's rule


@dataclass(frozen=True)
class LabelRequest:
    kind: str
    shots: int
    noise_rate: float
    seed: int  # the draw's and the noise's seed (their streams are independent: ptnl.data.sampling)
    confusion_from: str = "matrix"  # confusion only
    noise_file: str | None = None  # manifest only
    fill: str = "all"  # pseudo kinds only: classes predicted fewer than K times (pseudo.FILLS)
    selection_seed: int | None = None  # pseudo kinds only: the selection's seed (None: ``seed``)


@dataclass(frozen=True)
class TrainingSet:
    idx: np.ndarray  # int64 [N]: indices into the dataset's train split
    labels: NoisyLabels  # over idx
    info: dict = field(default_factory=dict)  # what the run's metrics record of how it was made


class Scores(Protocol):
    def probs(self, idx: np.ndarray):  # [len(idx), C] zero-shot probabilities of train images
        ...

    def top1(self) -> pseudo.PseudoLabels:  # zero-shot arg-max and confidence on all of train
        ...


@dataclass(frozen=True)
class LabelSource:
    make: Callable[[object, LabelRequest, Scores | None], TrainingSet]
    # Config fields (beside the loss and optimiser's) in which runs of this kind may differ and
    # still train in one batched group: their training sets have the same size and images order.
    group_across: tuple[str, ...] = ()
    # The request fields this kind reads beyond kind, shots, seed (the others must stay at their defaults).
    reads: tuple[str, ...] = ("noise_rate",)


def _real_or_clean(ds, req: LabelRequest, idx):
    """A dataset's own noisy labels at rate 0 (None: the dataset is clean, relabel it)."""
    real = ds.train_true_labels
    if real is None:
        return None
    true, given = real[idx], ds.train.labels[idx]
    if req.noise_rate == 0.0:
        return NoisyLabels(true, given, (given != true) & (true >= 0), REAL_KIND, 0.0, req.seed)
    if not np.array_equal(true, given):
        raise ValueError(
            f"{ds.name} carries real noisy labels: train on them at noise_rate 0, or add synthetic "
            "noise to its clean variant (e.g. CIFAR10N-clean)"
        )
    return None


def _draw(ds, req):
    return fewshot_indices(ds.train.labels, req.shots, req.seed, n_classes=ds.n_classes)


def _relabel(ds, req, scores):
    idx = _draw(ds, req)
    labels = _real_or_clean(ds, req, idx)
    if labels is None:
        p = scores.probs(idx) if req.kind == "confusion" and req.noise_rate > 0 else None
        true = ds.train.labels[idx]
        labels = add_noise(true, ds.n_classes, req.kind, req.noise_rate, req.seed, p, req.confusion_from)
    return TrainingSet(idx, labels)


def _pooled(ds, req, scores):
    idx = _draw(ds, req)
    labels = _real_or_clean(ds, req, idx)
    if labels is None:
        labels = protocols.pooled_noise(
            ds.train.labels[idx], ds.n_classes, req.kind, req.noise_rate, req.seed
        )
    return TrainingSet(idx, labels)


def _instance(ds, req, scores):
    idx = _draw(ds, req)
    labels = _real_or_clean(ds, req, idx)
    if labels is None:
        rate = req.noise_rate
        pixels = protocols.instance_pixels(ds.train, idx) if rate > 0 else np.zeros((len(idx), 1))
        labels = protocols.instance_noise(ds.train.labels[idx], ds.n_classes, rate, req.seed, pixels)
    return TrainingSet(idx, labels)


def _sampler(ds, req, scores):
    if ds.train_true_labels is not None and not np.array_equal(ds.train_true_labels, ds.train.labels):
        raise ValueError(
            f"{ds.name} carries real noisy labels; PTNL's sampler makes synthetic ones: use the default "
            "noise_kind at noise_rate 0 (or the sampler on its clean variant, e.g. CIFAR10N-clean)"
        )
    return TrainingSet(
        *protocols.ptnl_fewshot(ds.train.labels, ds.n_classes, req.shots, req.noise_rate, req.seed)
    )


def _manifest(ds, req, scores):
    return TrainingSet(*manifest.read_manifest(req.noise_file, ds))


def _pseudo(ds, req, scores):
    pl = scores.top1()
    seed = req.seed if req.selection_seed is None else req.selection_seed
    sel = pseudo.select(pl, req.shots, PSEUDO_KINDS[req.kind], req.fill, seed)
    labels = pseudo.noisy_labels(ds, sel, seed)
    gt = np.asarray(ds.train.labels, np.int64)
    info = {
        "pseudo_label_acc": float(1.0 - labels.is_noisy.mean()) if len(sel.idx) else float("nan"),
        "zeroshot_train_acc": float((pl.pred == gt).mean()) if len(gt) else float("nan"),
        "n_unique": int(len(np.unique(sel.idx))),
        "n_short_classes": sel.n_short_classes,
        "n_empty_classes": sel.n_empty_classes,
        "class_counts": sel.counts.tolist(),
        "predicted_counts": sel.predicted.tolist(),
    }
    return TrainingSet(sel.idx, labels, info)


_RELABEL_GROUP = ("seed", "noise_kind", "confusion_from", "noise_rate")
KINDS: dict[str, LabelSource] = {
    **{
        k: LabelSource(
            _relabel,
            _RELABEL_GROUP,
            ("noise_rate", "confusion_from") if k == "confusion" else ("noise_rate",),
        )
        for k in RELABEL_KINDS
    },
    **{k: LabelSource(_pooled, _RELABEL_GROUP) for k in protocols.POOLED_KINDS},
    protocols.INSTANCE_KIND: LabelSource(_instance, _RELABEL_GROUP),
    protocols.PTNL_KIND: LabelSource(_sampler),
    manifest.MANIFEST_KIND: LabelSource(_manifest, reads=("noise_file",)),
    # The selection depends on selection_seed, not seed: an ensemble's members train together.
    **{k: LabelSource(_pseudo, ("seed",), reads=("fill", "selection_seed")) for k in PSEUDO_KINDS},
}
_DEFAULTS = LabelRequest("", 1, 0.0, 1)


def check(req: LabelRequest) -> None:
    """A ValueError naming the setting that does not belong to ``req.kind``, or a bad value."""
    if req.kind not in KINDS:
        raise ValueError(f"noise_kind must be one of {', '.join(KINDS)}, got {req.kind!r}")
    src = KINDS[req.kind]
    choice("confusion_from", req.confusion_from, CONFUSION_FROM)
    for name, hint in (
        ("confusion_from", "only applies to noise_kind='confusion'; leave it at 'matrix'"),
        ("fill", "only applies to the pseudo-label kinds (pseudo_topk, pseudo_random); leave it at 'all'"),
        (
            "selection_seed",
            "only applies to the pseudo-label kinds (pseudo_topk, pseudo_random); leave it at None",
        ),
    ):
        if name not in src.reads and getattr(req, name) != getattr(_DEFAULTS, name):
            raise ValueError(f"{name}={getattr(req, name)!r} {hint} (got noise_kind={req.kind!r})")
    if (req.kind == manifest.MANIFEST_KIND) != (req.noise_file is not None):
        raise ValueError(
            "noise_kind='manifest' and noise_file go together: set noise_file to the manifest's path "
            "(export one with `python -m ptnl noise export`), or leave noise_file at None"
        )
    if "noise_rate" not in src.reads and req.noise_rate != 0.0:
        what = "its file" if req.kind == manifest.MANIFEST_KIND else "zero-shot pseudo-labels"
        raise ValueError(f"a {req.kind} run's labels come from {what}: leave noise_rate at 0.0")
    if req.fill not in pseudo.FILLS:
        raise ValueError(
            f"fill must be one of {pseudo.FILLS} (classes predicted fewer than K times), got {req.fill!r}"
        )
    if req.selection_seed is not None and req.selection_seed < 0:
        raise ValueError(f"selection_seed must be an integer >= 0 or None, got {req.selection_seed!r}")


def training_set(ds, req: LabelRequest, scores: Scores | None = None) -> TrainingSet:
    """The training images (indices into ``ds.train``) and their labels under ``req``."""
    check(req)
    return KINDS[req.kind].make(ds, req, scores)
