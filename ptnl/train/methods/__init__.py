"""The method registry: every method ptnl trains or evaluates, each declared once, in its
family's module.

A family module (``prompt``, ``classifier``, ``linear_probe``, ``finetune``, ``untrained``, and
the noisy-label learners ``nlprompt``, ``joapr``, ``selectors``) holds its methods' entries
(``METHODS``: name, label, colour, loss variants, options, recipe) and the ``Family`` that
checks, builds and trains them (``ptnl.train.methods.base``). Adding a method of an existing
family is one entry there; a new family is one new module in this package (every module that
declares ``METHODS`` is registered, ``FAMILY_MODULES``).

UPL and Robust UPL (Section 5) are ensembles of prompt-tuning runs on pseudo-labels
(``upl``: which label kind and loss, and how they are shown); ``RunConfig.method`` does not take
them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from ptnl.models.losses import LABELS as LOSS_LABELS
from ptnl.train.methods import upl
from ptnl.train.methods.base import Family, Method, init_module

FAMILY_MODULES: tuple = ()
METHODS: Mapping[str, Method] = MappingProxyType({})
RUN_METHODS: tuple[str, ...] = ()
PROMPT_METHODS: tuple[str, ...] = ()
UNTRAINED_METHODS: tuple[str, ...] = ()
VARIANT_LABELS: dict[str, str] = {}
VARIANT_COLORS: dict[str, str] = {}


def _family_modules() -> tuple:
    """Every module of this package that declares methods (``METHODS`` of ``Method``s), by name:
    a new family is registered by being here."""
    out = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if any(isinstance(m, Method) for m in getattr(mod, "METHODS", ())):
            out.append(mod)
    return tuple(out)


ENSEMBLE_METHODS: Mapping[str, upl.EnsembleMethod] = MappingProxyType({m.name: m for m in upl.METHODS})
UPL_METHODS = tuple(ENSEMBLE_METHODS)


def register_families() -> None:
    """(Re-)read the family modules of this package into the registry: at import, and again when
    a module is added to the package while Python runs (a notebook, a test)."""
    global \
        FAMILY_MODULES, \
        METHODS, \
        RUN_METHODS, \
        PROMPT_METHODS, \
        UNTRAINED_METHODS, \
        VARIANT_LABELS, \
        VARIANT_COLORS
    FAMILY_MODULES = _family_modules()
    METHODS = MappingProxyType({m.name: m for mod in FAMILY_MODULES for m in mod.METHODS})
    RUN_METHODS = tuple(METHODS)  # what RunConfig.method takes
    PROMPT_METHODS = tuple(n for n, m in METHODS.items() if m.groupable)
    UNTRAINED_METHODS = tuple(n for n, m in METHODS.items() if not m.uses_labels)
    VARIANT_LABELS, VARIANT_COLORS = _variants()


__all__ = ["Family", "LOSS_LABELS", "Method", "init_module", "get", "policy", "variant", "label"]


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def policy(method: str, fields: dict) -> dict:
    """``fields`` of a section's run of ``method`` with the choices its family makes for every
    section (GCE's q, the feature mode it always runs with, untrained methods at rate 0, ...)."""
    m = get(method)
    return m.family.policy(m, fields)


def variant(method: str, loss: str = "ce") -> str:
    """The name of a (method, loss) pair in tables and figures: ``prompt``, ``prompt_gce``, ..."""
    return method if loss == "ce" else f"{method}_{loss}"


def short(variant_name: str) -> str:
    """The claims' short name of a variant: "<short> <LOSS>" where its method has a ``short``
    ("CoOp CE", "CoOp GCE"), else its method's label ("NLPrompt")."""
    for m in METHODS.values():
        for loss in ("ce", *m.losses):
            if variant(m.name, loss) == variant_name:
                return f"{m.short} {LOSS_LABELS[loss]}" if m.short else m.label
    return label(variant_name)


def _variants() -> tuple[dict[str, str], dict[str, str]]:
    labels, colors = {}, {}
    for m in (*METHODS.values(), *ENSEMBLE_METHODS.values()):
        labels[m.name] = m.label
        if m.color is not None:
            colors[m.name] = m.color
        for loss, color in getattr(m, "losses", {}).items():
            labels[variant(m.name, loss)] = f"{m.label} ({LOSS_LABELS[loss]})"
            if color is not None:
                colors[variant(m.name, loss)] = color
    return labels, colors


register_families()


def label(variant_name: str) -> str:
    """How tables and figures name a variant (the name itself where none is declared)."""
    return VARIANT_LABELS.get(variant_name, variant_name)
