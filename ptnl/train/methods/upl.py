"""UPL and Robust UPL (Section 5): ensembles of prompt-tuning runs on zero-shot pseudo-labels.

A member is an ordinary prompt-tuning run (``method="prompt"``) whose labels are the kind
``pseudo_topk`` or ``pseudo_random`` (``ptnl.data.labels``); what makes UPL is the ensemble over
members that differ only in seed (``ptnl.train.ensemble``). Here each ensemble method says
which label kind and loss its members train with, and how tables and figures show it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnsembleMethod:
    name: str
    label: str
    description: str
    noise_kind: str  # the members' label kind
    loss: str  # the members' loss (GCE with q = 0.5, as every section's)
    color: str


METHODS = (
    EnsembleMethod(
        "upl",
        "UPL",
        "Huang et al. 2022: per pseudo-class the K most confident images, CE",
        "pseudo_topk",
        "ce",
        "#de8f05",
    ),
    EnsembleMethod(
        "robust_upl_ce",
        "Robust UPL (CE)",
        "the paper: per pseudo-class K images drawn at random, CE",
        "pseudo_random",
        "ce",
        "#56b4e9",
    ),
    EnsembleMethod(
        "robust_upl_gce",
        "Robust UPL (GCE)",
        "the paper: per pseudo-class K images drawn at random, GCE (q = 0.5)",
        "pseudo_random",
        "gce",
        "#0173b2",
    ),
)
