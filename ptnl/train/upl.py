"""UPL and Robust UPL (Section 5): prompt tuning on CLIP's own zero-shot pseudo-labels, as ensembles.

One ensemble member is one ``UPLConfig``: zero-shot pseudo-labels on the whole *unlabeled* train
split, K images per pseudo-class (``ptnl.train.labels``), prompt tuning on them through the
engine's own ``train_group`` (the pseudo-labels are the run's labels), and the learned context
stored in the run folder. An ensemble is P members that differ only in ``seed`` (context init,
batch order, views); its prediction is the arg-max of their *averaged raw logits*
(``logit_scale * cos``), as UPL's ``upl_test.py`` does (the paper: P = 4 prompts, UPL's repo: 16).

Methods (registered in ``ptnl.train.methods`` with their selection and loss):
- ``upl`` (Huang et al. 2022): per pseudo-class the K most confident images, CE.
- ``robust_upl_ce`` / ``robust_upl_gce`` (the paper): per pseudo-class K images drawn uniformly at
  random from those pseudo-labelled as that class, CE or GCE (q = 0.5).
Short classes (``fill``) are counted in the metrics (``n_short_classes``, ``n_empty_classes``,
``class_counts``).

Choices and where they depart from the reference code:
- One training set per ensemble: all members of an ensemble share the selection (drawn from
  ``selection_seed``), as UPL trains its 16 prompts on one pseudo-labelled set; members differ in
  ``seed`` only. Robust UPL's code is not public; this is our reading.
- Zero-shot uses CLIP's ``preprocess`` (centre crop), as PTNL does; UPL's code squash-resizes.
  On GPU the zero-shot pass runs in the run's precision (bf16 under "auto"), so a handful of
  near-tied pseudo-labels can differ from an fp32 CPU pass.

Storage: each member is one run of the run store, ``results/<experiment>/<run-id>/`` with
``config.json``, ``metrics.json``, ``prompt.pt`` and ``done``. ``prompt.pt`` holds the member's
trained parameters only (the context: n_ctx x width floats, a few KB), written with the folder.
The ensemble recomputes each member's test logits from it (one text-tower pass plus one matmul
over the cached test features): storing the logits instead would cost N_test x C floats per
member (200 MB for ImageNet), the context costs 32 KB and the recomputation milliseconds.
"""

from __future__ import annotations

import functools
import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptnl.core.checks import choice, is_int
from ptnl.data.disk import check_images
from ptnl.data.readers import get_dataset
from ptnl.models.losses import GCE_Q
from ptnl.train import engine, methods, store
from ptnl.train import features as F
from ptnl.train.config import RunConfig, run_identity
from ptnl.train.labels import FILLS, SELECTIONS, noisy_labels, pseudo_label, select
from ptnl.train.loop import batched_logits
from ptnl.train.trainers import init_module
from ptnl.train.workers import check_workers, run_units

# method -> (selection, loss), from the registry
METHODS = {
    n: (methods.get(n).options["selection"], methods.get(n).options["loss"]) for n in methods.UPL_METHODS
}
PAPER_N_PROMPTS = 4  # Section 5: "combining the outputs of four distinct models"
PROMPT_FILE = "prompt.pt"
_UPL_FIELDS = ("selection", "fill", "selection_seed")


