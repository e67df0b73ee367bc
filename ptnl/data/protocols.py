"""Noise protocols that choose the few-shot images themselves, or read more than the labels.

``ptnl.data.noise`` relabels a few-shot set drawn beforehand (``fewshot_indices``). The protocols
here are the ones other code bases use, reproduced so that their numbers can be set beside ours:

- ``ptnl_fewshot`` (noise kind ``"ptnl"``): the paper's own sampler, as PTNL's code runs it
  (``select_top_k_similarity_per_class_with_noisy_label`` in its trainers/utils.py, commit
  ce2b334). Each class c's train images, in split order, are cut at ceil(n_c / 2): the first half
  H1_c holds the clean candidates, the second half H2_c the noise donors. For c = 0, 1, ..., C-1:
    1. ``num_fp`` donors are drawn **with replacement** (Python's ``random.choices``) from the
       set of all second halves minus H1_c, H2_c and every donor already drawn for an earlier
       class, listed in CPython's iteration order of that set;
    2. K indices into H1_c are drawn with one numpy ``default_rng(seed)`` shared by all classes
       (``rng.choice(len(H1_c), K, replace=len(H1_c) < K)``);
    3. the first ``num_fp`` of the K clean images are overwritten by the donors, and all K are
       labelled c. A path drawn twice counts once (PTNL keeps a dict path -> label).
  ``num_fp = round(noise_rate * K)``, the 9th argument of PTNL's upl_train.sh. We run the same
  operations on the same types (a Python ``set`` of ints, ``random.Random(seed).choices``, numpy's
  ``default_rng(seed)``), so the draw is PTNL's own for a train split in the same order. One
  assumption [infer]: PTNL seeds Python's global ``random`` with the seed (Dassl's
  ``set_random_seed``) and nothing else consumes it before the sampler; we use a fresh
  ``random.Random(seed)``. What the protocol changes against ptnl's nested relabelling
  (``ptnl.data.noise``): the images change with the rate (donors replace clean images), each
  *labelled* class holds exactly K - (duplicates) samples of which num_fp are foreign, clean
  images come from the first half of each class only, and rates are not nested. JoAPR's
  ``symflip`` (its datasets/add_noise.py) is the same sampler.
- ``pooled_noise`` (kinds ``"nlprompt_sym"``, ``"nlprompt_asym"``): NLPrompt's rate-based protocol
  (the DatasetWrapper of its bundled Dassl): after the few-shot draw, exactly int(r * N) of all N
  samples, pooled over classes, get a wrong label: uniform over the other C - 1 classes (sym) or
  c -> c + 1 mod C (asym; JoAPR's ``pairflip`` goes the other way, c + 1 -> c). NLPrompt shuffles
  with Python's global ``random`` after Dassl's few-shot draw has used it, which cannot be replayed
  outside Dassl; we draw one permutation and one wrong class per sample from ptnl's own stream
  ``rng_stream(seed, POOLED_STREAM)``, so the noise is nested across rates, like ptnl's.
- ``instance_noise`` (kind ``"instance"``): instance-dependent noise, Xia et al. 2020's generator
  (``get_instance_noisy_label`` in their Part-dependent-label-noise tools.py; DeFT uses the same):
  a flip rate per sample q_i ~ N(r, 0.1) truncated to [0, 1]; W ~ N(0, 1) of shape [C, d, C];
  the scores x_i W[y_i] with the true class masked, softmaxed and scaled by q_i, plus 1 - q_i on
  the true class, are the probabilities the new label is drawn from. x_i are the raw 0-255 pixels
  (channel-first, flattened) of the image resized to ``INSTANCE_SIZE`` px, as CIFAR's 32 x 32 rows
  (DeFT resizes Stanford Cars to 64 px the same way). With raw pixels the softmax is all but an
  arg-max, so each image has one likely wrong class; q_i sets how likely. Applied to the few-shot
  set (the images are the same at every rate, as ptnl's), with one ``RandomState(seed)`` for the
  three draws in Xia's order; per-sample draws, so the count is r * N only in expectation.
"""

from __future__ import annotations

import math
import random

import numpy as np

from ptnl.data.noise import NoisyLabels, n_noisy_per_class
from ptnl.data.sampling import check_labels, check_seed, rng_stream

PTNL_KIND = "ptnl"
POOLED_KINDS = ("nlprompt_sym", "nlprompt_asym")
INSTANCE_KIND = "instance"
SAMPLER_KINDS = (PTNL_KIND,)  # kinds that choose the images too (so the set changes with the rate)
PROTOCOL_KINDS = (*SAMPLER_KINDS, *POOLED_KINDS, INSTANCE_KIND)  # RunConfig.noise_kind values served here
POOLED_STREAM = 12  # numpy stream id (ptnl.data.sampling uses 1-3, UPL's selection 11); never renumber
INSTANCE_SIZE = 32  # px: images are resized to CIFAR's size before Xia's projection
INSTANCE_STD = 0.1  # Xia et al.'s norm_std at every call site


