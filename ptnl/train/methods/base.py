"""What a method is, and the training path the module families share.

A ``Method`` is what a run's ``method`` names: its label and colour in tables and figures, its
family, and the family's arguments for it (``options``: the module it builds; ``recipe``: the
constants of its own code). A ``Family`` owns everything else about its methods: the config
rules it adds (``check``), the choices the sections always make for it (``policy``), the module
it builds (``build``) and how runs of it are trained and scored (``train``).

``ModuleFamily`` is the shared path of methods that train a feature module by SGD with CoOp's
recipe (``train_modules``: ``loop.fit`` over one run or a batched group, then test accuracy and
how far it fits its training labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ptnl.models.losses import GCE_Q
from ptnl.train import features as F
from ptnl.train.loop import accuracy, fit, label_agreement


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # as tables and figures name it
    family: Family
    description: str
    options: Mapping = field(default_factory=dict)  # the family's arguments: the module it builds
    color: str | None = None  # the house colour; None: the next free one of the palette
    # Loss variants shown as "<label> (<LOSS>)", each with its house colour (None: the palette's).
    losses: Mapping[str, str | None] = field(default_factory=dict)
    # The constants of the method's own code (the robust learners): their values, with their source.
    recipe: Mapping = field(default_factory=dict)
    short: str | None = None  # the claims' short name of its loss variants: "<short> <LOSS>"
    selector: str | None = None  # the clean-sample selector it runs inside its training, as tables name it

    @property
    def groupable(self) -> bool:
        """Trained through the frozen text tower: runs can share one batched text pass."""
        return self.family.groupable

    @property
    def uses_labels(self) -> bool:
        """False for untrained methods: they run once, at noise rate 0 with CE."""
        return self.family.uses_labels

    @property
    def gradient_trained(self) -> bool:
        """Trained by SGD, so per-sample gradient norms exist (Section 4.4)."""
        return self.family.gradient_trained

    @property
    def feature_mode(self) -> str | None:
        """The feature mode the sections always run it with (None: the section's own)."""
        return self.family.feature_mode


class Family:
    """The base of every family: no module, no training, no extra rules."""

    name = "family"
    groupable = False  # runs train together through one batched text pass (``train`` takes a group)
    uses_labels = True
    gradient_trained = False
    scales_logits = True  # a CLIP-style head of cosine logits: ``RunConfig.temperature`` applies
    feature_mode: str | None = None
    # What a training step costs, for time estimates (ptnl.tools.plan): "text" (the text tower
    # over every class), "head" (a linear head), None (neither).
    work: str | None = None

    def check(self, method: Method, cfg) -> None:
        """Raise ValueError where ``cfg`` asks what ``method`` cannot do."""

    def policy(self, method: Method, fields: dict) -> dict:
        """The fields of a section's run of ``method`` with the choices every section makes for it."""
        fields = dict(fields)
        if fields.get("loss") == "gce":  # Section 3: "we found q = 0.5 ... good performance"
            fields.setdefault("loss_params", {"q": GCE_Q})
        if self.feature_mode is not None:
            fields["feature_mode"] = self.feature_mode
        return fields

    def build(self, method: Method, cfg, bundle, dataset, generator: torch.Generator):
        raise ValueError(f"method {method.name!r} has no feature module")

    def train(self, method: Method, runs: list, progress=False) -> tuple[list[dict], list[dict]]:
        """Train prepared runs (``ptnl.train.engine.Run``; one, or a group where ``groupable``):
        each run's metrics and the files stored beside them (name -> bytes)."""
        raise NotImplementedError


def init_module(method: Method, cfg, bundle, dataset, device):
    """The module of a run of ``method``, initialised from its seed's "init" stream, on ``device``,
    its logits at ``cfg.temperature`` when set (else the checkpoint's)."""
    module = method.family.build(method, cfg, bundle, dataset, F.generator("init", cfg.seed))
    if cfg.temperature is not None:
        module.logit_scale.fill_(cfg.temperature)
    return module.to(device)


def train_modules(method: Method, runs: list, progress=False) -> tuple[list[dict], list]:
    """Train the runs' modules together (one run, or a group through one batched text pass) and
    score each: ``test_acc``, the per-epoch history and ``label_agreement``. Returns the metrics
    and the trained modules, in run order."""
    modules = [init_module(method, r.cfg, r.bundle, r.dataset, r.device) for r in runs]
    # Read once, used twice (training and label_agreement); exact mode has no bank.
    banks = [None if r.cfg.feature_mode == "exact" else F.train_bank(r, progress) for r in runs]
    hists = fit(runs, modules, [F.feature_source(r, progress, b) for r, b in zip(runs, banks)], progress)
    test = F.test_features(runs[0], progress)  # one test set for the group
    out = []
    for r, m, h, b in zip(runs, modules, hists, banks):
        acc = accuracy(m, test, r.dataset.test.labels, r.device, r.precision)
        out.append({"test_acc": acc, **h, **label_agreement(m, r, progress, b)})
    return out, modules


class ModuleFamily(Family):
    """Methods that train a feature module by SGD with the run's recipe (``train_modules``)."""

    gradient_trained = True

    def train(self, method, runs, progress=False):
        metrics, modules = train_modules(method, runs, progress)
        return metrics, [self.files(r, m) for r, m in zip(runs, modules)]

    def files(self, run, module) -> dict:
        """What is stored beside a trained run's metrics (nothing by default)."""
        return {}
