"""Clean-sample selectors: which training labels to trust, and how well that guess detects noise.

Every selector returns a ``Selected``: a clean score per sample (higher = more likely correctly
labelled), the boolean clean mask it picks, and, where it relabels, the labels it proposes.
``detection`` scores a selection against the truth, the noisy samples being the positives:
precision and recall of the samples it flags as noisy, AUROC of its noise score (``-clean_score``),
and, for a relabelling selector, the correction accounting (wrong -> right, right -> wrong).

- ``small_loss`` (Co-teaching, Han et al. 2018): within each given class keep the ``1 - forget``
  share with the smallest loss; ``forget`` is the noise rate the method is told (Co-teaching's
  forget rate), so it is an oracle when set to the true rate.
- ``gmm_loss`` (DivideMix, Li et al. 2020; JoAPR's partition): a two-component 1-D Gaussian
  mixture on the per-sample losses scaled to [0, 1]; the clean probability is the posterior of the
  low-mean component, clean where it exceeds ``threshold`` (DivideMix's p_threshold 0.5). sklearn's
  ``GaussianMixture`` with DivideMix's settings (max_iter 10, tol 1e-2, reg_covar 5e-4), seeded.
- ``ot_labels`` (NLPrompt's PromptOT): optimal transport of the samples onto the classes with
  equal class mass (Sinkhorn), the cost read from a model's probabilities (in NLPrompt, the prompt
  being trained: its text features are the class prototypes); a sample is clean when its
  transported label equals its given label (see the function for the exact recipe).
- ``agreement`` (with zero-shot CLIP's probabilities: CLIPCleaner-style, Feng et al. 2024): clean
  when the model's prediction is the given label; the score is its probability of that label.
  (CLIPCleaner itself adds a linear probe's consistency and its own thresholds; this is the
  training-free core.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

GMM_THRESHOLD = 0.5  # DivideMix's p_threshold
GMM_SETTINGS = {"max_iter": 10, "tol": 1e-2, "reg_covar": 5e-4}  # DivideMix's GaussianMixture
# NLPrompt's OT: POT's ot.sinkhorn with reg_e 0.01 (its REG_E default), numItermax 1000, stopThr 1e-6.
OT_REG, OT_MAX_ITER, OT_STOP = 0.01, 1000, 1e-6
SELECTORS = ("small_loss", "gmm_loss", "ot", "agreement")
# How tables and figures name each selector.
LABELS = {"small_loss": "small-loss", "gmm_loss": "GMM on loss", "ot": "OT", "agreement": "agreement"}


@dataclass(frozen=True)
class Selected:
    clean_score: np.ndarray  # float [N], higher = more likely clean
    clean: np.ndarray  # bool [N]
    labels: np.ndarray | None = None  # int [N]: the labels it proposes (relabelling selectors)


def _arr(x, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def small_loss(losses, given, n_classes: int, forget: float) -> Selected:
    """Per given class, the ``1 - forget`` share of samples with the smallest loss (ties: lower index)."""
    if not 0.0 <= forget < 1.0:
        raise ValueError(f"forget must be a share in [0, 1), got {forget}")
    loss, given = _arr(losses), _arr(given, np.int64)
    clean = np.zeros(len(loss), bool)
    for c in range(n_classes):
        m = np.flatnonzero(given == c)
        keep = len(m) - int(np.floor(forget * len(m) + 0.5 + 1e-9))
        clean[m[np.lexsort((m, loss[m]))[:keep]]] = True
    return Selected(-loss, clean)


def gmm_loss(losses, seed: int = 1, threshold: float = GMM_THRESHOLD) -> Selected:
    """DivideMix's two-component GMM on losses scaled to [0, 1] (see the module docstring)."""
    loss = _arr(losses)
    span = loss.max() - loss.min() if len(loss) else 0.0
    if len(loss) < 2 or span <= 0:  # nothing to split: everything looks alike
        return Selected(np.ones(len(loss)), np.ones(len(loss), bool))
    x = ((loss - loss.min()) / span)[:, None]
    gmm = fit_gmm(x, seed)
    p = gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))]
    return Selected(p, p > threshold)