# -- the config ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UPLConfig:
    """One ensemble member: the prompt-tuning recipe of one seed plus how its data is selected.

    ``prompt`` is a ``RunConfig`` (method "prompt", no synthetic noise): dataset, backbone, loss,
    shots = K per pseudo-class, seed = this member's seed, and the optimisation recipe.
    Same identity protocol as RunConfig (``to_dict``, ``canonical_json``, ``run_id``): the dict is
    flat (the prompt's fields plus ``selection``, ``fill``, ``selection_seed``), so run-store rows
    have the usual columns, and its hash never equals a plain RunConfig's.
    """

    prompt: RunConfig
    selection: str = "topk"
    fill: str = "all"
    selection_seed: int = 1

    def __post_init__(self):
        if not isinstance(self.prompt, RunConfig):
            raise ValueError(f"UPLConfig.prompt must be a RunConfig, got {type(self.prompt).__name__}")
        p = self.prompt
        if p.method != "prompt":
            raise ValueError(f"UPL tunes CoOp's context: prompt.method must be 'prompt', got {p.method!r}")
        if p.noise_rate != 0.0 or p.noise_kind != "symmetric":
            raise ValueError(
                "UPL's labels are zero-shot pseudo-labels: leave noise_rate at 0 and noise_kind "
                f"at 'symmetric' (got {p.noise_kind!r} at {p.noise_rate})"
            )
        for name, allowed in (("selection", SELECTIONS), ("fill", FILLS)):
            choice(name, getattr(self, name), allowed)
        s = self.selection_seed
        if not is_int(s) or s < 0:
            raise ValueError(f"selection_seed must be an integer >= 0, got {s!r}")
        object.__setattr__(self, "selection_seed", int(s))

    # -- identity (the protocol ptnl.train.store uses) ------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {**self.prompt.to_dict(), **{k: getattr(self, k) for k in _UPL_FIELDS}}

    def identity_dict(self) -> dict[str, Any]:
        return {**self.prompt.identity_dict(), **{k: getattr(self, k) for k in _UPL_FIELDS}}

    def canonical_json(self) -> str:
        return json.dumps(self.identity_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @property
    def run_id(self) -> str:
        p = self.prompt  # the weights and data are hashed too, as for a RunConfig
        return run_identity(self.canonical_json(), p.backbone, p.pretrained, p.dataset)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UPLConfig:
        d = dict(d)
        upl = {k: d.pop(k) for k in _UPL_FIELDS if k in d}
        return cls(RunConfig.from_dict(d), **upl)

    def replace(self, **changes) -> UPLConfig:
        return UPLConfig.from_dict({**self.to_dict(), **changes})

    # -- views ----------------------------------------------------------------------------------
    @property
    def method(self) -> str:
        """``upl``, ``robust_upl_ce``, ``robust_upl_gce`` (or e.g. ``robust_upl_mae``)."""
        base = "upl" if self.selection == "topk" else "robust_upl"
        return base if base == "upl" and self.prompt.loss == "ce" else f"{base}_{self.prompt.loss}"

    def selection_key(self) -> tuple:
        """Members with equal keys train on the same images with the same pseudo-labels."""
        p = self.prompt
        return (
            p.dataset,
            p.backbone,
            p.pretrained,
            p.precision,
            p.shots,
            self.selection,
            self.fill,
            self.selection_seed,
        )


def config(
    method: str,
    dataset: str,
    backbone: str,
    seed: int = 1,
    selection_seed: int = 1,
    fill: str = "all",
    shots: int = 16,
    epochs: int = 50,
    feature_mode: str = "views",
    **fields,
) -> UPLConfig:
    """One member of ``method``'s ensemble (GCE with q = 0.5, as everywhere in ptnl)."""
    if method not in METHODS:
        raise ValueError(f"unknown UPL method {method!r}; choose one of {', '.join(METHODS)}")
    selection, loss = METHODS[method]
    if loss == "gce":
        fields.setdefault("loss_params", {"q": GCE_Q})
    prompt = RunConfig(
        dataset=dataset,
        backbone=backbone,
        method="prompt",
        loss=loss,
        seed=seed,
        epochs=epochs,
        shots=shots,
        feature_mode=feature_mode,
        **fields,
    )
    return UPLConfig(prompt, selection=selection, fill=fill, selection_seed=selection_seed)


@dataclass(frozen=True)
class Ensemble:
    """P members of one method that differ only in seed; ``repeat`` numbers independent ensembles."""

    method: str
    repeat: int
    members: tuple[UPLConfig, ...]

    @property
    def dataset(self) -> str:
        return self.members[0].prompt.dataset


def member_seeds(repeat: int, n_prompts: int) -> list[int]:
    """Repeat 1 uses seeds 1..P (the paper's four prompts), repeat 2 uses P+1..2P, and so on."""
    return list(range((repeat - 1) * n_prompts + 1, repeat * n_prompts + 1))


def members(ensembles: Iterable[Ensemble]) -> list[UPLConfig]:
    """Every member config, each once, in order."""
    return list({c.run_id: c for e in ensembles for c in e.members}.values())


# -- training ----------------------------------------------------------------------------------------


def prepare(configs: Sequence[UPLConfig], device=None, dataset=None, bundle=None):
    """Engine ``Run``s for members sharing one selection (pseudo-labels computed once) and the
    zero-shot pass they came from. Returns (runs, selection, pseudo_labels)."""
    keys = {c.selection_key() for c in configs}
    if len(keys) != 1:
        raise ValueError(
            "prepare() takes members of one selection (same dataset, backbone, shots, selection, "
            f"fill, selection_seed); got {len(keys)} different ones"
        )
    c0 = configs[0]
    p = c0.prompt
    device = engine.resolve_device(device)
    precision = engine.resolve_precision(p.precision, device)
    ds = dataset if dataset is not None else get_dataset(p.dataset)
    for split in (ds.train, ds.test):  # pseudo-labelling reads all of train, the ensemble all of test
        check_images(split)
    bundle = bundle if bundle is not None else engine.backbone(p.backbone, p.pretrained, str(device))
    pl = pseudo_label(bundle, ds, device, precision)
    sel = select(pl, p.shots, c0.selection, c0.fill, c0.selection_seed)
    labels = noisy_labels(ds, sel, c0.selection_seed)
    runs = [engine.Run(c.prompt, bundle, ds, sel.idx, labels, device, precision) for c in configs]
    return runs, sel, pl


def group_key(c: UPLConfig) -> str:
    """Members with equal keys train together: one selection, one shape (exact mode: alone)."""
    if not engine.groupable(c.prompt):
        return c.run_id
    return engine.group_key(c.prompt) + repr(c.selection_key())


def train(
    configs: Iterable[UPLConfig],
    experiment: str | None = None,
    device=None,
    group_size: int = 4,
    progress: bool = False,
    workers: int = 1,
) -> list[dict]:
    """Train every member not yet done (a finished run is loaded, not redone); returns the
    metrics in config order. Members sharing a selection and shape train ``group_size`` at a
    time through one batched text pass (``engine.train_group``, as ``engine.run_group``: equal to
    training them one by one up to float rounding). ``workers > 1`` trains the groups in that
    many processes (``ptnl.train.workers``; same groups, same numbers). Without ``experiment``
    nothing is stored (and ``ensemble`` cannot use the members)."""
    configs = list(configs)
    bad = [type(c).__name__ for c in configs if not isinstance(c, UPLConfig)]
    if bad:
        raise ValueError(f"train() takes UPLConfigs (see upl.config / upl.sec5_unsupervised), got a {bad[0]}")
    if not is_int(group_size) or group_size < 1:
        raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
    todo = [c for c in configs if experiment is None or not is_done(c, experiment)]
    todo = list({c.run_id: c for c in todo}.values())
    buckets: dict[str, list[UPLConfig]] = {}
    for c in todo:
        buckets.setdefault(group_key(c), []).append(c)
    groups = [
        bucket[s : s + group_size] for bucket in buckets.values() for s in range(0, len(bucket), group_size)
    ]
    if experiment is None:  # nothing stored: the metrics come back from this process
        check_workers(workers)
        done = {}
        for group in groups:
            done.update(_train_members(group, None, device, progress))
        return [done[c.run_id] for c in configs]
    run_units(
        functools.partial(_train_claimed, experiment=experiment, device=device, progress=progress),
        groups,
        workers,
    )
    return [store.load_metrics(c, experiment) for c in configs]


def _train_claimed(group: list[UPLConfig], experiment: str, device, progress) -> None:
    # Claimed as engine.run's runs are: two processes never train one member twice.
    engine.claimed(group, experiment, lambda g: _train_members(g, experiment, device, progress))


def is_done(c: UPLConfig, experiment: str) -> bool:
    """Done, with its trained prompt on disk (what ``ensemble`` needs)."""
    return store.is_done(c, experiment) and (store.run_dir(c, experiment) / PROMPT_FILE).is_file()


def _train_members(group: list[UPLConfig], experiment, device, progress) -> dict[str, dict]:
    t0 = time.perf_counter()
    runs, sel, pl = prepare(group, device)
    metrics, modules = engine.train_group(runs, progress, t0)
    gt = np.asarray(runs[0].dataset.train.labels, np.int64)
    out = {}
    for c, r, m, base in zip(group, runs, modules, metrics):
        out[c.run_id] = {
            **base,  # test_acc is this member's alone; the ensemble's is ``ensemble()``'s
            "method": c.method,
            "pseudo_label_acc": float(1.0 - r.labels.is_noisy.mean()) if r.n_train else float("nan"),
            "zeroshot_train_acc": float((pl.pred == gt).mean()) if len(gt) else float("nan"),
            "n_unique": int(len(np.unique(sel.idx))),
            "n_short_classes": sel.n_short_classes,
            "n_empty_classes": sel.n_empty_classes,
            "class_counts": sel.counts.tolist(),
            "predicted_counts": sel.predicted.tolist(),
        }
        if experiment is not None:  # written whole, the trained prompt beside the metrics
            buf = io.BytesIO()
            torch.save({k: v.detach().float().cpu() for k, v in trained_state(m).items()}, buf)
            store.write_run(c, experiment, out[c.run_id], files={PROMPT_FILE: buf.getvalue()})
    return out


def trained_state(module) -> dict[str, torch.Tensor]:
    """The module's trained parameters by name (a prompt: its context)."""
    names = {id(p) for p in module.trainable_parameters()}
    return {k: v for k, v in module.named_parameters() if id(v) in names}


# -- the ensemble ------------------------------------------------------------------------------------


@torch.no_grad()
def member_logits(c: UPLConfig, experiment: str, device=None, dataset=None, bundle=None) -> torch.Tensor:
    """Raw test logits [N_test, C] (float32, CPU) of a finished member, recomputed from its stored
    context: the same module the engine built (same init), its trained parameters loaded back."""
    d = store.run_dir(c, experiment)
    if not is_done(c, experiment):
        raise FileNotFoundError(
            f"member {c.run_id} ({c.method}, seed {c.prompt.seed}) is not trained in "
            f"experiment {experiment!r} ({d}); run upl.train([...], {experiment!r}) first"
        )
    p = c.prompt
    device = engine.resolve_device(device)
    precision = engine.resolve_precision(p.precision, device)
    ds = dataset if dataset is not None else get_dataset(p.dataset)
    bundle = bundle if bundle is not None else engine.backbone(p.backbone, p.pretrained, str(device))
    module = init_module(p, bundle, ds, device)
    state = torch.load(d / PROMPT_FILE, map_location="cpu", weights_only=True)
    own = trained_state(module)
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise ValueError(
            f"{d / PROMPT_FILE} holds {sorted(state)}, the module trains {sorted(own)}: remove {d}"
        )
    for k, v in own.items():
        v.copy_(state[k].to(v.dtype))
    feats = F.cached_features(bundle, ds, "test", np.arange(len(ds.test)), ["center"], device, precision)[0]
    out = [z.cpu() for _, z in batched_logits(module, feats, device, precision)]
    return torch.cat(out) if out else torch.zeros(0, ds.n_classes)


def average_logits(logits: Iterable[torch.Tensor]) -> torch.Tensor:
    """Uniform mean of raw logits (UPL's ``sum(prob_end) / len(prob_end)``), summed one at a time
    so that P members of an ImageNet-sized test set never sit in memory together."""
    total, n = None, 0
    for z in logits:
        total = z.double().clone() if total is None else total.add_(z.double())
        n += 1
    if n == 0:
        raise ValueError("average_logits needs at least one member's logits")
    return (total / n).float()


def ensemble(e: Ensemble | Sequence[UPLConfig], experiment: str, device=None) -> dict:
    """Test accuracy of the ensemble (arg-max of averaged logits) and its members' numbers."""
    cs = list(e.members if isinstance(e, Ensemble) else e)
    if not cs:
        raise ValueError("an ensemble needs at least one member")
    if (
        len({json.dumps({k: v for k, v in c.to_dict().items() if k != "seed"}, sort_keys=True) for c in cs})
        != 1
    ):
        raise ValueError("ensemble members must differ only in seed")
    ms = [store.load_metrics(c, experiment) for c in cs]
    if any(m is None for m in ms):
        missing = [c.prompt.seed for c, m in zip(cs, ms) if m is None]
        raise FileNotFoundError(
            f"members with seeds {missing} are not trained in {experiment!r}: run upl.train first"
        )
    ds = get_dataset(cs[0].prompt.dataset)
    z = average_logits(member_logits(c, experiment, device, dataset=ds) for c in cs)
    y = torch.as_tensor(np.asarray(ds.test.labels, np.int64))
    acc = float((z.argmax(-1) == y).double().mean()) if len(y) else float("nan")
    m0 = ms[0]
    return {
        "test_acc": acc,
        "member_test_acc": [m["test_acc"] for m in ms],
        "n_prompts": len(cs),
        **{
            k: m0[k]
            for k in (
                "method",
                "pseudo_label_acc",
                "zeroshot_train_acc",
                "n_train",
                "n_unique",
                "n_short_classes",
                "n_empty_classes",
                "n_classes",
                "weights_id",
            )
        },
    }
