"""Synthetic label noise on a few-shot training set.

``add_noise(true_labels, n_classes, kind, noise_rate, seed, scores=None)`` returns the true and
noisy labels side by side. Kinds:

- ``"symmetric"`` (the paper's default protocol): in every class exactly round(r * n_c) of its
  n_c samples (n_c = K shots) get a wrong label, drawn uniformly from the other C - 1 classes.
  Rates used by the paper: 0, 0.125, 0.25, 0.5 (2, 4, 8 of 16 shots).
- ``"symmetric_flip"``: each sample independently gets a wrong label with probability r (the
  per-sample variant common in the label-noise literature; here too never the true class, so
  r is the expected fraction of wrong labels, not (C-1)/C of it).
- ``"pair"`` (asymmetric, e.g. Han et al. 2018): class c -> c + 1 (mod C), exact count per class.
- ``"confusion"`` (Section 4.6): exact count per class; each noisy sample gets the wrong class
  zero-shot CLIP favours most. ``scores`` is either a [C, C] confusion matrix (rows = true
  class) or the zero-shot probabilities [N, C] of the same N samples. ``confusion_from``
  (``RunConfig.confusion_from``, notebook 06's parameter of the same name):
    * ``"matrix"`` (default): one wrong class per true class, the row's largest off-diagonal
      entry. From [N, C] probabilities the matrix counts arg-max predictions per true class,
      ties broken by mean probability. Default because the paper first measures the zero-shot
      confusion matrix (Fig. 6) and then labels each mislabelled sample with "the incorrect class
      most favoured by zero-shot CLIP": a class-level, fully correlated corruption, the hard case
      the section is about.
    * ``"sample"``: each sample's own top wrong class from its [N, C] probabilities (closer to
      UPL-style pseudo-label noise, and different images of one class can go to different
      classes).
  A [C, C] array is read as a matrix whenever confusion_from="matrix", even when N == C.

Reproducibility and nesting. Everything random comes from ``rng_stream(seed, NOISE_STREAM, c)``
(one stream per class, ``ptnl.data.sampling``), which the few-shot draw never touches: the noise
cannot change which images are in the few-shot set. Per class we always draw, whatever the kind
and rate, (a) a random order of the class's samples, (b) a uniform u per sample, (c) a wrong
class per sample. The exact-count kinds mislabel the first round(r * n_c) samples of the order,
the flip kind those with u < r, and the wrong class never depends on r. Hence the noise is
**nested**: for r1 < r2, every sample noisy at r1 is noisy at r2 with the same wrong label; and
at one seed, symmetric, pair and confusion noise mislabel the same samples (paired comparisons).

Where we depart from PTNL's sampler (its utils.py). PTNL draws the K clean shots of class c from
the first half of c's images, then overwrites the first ``num_fp`` of them with donor images from
other classes' second halves, all labelled c. We draw K shots from the whole train split and
relabel round(r * K) of them. Why:
- the few-shot image set is the same at every noise rate (in PTNL raising ``num_fp`` swaps images
  in and out), so accuracy differences across rates are due to the labels alone;
- no half-split: PTNL's pools are half the class, which forces sampling with replacement (and
  silently fewer unique images, more noise) for small classes of Caltech101, Flowers102, Cars;
- the noise is nested across rates and reproducible from one seed (PTNL mixes numpy and Python
  ``random`` streams).
What stays the same: exactly round(r * K) wrong labels per class, never the true label, wrong
classes uniform over the other classes. What differs: in PTNL each *labelled* class holds exactly
K samples of which num_fp are foreign; here each *true* class has exactly round(r * K) of its K
images mislabelled, so the count of samples carrying label c is K only in expectation
(K - m + about Poisson(m) incoming at C >> 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptnl.core.checks import is_number
from ptnl.data.sampling import NOISE_STREAM, check_labels, check_seed, class_members, rng_stream

KINDS = ("symmetric", "symmetric_flip", "pair", "confusion")  # RunConfig.noise_kind
# Confusion noise's wrong class: "matrix", one per true class from zero-shot's confusion matrix
# (the paper's Sec. 4.6); "sample", each image's own top wrong class (see the module docstring).
CONFUSION_FROM = ("matrix", "sample")
EXACT_KINDS = ("symmetric", "pair", "confusion")  # exactly round(r * n_c) noisy per class
PAPER_NOISE_RATES = (0.0, 0.125, 0.25, 0.5)


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    true: np.ndarray  # int64 [N], ground truth; -1 where unknown (real noisy labels, Food-101N)
    noisy: np.ndarray  # int64 [N], what training sees
    is_noisy: np.ndarray  # bool [N], noisy != true where the truth is known
    kind: str
    noise_rate: float
    seed: int

    def __post_init__(self):
        if not (self.true.shape == self.noisy.shape == self.is_noisy.shape):
            raise ValueError("true, noisy and is_noisy must have the same shape")
        if not np.array_equal(self.is_noisy, (self.noisy != self.true) & self.known):
            raise ValueError("is_noisy must equal (noisy != true) where the truth is known")

    def __len__(self) -> int:
        return len(self.true)

    @property
    def known(self) -> np.ndarray:
        """bool [N]: samples whose true label is known (all, but for real noisy labels)."""
        return self.true >= 0

    @property
    def n_noisy(self) -> int:
        return int(self.is_noisy.sum())

    @property
    def actual_rate(self) -> float:
        """Fraction of samples whose label is wrong (== noise_rate up to per-class rounding), among
        those whose truth is known."""
        known = self.known
        return float(self.is_noisy[known].mean()) if known.any() else 0.0


def n_noisy_per_class(noise_rate: float, n: int) -> int:
    """round(r * n), rounded half up (Python's round() would give round(0.5) = 0)."""
    return int(np.floor(noise_rate * n + 0.5 + 1e-9))


def add_noise(
    true_labels,
    n_classes: int,
    kind: str = "symmetric",
    noise_rate: float = 0.0,
    seed: int = 1,
    scores=None,
    confusion_from: str = "matrix",
) -> NoisyLabels:
    """Noisy labels for ``true_labels`` (int [N] in [0, n_classes)); see the module docstring."""
    true, n_classes = check_labels(true_labels, n_classes, what="true_labels")
    seed = check_seed(seed)
    if kind not in KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if not is_number(noise_rate):
        raise ValueError(f"noise_rate must be a number in [0, 1), got {noise_rate!r}")
    noise_rate = float(noise_rate)
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(
            f"noise_rate={noise_rate} is outside [0, 1); it is a fraction (the paper's rates are "
            f"{', '.join(map(str, PAPER_NOISE_RATES))}), not a percentage"
        )
    if noise_rate > 0 and n_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes (no wrong label exists), got {n_classes}")
    if kind != "confusion" and scores is not None:
        raise ValueError(f"scores are only used by kind='confusion', not {kind!r}")
    if confusion_from not in CONFUSION_FROM:
        raise ValueError(f"confusion_from={confusion_from!r}; use one of {CONFUSION_FROM}")

    n = len(true)
    rank = np.zeros(n, dtype=np.int64)  # position of each sample in its class's random order
    u = np.zeros(n)
    offset = np.ones(n, dtype=np.int64)  # wrong class = (true + offset) mod C, offset in [1, C)
    for c, members in enumerate(class_members(true, n_classes)):
        if len(members) == 0:
            continue
        rng = rng_stream(seed, NOISE_STREAM, c)
        # Always the same three draws in the same order: the streams cannot depend on kind or rate.
        rank[members[rng.permutation(len(members))]] = np.arange(len(members))
        u[members] = rng.random(len(members))
        offset[members] = rng.integers(1, max(n_classes, 2), size=len(members))

    if kind == "symmetric_flip":
        flip = u < noise_rate
    else:
        counts = np.bincount(true, minlength=n_classes)
        flip = rank < np.array([n_noisy_per_class(noise_rate, k) for k in counts], dtype=np.int64)[true]

    if kind in ("symmetric", "symmetric_flip"):
        wrong = (true + offset) % max(n_classes, 1)
    elif kind == "pair":
        wrong = (true + 1) % n_classes if n_classes else true
    else:
        wrong = _confusion_targets(true, n_classes, scores, confusion_from, needed=noise_rate > 0)

    noisy = np.where(flip, wrong, true)
    return NoisyLabels(true, noisy, noisy != true, kind, noise_rate, seed)


def _confusion_targets(true, n_classes, scores, confusion_from, needed):
    """Per sample: the wrong class zero-shot CLIP favours most (see the module docstring)."""
    n = len(true)
    if scores is None:
        if needed:
            raise ValueError(
                "kind='confusion' needs scores: a [C, C] zero-shot confusion matrix or the zero-shot "
                f"probabilities [N, C] = [{n}, {n_classes}] of the same samples"
            )
        return true.copy()
    if hasattr(scores, "detach"):  # a torch tensor
        scores = scores.detach().cpu().numpy()
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != n_classes or s.shape[0] not in (n, n_classes):
        raise ValueError(
            f"scores must be [C, C] = [{n_classes}, {n_classes}] or [N, C] = [{n}, {n_classes}], got {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    off_diag = ~np.eye(n_classes, dtype=bool)

    if confusion_from == "sample":
        if s.shape[0] != n:
            raise ValueError(f"confusion_from='sample' needs per-sample scores [N, C] = [{n}, {n_classes}]")
        masked = np.where(np.arange(n_classes)[None, :] == true[:, None], -np.inf, s)
        return masked.argmax(axis=1)

    if s.shape == (n_classes, n_classes):
        matrix = np.where(off_diag, s, -np.inf)
        return matrix.argmax(axis=1)[true]
    # [N, C] probabilities -> confusion matrix of arg-max predictions, ties by mean probability.
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (true, s.argmax(axis=1)), 1.0)
    sums = np.zeros((n_classes, n_classes))
    np.add.at(sums, true, s)
    target = np.empty(n_classes, dtype=np.int64)
    for c in range(n_classes):
        cand = np.flatnonzero(off_diag[c])
        # lexsort: the last key is primary; negated and stable, so a full tie goes to the lower index.
        target[c] = cand[np.lexsort((-sums[c, cand], -counts[c, cand]))[0]]
    return target[true]