def fit_gmm(x: np.ndarray, seed: int):
    """sklearn's two-component ``GaussianMixture`` with DivideMix's settings on ``x`` [N, 1]. Ten EM
    steps at tol 1e-2 often stop before sklearn calls it converged; that is the recipe, so its
    ConvergenceWarning is not shown."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(n_components=2, random_state=seed, **GMM_SETTINGS).fit(x)


def sinkhorn(cost: torch.Tensor, reg: float = OT_REG, max_iter: int = OT_MAX_ITER, stop: float = OT_STOP):
    """The entropic OT plan [N, C] between N samples of mass 1/N and C classes of mass 1/C for
    ``cost`` [N, C]: POT's ``ot.sinkhorn(a, b, M, reg, numItermax, stopThr)`` (Sinkhorn-Knopp, the
    column-marginal error checked every 10 iterations), in float64. The cost's minimum is
    subtracted first (a constant does not change the plan) so that reg = 0.01 cannot overflow."""
    m = cost.double()
    k = torch.exp(-(m - m.min()) / reg)
    if not torch.isfinite(k).all() or (k.sum(1) == 0).any() or (k.sum(0) == 0).any():
        raise ValueError(f"the OT cost spans too wide a range for reg={reg}: rescale it or raise reg")
    n, c = k.shape
    a, b = torch.full((n,), 1.0 / n, dtype=torch.float64), torch.full((c,), 1.0 / c, dtype=torch.float64)
    u, v = torch.full_like(a, 1.0 / n), torch.full_like(b, 1.0 / c)
    for it in range(max_iter):
        v = b / (k.T @ u)
        u = a / (k @ v)
        if it % 10 == 0 and torch.linalg.vector_norm(v * (k.T @ u) - b) < stop:
            break
    return u[:, None] * k * v[None, :]


def ot_labels(probs, given, reg: float = OT_REG) -> Selected:
    """NLPrompt's PromptOT purification (its ``OT_PL`` and ``curriculum_structure_aware_PL`` with
    the defaults: budget 1, PMODE "logP"): cost ``-log_softmax(p)`` of the model's probabilities
    ``p`` [N, C], uniform marginals, Sinkhorn with reg 0.01; the pseudo-label is each row's
    arg-max of the plan, and a sample is clean when it equals the given label. The score is the
    plan's row-normalised mass on the given label."""
    p = torch.as_tensor(_arr(probs))
    plan = sinkhorn(-torch.log_softmax(p, dim=1), reg)
    plan = plan / plan.sum(1, keepdim=True).clamp(min=1e-300)
    given_t = torch.as_tensor(_arr(given, np.int64))
    pseudo = plan.argmax(1)
    score = plan.gather(1, given_t[:, None]).squeeze(1)
    return Selected(score.numpy(), (pseudo == given_t).numpy(), pseudo.numpy())


def agreement(probs, given) -> Selected:
    """Clean where the model's arg-max is the given label; score = its probability of that label
    (with zero-shot CLIP's probabilities: CLIPCleaner's zero-shot agreement)."""
    p, given = _arr(probs), _arr(given, np.int64)
    return Selected(p[np.arange(len(given)), given], p.argmax(1) == given)


def auroc(score, positive) -> float:
    """Area under the ROC curve of ``score`` for the boolean ``positive`` (ties count half);
    NaN when either class is empty. The Mann-Whitney U statistic over average ranks."""
    s, pos = _arr(score), np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def detection(sel: Selected, true, given) -> dict:
    """How well ``sel`` finds the wrong labels (positives: given != true; samples whose truth is
    unknown, ``true == -1``, are left out of every score), and what its relabelling
    does: ``noise_precision``, ``noise_recall``, ``noise_auroc``, ``clean_kept`` (share of the
    correctly labelled samples it keeps), and with proposed labels ``wrong_to_right`` /
    ``right_to_wrong`` (counts over all samples if the proposals replaced the given labels) and
    ``label_acc_after`` (the share then correct)."""
    true, given = _arr(true, np.int64), _arr(given, np.int64)
    known = true >= 0
    sel = Selected(
        _arr(sel.clean_score)[known],
        np.asarray(sel.clean, bool)[known],
        None if sel.labels is None else _arr(sel.labels, np.int64)[known],
    )
    true, given = true[known], given[known]
    noisy = given != true
    flagged = ~np.asarray(sel.clean, bool)
    tp = int((flagged & noisy).sum())
    out = {
        "noise_precision": tp / int(flagged.sum()) if flagged.any() else float("nan"),
        "noise_recall": tp / int(noisy.sum()) if noisy.any() else float("nan"),
        "noise_auroc": auroc(-_arr(sel.clean_score), noisy),
        "clean_kept": float((~flagged & ~noisy).sum() / max(int((~noisy).sum()), 1)),
        "n_flagged": int(flagged.sum()),
    }
    if sel.labels is not None:
        new = _arr(sel.labels, np.int64)
        out["wrong_to_right"] = int((noisy & (new == true)).sum())
        out["right_to_wrong"] = int((~noisy & (new != true)).sum())
        out["label_acc_after"] = float((new == true).mean()) if len(new) else float("nan")
    return out
