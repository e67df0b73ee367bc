"""Classification losses for training under label noise, selected by name in a run config.

Every loss is ``fn(logits[B, C], labels[B], reduction="mean" | "none") -> Tensor``. The engine
asks for ``reduction="none"`` to get per-sample losses (gradient-norm ratios, Section 4.4).

All of them work from ``log_softmax`` in float32, never from ``softmax(z) + eps``: the PTNL code
computes GCE as ``(1 - (p_y + 1e-6)^q) / q`` on fp16 probabilities, where 1e-6 is subnormal and
``p_y -> 0`` underflows. ``p_y^q = exp(q * log p_y)`` is exact for any finite logits, and so is
every gradient below (each is a bounded function of p times ``p - e_y``).

Defaults (PTNL's trainers/loss.py; the PTNL code wires in only GCE):
- GCE q = 0.5: what PTNL's trainer runs (``GeneralizedCrossEntropy(q=0.5)``), not the class
  default 0.7 of Zhang & Sabuncu's code.
- SCE alpha = 6.0, beta = 0.1 (Wang et al. 2019, their CIFAR-100 setting) and NCE+RCE
  alpha = 10.0, beta = 0.1 (Ma et al. 2020, CIFAR-100). The papers' CIFAR-10 values are
  0.1/1.0 and 1.0/1.0; we take the many-class ones because the paper's datasets have 37 to
  1000 classes. PTNL gives no values of its own (its SCE/NCE+RCE are never instantiated).
- RCE's log(0) is clamped to A = log(1e-4) ~ -9.21, as in Wang et al.'s and Ma et al.'s code
  (and PTNL's loss.py), so RCE = 9.21 * (1 - p_y). The SCE paper's text uses A = -4.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ptnl.core.checks import is_number

GCE_Q = 0.5
SCE_ALPHA, SCE_BETA = 6.0, 0.1
NCE_RCE_ALPHA, NCE_RCE_BETA = 10.0, 0.1
RCE_LOG_ZERO = math.log(1e-4)  # A: the value log(0) is clamped to in the reverse cross-entropy

REDUCTIONS = ("mean", "none")


def _check(logits: torch.Tensor, labels: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; use one of {REDUCTIONS}")
    if logits.ndim != 2:
        raise ValueError(f"logits must be [batch, n_classes], got shape {tuple(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels must be [batch] = [{logits.shape[0]}], got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got [{labels.min()}, {labels.max()}]")
    # At least float32 whatever the model's precision: fp16 log-probabilities lose the tail GCE/NCE read.
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return logits, labels.long()


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return loss.mean() if reduction == "mean" else loss


def _log_p_y(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    log_p = F.log_softmax(logits, dim=1)
    return log_p, log_p.gather(1, labels[:, None]).squeeze(1)


def cross_entropy(logits, labels, reduction="mean"):
    """-log p_y."""
    logits, labels = _check(logits, labels, reduction)
    return F.cross_entropy(logits, labels, reduction=reduction)


def gce(logits, labels, reduction="mean", q=GCE_Q):
    """Generalized cross-entropy (Zhang & Sabuncu 2018): (1 - p_y^q) / q, q in (0, 1].

    q -> 0 gives CE, q = 1 gives 1 - p_y (half of Ghosh et al.'s MAE). Gradient wrt the logits:
    p_y^q * (p - e_y), the CE gradient down-weighted on samples the model finds unlikely.
    """
    _check_q(q)
    logits, labels = _check(logits, labels, reduction)
    _, log_p_y = _log_p_y(logits, labels)
    # -expm1(q log p) = 1 - p^q without cancellation when p_y -> 1 (small q would lose digits).
    return _reduce(-torch.expm1(q * log_p_y) / q, reduction)


def mae(logits, labels, reduction="mean"):
    """Mean absolute error of Ghosh et al. 2017: ||p - e_y||_1 = 2 (1 - p_y)."""
    logits, labels = _check(logits, labels, reduction)
    _, log_p_y = _log_p_y(logits, labels)
    return _reduce(-2.0 * torch.expm1(log_p_y), reduction)


def _rce(log_p_y: torch.Tensor) -> torch.Tensor:
    # -sum_k p_k log(onehot_k) with log 0 := A: only the k != y terms survive, sum_{k!=y} p_k = 1 - p_y.
    return -RCE_LOG_ZERO * -torch.expm1(log_p_y)


def sce(logits, labels, reduction="mean", alpha=SCE_ALPHA, beta=SCE_BETA):
    """Symmetric cross-entropy (Wang et al. 2019): alpha * CE + beta * RCE, RCE = -A (1 - p_y)."""
    _check_weights(alpha, beta)
    logits, labels = _check(logits, labels, reduction)
    _, log_p_y = _log_p_y(logits, labels)
    return _reduce(alpha * -log_p_y + beta * _rce(log_p_y), reduction)


def nce_rce(logits, labels, reduction="mean", alpha=NCE_RCE_ALPHA, beta=NCE_RCE_BETA):
    """Active-passive loss NCE+RCE (Ma et al. 2020): alpha * NCE + beta * RCE.

    NCE = log p_y / sum_k log p_k, in [0, 1]. The denominator is at least C log C (its value at
    the uniform distribution), so it never vanishes.
    """
    _check_weights(alpha, beta)
    logits, labels = _check(logits, labels, reduction)
    log_p, log_p_y = _log_p_y(logits, labels)
    nce = log_p_y / log_p.sum(dim=1)
    return _reduce(alpha * nce + beta * _rce(log_p_y), reduction)


def _is_number(v) -> bool:
    return is_number(v) and math.isfinite(v)


def _check_q(q):
    if not (_is_number(q) and 0 < q <= 1):
        raise ValueError(f"GCE needs 0 < q <= 1 (q -> 0 is CE, q = 1 is MAE/2), got q={q!r}")


def _check_weights(alpha, beta):
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not (_is_number(v) and v >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    if alpha == 0 and beta == 0:
        raise ValueError("alpha and beta are both 0: the loss would be identically zero")


# name -> (function, its tunable parameters with their defaults)
LOSSES: dict[str, tuple[Callable, dict[str, float]]] = {
    "ce": (cross_entropy, {}),
    "gce": (gce, {"q": GCE_Q}),
    "mae": (mae, {}),
    "sce": (sce, {"alpha": SCE_ALPHA, "beta": SCE_BETA}),
    "nce_rce": (nce_rce, {"alpha": NCE_RCE_ALPHA, "beta": NCE_RCE_BETA}),
}
# How tables and figures name each loss ("prompt tuning (GCE)"): a loss is one entry in each.
LABELS = {"ce": "CE", "gce": "GCE", "mae": "MAE", "sce": "SCE", "nce_rce": "NCE+RCE"}
assert set(LABELS) == set(LOSSES)


def get_loss(name: str, **params) -> Callable[..., torch.Tensor]:
    """The loss called ``name`` with ``params`` bound: ``fn(logits, labels, reduction="mean")``.

    >>> get_loss("gce", q=0.7)(logits, labels, reduction="none")   # per-sample losses
    """
    key = name.lower().replace("-", "_").replace("+", "_") if isinstance(name, str) else name
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
    fn, defaults = LOSSES[key]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k}={v}" for k, v in defaults.items()) or "none"
        raise ValueError(f"loss {key!r} has no parameter(s) {unknown}; its parameters: {valid}")
    bound = {**defaults, **params}
    if key == "gce":
        _check_q(bound["q"])
    elif bound:
        _check_weights(bound["alpha"], bound["beta"])

    def loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return fn(logits, labels, reduction=reduction, **bound)

    loss.__name__ = key
    loss.__doc__ = f"{key} with {bound}" if bound else key
    loss.params = bound  # recorded by the engine next to the name
    return loss
