"""UPL and Robust UPL (Section 5): ensembles of prompt-tuning runs on zero-shot pseudo-labels.

A member is an ordinary ``RunConfig``: prompt tuning (``method="prompt"``) whose labels are the
kind ``pseudo_topk`` (UPL) or ``pseudo_random`` (Robust UPL) of ``ptnl.data.labels``: zero-shot
pseudo-labels on the whole *unlabeled* train split and K images per pseudo-class, trained and
stored by the engine like any run (its trained context kept beside it, ``prompt.pt``). An
ensemble is P members that differ only in ``seed`` (context init, batch order, views); its
prediction is the arg-max of their *averaged raw logits* (``logit_scale * cos``), as UPL's
``upl_test.py`` does (the paper: P = 4 prompts, UPL's repo: 16). This module keeps only that:
the members of an ensemble, and its prediction.

Ensemble methods (``ptnl.train.methods.upl``: each one's label kind and loss):
- ``upl`` (Huang et al. 2022): per pseudo-class the K most confident images, CE.
- ``robust_upl_ce`` / ``robust_upl_gce`` (the paper): per pseudo-class K images drawn uniformly at
  random from those pseudo-labelled as that class, CE or GCE (q = 0.5).
Short classes (``fill``) are counted in the members' metrics (``n_short_classes``,
``n_empty_classes``, ``class_counts``).

Choices and where they depart from the reference code:
- One training set per ensemble: all members of an ensemble share the selection (drawn from
  ``selection_seed``), as UPL trains its 16 prompts on one pseudo-labelled set; members differ in
  ``seed`` only. Robust UPL's code is not public; this is our reading.
- Zero-shot uses CLIP's ``preprocess`` (centre crop), as PTNL does; UPL's code squash-resizes.
  On GPU the zero-shot pass runs in the run's precision (bf16 under "auto"), so a handful of
  near-tied pseudo-labels can differ from an fp32 CPU pass.

Storage: ``prompt.pt`` holds the member's trained parameters only (the context: n_ctx x width
floats, a few KB), written with the run folder. The ensemble recomputes each member's test
logits from it (one text-tower pass plus one matmul over the cached test features): storing
the logits instead would cost N_test x C floats per member (200 MB for ImageNet), the context
costs 32 KB and the recomputation milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ptnl.data.readers import get_dataset
from ptnl.train import engine, methods, store
from ptnl.train import features as F
from ptnl.train.config import RunConfig
from ptnl.train.loop import batched_logits
from ptnl.train.methods import ENSEMBLE_METHODS
from ptnl.train.methods.prompt import PROMPT_FILE, trained_state

PAPER_N_PROMPTS = 4  # Section 5: "combining the outputs of four distinct models"


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
) -> RunConfig:
    """One member of ``method``'s ensemble (GCE with q = 0.5, as everywhere in ptnl)."""
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"unknown UPL method {method!r}; choose one of {', '.join(ENSEMBLE_METHODS)}")
    m = ENSEMBLE_METHODS[method]
    fields = methods.policy(
        "prompt",
        dict(
            dataset=dataset,
            backbone=backbone,
            method="prompt",
            loss=m.loss,
            noise_kind=m.noise_kind,
            seed=seed,
            selection_seed=selection_seed,
            fill=fill,
            epochs=epochs,
            shots=shots,
            feature_mode=feature_mode,
            **fields,
        ),
    )
    return RunConfig(**fields)


def method_of(c: RunConfig) -> str:
    """The ensemble method a member belongs to (``upl``, ``robust_upl_ce``, ...; ``robust_upl_<loss>``
    for another loss)."""
    kinds = {m.noise_kind: m for m in ENSEMBLE_METHODS.values()}
    if c.method != "prompt" or c.noise_kind not in kinds:
        raise ValueError(
            f"run {c.run_id} is not an ensemble member: members are method='prompt' on the pseudo-label "
            f"kinds {', '.join(kinds)}, got method={c.method!r}, noise_kind={c.noise_kind!r}"
        )
    for m in ENSEMBLE_METHODS.values():
        if m.noise_kind == c.noise_kind and m.loss == c.loss:
            return m.name
    return f"{'upl' if c.noise_kind == 'pseudo_topk' else 'robust_upl'}_{c.loss}"


@dataclass(frozen=True)
class Ensemble:
    """P members of one method that differ only in seed; ``repeat`` numbers independent ensembles."""

    method: str
    repeat: int
    members: tuple[RunConfig, ...]

    @property
    def dataset(self) -> str:
        return self.members[0].dataset


def member_seeds(repeat: int, n_prompts: int) -> list[int]:
    """Repeat 1 uses seeds 1..P (the paper's four prompts), repeat 2 uses P+1..2P, and so on."""
    return list(range((repeat - 1) * n_prompts + 1, repeat * n_prompts + 1))


def members(ensembles: Iterable[Ensemble]) -> list[RunConfig]:
    """Every member config, each once, in order."""
    return list({c.run_id: c for e in ensembles for c in e.members}.values())


def is_done(c: RunConfig, experiment: str) -> bool:
    """Done, with its trained prompt on disk (what ``ensemble`` needs)."""
    return store.is_done(c, experiment) and (store.run_dir(c, experiment) / PROMPT_FILE).is_file()


# -- the ensemble ------------------------------------------------------------------------------------


@torch.no_grad()
def member_logits(c: RunConfig, experiment: str, device=None, dataset=None, bundle=None) -> torch.Tensor:
    """Raw test logits [N_test, C] (float32, CPU) of a finished member, recomputed from its stored
    context: the same module the engine built (same init), its trained parameters loaded back."""
    d = store.run_dir(c, experiment)
    if not is_done(c, experiment):
        raise FileNotFoundError(
            f"member {c.run_id} ({method_of(c)}, seed {c.seed}) is not trained in "
            f"experiment {experiment!r} ({d}); sweep its members into {experiment!r} first"
        )
    device = engine.resolve_device(device)
    precision = engine.resolve_precision(c.precision, device)
    ds = dataset if dataset is not None else get_dataset(c.dataset)
    bundle = bundle if bundle is not None else engine.backbone(c.backbone, c.pretrained, str(device))
    module = methods.init_module(methods.get(c.method), c, bundle, ds, device)
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


def ensemble(e: Ensemble | Sequence[RunConfig], experiment: str, device=None) -> dict:
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
        missing = [c.seed for c, m in zip(cs, ms) if m is None]
        raise FileNotFoundError(
            f"members with seeds {missing} are not trained in {experiment!r}: sweep its members first"
        )
    ds = get_dataset(cs[0].dataset)
    z = average_logits(member_logits(c, experiment, device, dataset=ds) for c in cs)
    y = torch.as_tensor(np.asarray(ds.test.labels, np.int64))
    acc = float((z.argmax(-1) == y).double().mean()) if len(y) else float("nan")
    m0 = ms[0]
    return {
        "test_acc": acc,
        "member_test_acc": [m["test_acc"] for m in ms],
        "n_prompts": len(cs),
        "method": method_of(cs[0]),
        **{
            k: m0[k]
            for k in (
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