def ptnl_fewshot(train_labels, n_classes: int, shots: int, noise_rate: float, seed: int):
    """PTNL's few-shot set with ``round(noise_rate * shots)`` donors per class (module docstring).

    Returns ``(idx, labels)``: int64 indices into the train split, in PTNL's order (class by
    class, each class's K draws with duplicates dropped), and ``NoisyLabels`` over them (``true``:
    each image's own class, ``noisy``: the class it is labelled as).
    """
    true_all, n_classes = check_labels(train_labels, n_classes, what="train labels")
    seed = check_seed(seed)
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    num_fp = n_noisy_per_class(noise_rate, shots)
    if num_fp > shots:
        raise ValueError(f"noise_rate={noise_rate} gives {num_fp} donors per class, more than shots={shots}")
    # Each class's images in split order (PTNL walks its gt-label dict, which is in split order).
    members = [np.flatnonzero(true_all == c).tolist() for c in range(n_classes)]
    cut = [int(math.ceil(len(m) * 0.5)) for m in members]
    first = [m[:k] for m, k in zip(members, cut)]
    second = [m[k:] for m, k in zip(members, cut)]
    empty = [c for c in range(n_classes) if not first[c]]
    if empty:
        raise ValueError(
            f"class {empty[0]} has no training images, so PTNL's sampler has no clean candidate for it"
        )
    # PTNL extends one list class by class and makes it a set; the pool's order is that set's.
    donors_all = set([i for part in second for i in part])
    chosen: set[int] = set()
    py_random = random.Random(seed)
    rng = np.random.default_rng(seed=seed)
    idx, given = [], []
    for c in range(n_classes):
        pool = list(donors_all.difference(first[c], second[c], chosen))
        if num_fp and not pool:
            raise ValueError(f"no donor images left for class {c}: the train split is too small for {num_fp}")
        fp = py_random.choices(pool, k=num_fp)
        chosen.update(fp)
        h1 = np.asarray(first[c], dtype=np.int64)
        draw = h1[rng.choice(len(h1), size=shots, replace=len(h1) < shots)].tolist()
        draw[:num_fp] = fp
        seen = set()
        for i in draw:
            if i not in seen:  # PTNL's dict keeps one entry per path
                seen.add(i)
                idx.append(i)
                given.append(c)
    idx = np.asarray(idx, dtype=np.int64)
    true = true_all[idx]
    noisy = np.asarray(given, dtype=np.int64)
    return idx, NoisyLabels(true, noisy, noisy != true, PTNL_KIND, float(noise_rate), seed)


def _check_rate(noise_rate: float, n_classes: int) -> float:
    if not 0.0 <= float(noise_rate) < 1.0:
        raise ValueError(f"noise_rate must be in [0, 1), got {noise_rate}")
    if noise_rate > 0 and n_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got {n_classes}")
    return float(noise_rate)


def pooled_noise(true_labels, n_classes: int, kind: str, noise_rate: float, seed: int) -> NoisyLabels:
    """NLPrompt's protocol: exactly int(r * N) samples of the whole set flipped (module docstring)."""
    true, n_classes = check_labels(true_labels, n_classes, what="true_labels")
    if kind not in POOLED_KINDS:
        raise ValueError(f"pooled noise kind must be one of {POOLED_KINDS}, got {kind!r}")
    rate, seed = _check_rate(noise_rate, n_classes), check_seed(seed)
    n = len(true)
    rng = rng_stream(seed, POOLED_STREAM)
    order = rng.permutation(n)  # drawn whatever the rate: the noise is nested
    offset = rng.integers(1, max(n_classes, 2), size=n)
    flip = np.zeros(n, bool)
    flip[order[: int(rate * n + 1e-9)]] = True  # int(r * N), as NLPrompt (float error aside)
    wrong = (true + (offset if kind == "nlprompt_sym" else 1)) % max(n_classes, 1)
    noisy = np.where(flip, wrong, true)
    return NoisyLabels(true, noisy, noisy != true, kind, rate, seed)


def instance_pixels(split, idx, size: int = INSTANCE_SIZE) -> np.ndarray:
    """[N, 3 * size * size] float32: the raw 0-255 pixels of ``split``'s images ``idx``, resized
    (bilinear) and laid out channel-first as CIFAR's rows, Xia et al.'s input."""
    from PIL import Image

    rows = []
    for i in np.asarray(idx, dtype=np.int64):
        img = split.load_image(int(i)).resize((size, size), Image.BILINEAR)
        rows.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).reshape(-1))
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 3 * size * size), np.float32)


def instance_noise(true_labels, n_classes: int, noise_rate: float, seed: int, pixels) -> NoisyLabels:
    """Xia et al. 2020's instance-dependent noise on ``pixels`` [N, d] (module docstring)."""
    import torch
    from scipy import stats

    true, n_classes = check_labels(true_labels, n_classes, what="true_labels")
    rate, seed = _check_rate(noise_rate, n_classes), check_seed(seed)
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(true):
        raise ValueError(f"pixels must be [N, d] with N = {len(true)} samples, got {x.shape}")
    n, d = x.shape
    if rate == 0.0 or n == 0:
        return NoisyLabels(true, true.copy(), np.zeros(n, bool), INSTANCE_KIND, rate, seed)
    rs = np.random.RandomState(seed)  # Xia seeds numpy's global generator; one of our own here
    lo, hi = (0.0 - rate) / INSTANCE_STD, (1.0 - rate) / INSTANCE_STD
    q = stats.truncnorm(lo, hi, loc=rate, scale=INSTANCE_STD).rvs(n, random_state=rs)
    w = torch.from_numpy(rs.randn(n_classes, d, n_classes).astype(np.float32))
    xt, q_t = torch.from_numpy(x), torch.from_numpy(q.astype(np.float32))
    probs = []
    for i in range(n):
        a = xt[i : i + 1] @ w[true[i]]
        a = a.squeeze(0)
        a[true[i]] = -float("inf")
        a = q_t[i] * torch.softmax(a, dim=0)
        a[true[i]] += 1 - q_t[i]
        probs.append(a)
    p = torch.stack(probs).numpy()
    noisy = np.array([rs.choice(n_classes, p=p[i]) for i in range(n)], dtype=np.int64)
    return NoisyLabels(true, noisy, noisy != true, INSTANCE_KIND, rate, seed)
