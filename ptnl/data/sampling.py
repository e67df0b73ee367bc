"""Seeded random streams, the K-shot draw, and the fixed splits we make for datasets without one.

One user seed (the paper's 1..4) drives several draws: the few-shot set, the label noise, the
splits we make for datasets that ship without one. Each draw gets its own stream, derived from
the seed with numpy's ``SeedSequence(seed, spawn_key=(stream, class))``, so that

- changing the noise (kind, rate) never changes which images are in the few-shot set;
- one class's draw depends only on that class's images (adding images of class 3 does not
  reshuffle class 7).

CoOp instead seeds Python's global ``random`` (``random.sample`` per label, its datasets/*.py) and
PTNL mixes that with a ``numpy.default_rng(seed)`` (its utils.py). Neither is reproducible in
isolation, so our 16-shot sets differ from theirs for the same seed number.
"""

from __future__ import annotations

import warnings

import numpy as np

from ptnl.core.checks import is_int

# Stream ids: the first entry of every spawn_key. Never renumber (it would change every draw).
FEWSHOT_STREAM = 1
NOISE_STREAM = 2
SPLIT_STREAM = 3
SHOTS = 16  # the paper's K
SPLIT_SEED = 0  # our own 50/20/30 splits are fixed: never the user's seed, like CoOp's JSONs
P_TRAIN, P_VAL = 0.5, 0.2


def check_seed(seed) -> int:
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def rng_stream(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for (seed, key), e.g. ``rng_stream(seed, NOISE_STREAM, c)``."""
    return np.random.default_rng(
        np.random.SeedSequence(check_seed(seed), spawn_key=tuple(int(k) for k in key))
    )


def check_labels(labels, n_classes: int | None = None, what: str = "labels") -> tuple[np.ndarray, int]:
    """Labels as a 1-D int64 array and the number of classes (given, or max + 1)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n_classes is None:
        n_classes = int(arr.max()) + 1 if arr.size else 0
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{what} must lie in [0, {n_classes}), got values in [{arr.min()}, {arr.max()}]")
    return arr, int(n_classes)


def class_members(labels: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """For each class, the ascending indices of its samples (one stable sort, not C scans of N)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_classes + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(n_classes)]


def _short_hint(smallest: int) -> str:
    # What a user can change from a run config (shots, dataset); allow_fewer is library-only.
    other = "use another dataset or train split with more images per class"
    if smallest == 0:
        return f"A class with no training images cannot be drawn from: {other}."
    return (
        f"Lower shots to at most {smallest} (the smallest class's size), or {other} "
        "(library callers: fewshot_indices(..., allow_fewer=True) takes all the images of short classes)."
    )


def fewshot_indices(
    labels, shots: int = SHOTS, seed: int = 1, allow_fewer: bool = False, n_classes: int | None = None
) -> np.ndarray:
    """Indices of ``shots`` images per class drawn without replacement, grouped by class.

    ``labels`` are the train split's labels. Each class's indices come out sorted, classes in
    order 0..C-1, so the result is a canonical set (independent of draw order).
    A class with fewer than ``shots`` images (``n_classes`` counts classes with none) is an
    error, unless ``allow_fewer=True``: then all its images are taken and a warning lists the
    short classes with their counts.
    """
    labels, n_classes = check_labels(labels, n_classes)
    if not is_int(shots) or shots < 1:
        raise ValueError(f"shots must be an integer >= 1, got {shots!r}")
    seed = check_seed(seed)
    chosen, short = [], {}
    for c, members in enumerate(class_members(labels, n_classes)):
        if len(members) < shots:
            short[c] = len(members)
            chosen.append(members)
            continue
        pick = rng_stream(seed, FEWSHOT_STREAM, c).choice(members, size=shots, replace=False)
        chosen.append(np.sort(pick))
    if short:
        listing = ", ".join(f"class {c}: {n}" for c, n in list(short.items())[:20])
        more = f" (and {len(short) - 20} more)" if len(short) > 20 else ""
        msg = f"{len(short)} class(es) have fewer than {shots} training images: {listing}{more}"
        if not allow_fewer:
            raise ValueError(f"{msg}. {_short_hint(min(short.values()))}")
        warnings.warn(f"{msg}; taking all of their images (allow_fewer=True).", stacklevel=2)
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def split_per_class(refs: list[str], labels: list[int], n_classes: int):
    """A fixed per-class 50/20/30 split (CoOp's proportions for datasets without one), seed 0."""
    order = sorted(range(len(refs)), key=lambda i: refs[i])  # file order must not matter
    refs = [refs[i] for i in order]
    labels = np.asarray(labels, dtype=np.int64)[order]
    parts = {"train": [], "val": [], "test": []}
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        members = members[rng_stream(SPLIT_SEED, SPLIT_STREAM, c).permutation(len(members))]
        n_train = int(np.floor(len(members) * P_TRAIN + 0.5))
        n_val = int(np.floor(len(members) * P_VAL + 0.5))
        parts["train"] += members[:n_train].tolist()
        parts["val"] += members[n_train : n_train + n_val].tolist()
        parts["test"] += members[n_train + n_val :].tolist()
    return {k: ([refs[i] for i in sorted(v)], labels[sorted(v)]) for k, v in parts.items()}
