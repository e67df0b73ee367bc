"""Section 5: unsupervised prompt tuning from CLIP's own zero-shot pseudo-labels (UPL, Robust UPL).

Pipeline of one ensemble member (one ``UPLConfig``):
    zero-shot CLIP (the dataset's hand-crafted template, centre crops from the feature cache) on the
    whole *unlabeled* train split -> arg-max pseudo-label and softmax confidence per image
    -> K images per pseudo-class (``select``) -> prompt tuning on them with the engine's own
    ``fit`` (the pseudo-labels are the "noisy" labels, the ground truth is kept beside them only to
    report pseudo-label accuracy) -> the learned context, stored in the run folder.
An ensemble is P members that differ only in ``seed`` (context init, batch order, views); its
prediction is the arg-max of their *averaged raw logits* (``logit_scale * cos``), as UPL's
``upl_test.py`` does (the paper: P = 4 prompts, UPL's repo: 16).

Methods (``METHODS``):
- ``upl`` (Huang et al. 2022): per pseudo-class the K most confident images, CE.
- ``robust_upl_ce`` / ``robust_upl_gce`` (the paper): per pseudo-class K images drawn uniformly at
  random from those pseudo-labelled as that class, CE or GCE (q = 0.5).
Either way every image appears at most once, under its arg-max class (UPL's rule, reference §2e).

Classes that receive fewer than K pseudo-labels (``fill``):
- ``"all"`` (default, UPL's behaviour): take all of them, so the class has fewer than K samples;
  a class nobody predicts gets none.
- ``"replace"``: take all of them once and top up to K by drawing among them with replacement
  (duplicates are separate training samples); a class nobody predicts still gets none.
Both are counted in the metrics (``n_short_classes``, ``n_empty_classes``, ``class_counts``).

Choices and where they depart from the reference code:
- One training set per ensemble: all members of an ensemble share the selection (drawn from
  ``selection_seed``), as UPL trains its 16 prompts on one pseudo-labelled set; members differ in
  ``seed`` only. Robust UPL's code is not public (reference §2e), this is our reading.
- The random draw uses its own numpy stream per class, ``rng_stream(selection_seed, UPL_STREAM, c)``
  (ptnl.data.sampling), so a class's draw depends only on that class's pseudo-labelled images.
- Zero-shot uses CLIP's ``preprocess`` (centre crop), as PTNL does; UPL squash-resizes (§2e).
  On GPU the zero-shot pass runs in the run's precision (bf16 under "auto"), so a handful of
  near-tied pseudo-labels can differ from an fp32 CPU pass.
- Top-K ties in confidence are broken by the lower image index (deterministic).

Storage: each member is one run of the run store, ``results/<experiment>/<run-id>/`` with
``config.json``, ``metrics.json``, ``prompt.pt`` and ``done``. ``prompt.pt`` holds the member's
trained parameters only (the context: n_ctx x width floats, a few KB), written atomically before
``done``. The ensemble recomputes each member's test logits from it (one text-tower pass plus one
matmul over the cached test features): storing the logits instead would cost N_test x C floats per
member (200 MB for ImageNet), the context costs 32 KB and the recomputation milliseconds.
"""

from __future__ import annotations

import difflib
import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ptnl.core import store
from ptnl.train import engine
from ptnl.train import features as F
from ptnl.train.config import RunConfig, run_identity

SELECTIONS = ("topk", "random")
FILLS = ("all", "replace")
# method -> (selection, loss); GCE's q comes from ptnl.sections.experiments.config (0.5, Section 3).
METHODS = {"upl": ("topk", "ce"), "robust_upl_ce": ("random", "ce"), "robust_upl_gce": ("random", "gce")}
PAPER_N_PROMPTS = 4  # Section 5: "combining the outputs of four distinct models"
UPL_STREAM = 11  # numpy stream id of the random selection (ptnl.data.sampling uses 1-3); never renumber
PROMPT_FILE = "prompt.pt"
PSEUDO_KIND = "pseudo"  # NoisyLabels.kind of zero-shot pseudo-labels
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
            value = getattr(self, name)
            if value not in allowed:
                close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown {name} {value!r}{hint}; choose one of {', '.join(allowed)}")
        s = self.selection_seed
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ValueError(f"selection_seed must be an integer >= 0, got {s!r}")
        object.__setattr__(self, "selection_seed", int(s))

    # -- identity (the protocol ptnl.core.store uses) ------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {**self.prompt.to_dict(), **{k: getattr(self, k) for k in _UPL_FIELDS}}

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

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
    from ptnl.sections.experiments import config as run_config

    if method not in METHODS:
        raise ValueError(f"unknown UPL method {method!r}; choose one of {', '.join(METHODS)}")
    selection, loss = METHODS[method]
    prompt = run_config(
        dataset,
        backbone,
        "prompt",
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


def sec5_unsupervised(
    backbone: str,
    datasets: Sequence[str],
    n_prompts: int = PAPER_N_PROMPTS,
    seeds: Sequence[int] = (1,),
    epochs: int = 50,
    shots: int = 16,
    fill: str = "all",
    methods: Sequence[str] = tuple(METHODS),
    feature_mode: str = "views",
    pretrained="default",
) -> list[Ensemble]:
    """Notebook 07: every (dataset, method, repeat) ensemble. Repeat ``s`` draws Robust UPL's
    images with ``selection_seed = s`` and trains prompts ``member_seeds(s, n_prompts)``."""
    from ptnl.sections.experiments import _as_list, pretrained_for

    if isinstance(n_prompts, bool) or not isinstance(n_prompts, int) or n_prompts < 1:
        raise ValueError(
            f"n_prompts must be an integer >= 1 (the paper ensembles 4 prompts), got {n_prompts!r}"
        )
    out = []
    for dataset in _as_list(datasets, "datasets"):
        for method in _as_list(methods, "methods"):
            for s in _as_list(seeds, "seeds"):
                if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                    raise ValueError(f"seeds are repeat numbers >= 1, got {s!r}")
                members = tuple(
                    config(
                        method,
                        dataset,
                        backbone,
                        seed=m,
                        selection_seed=s,
                        fill=fill,
                        shots=shots,
                        epochs=epochs,
                        feature_mode=feature_mode,
                        pretrained=pretrained_for(pretrained, backbone),
                    )
                    for m in member_seeds(s, n_prompts)
                )
                out.append(Ensemble(method, s, members))
    return out


def members(ensembles: Iterable[Ensemble]) -> list[UPLConfig]:
    """Every member config, each once, in order."""
    return list({c.run_id: c for e in ensembles for c in e.members}.values())


def describe(ensembles: Sequence[Ensemble], experiment: str) -> str:
    """What ``run`` will do: ensembles, member runs done / to run, and what is missing on disk."""
    from ptnl.sections.experiments import dataset_on_disk, weights_on_disk

    ms = members(ensembles)
    done = sum(_is_done(c, experiment) for c in ms)
    pending = [c.prompt for c in ms if not _is_done(c, experiment)]
    lines = [
        f"{len(ensembles)} ensembles ({len(ms)} member runs) in experiment {experiment!r}: {done} done, "
        f"{len(ms) - done} to run",
        f"  backbones: {', '.join(sorted({c.prompt.backbone for c in ms}))}; "
        f"datasets: {', '.join(dict.fromkeys(c.prompt.dataset for c in ms))}",
    ]
    missing_d = sorted({p.dataset for p in pending if not dataset_on_disk(p.dataset)})
    missing_w = sorted(
        {f"{p.backbone} ({p.pretrained})" for p in pending if not weights_on_disk(p.backbone, p.pretrained)}
    )
    if missing_d:
        lines.append(f"  MISSING datasets: {', '.join(missing_d)}")
    if missing_w:
        lines.append(f"  MISSING weights: {', '.join(missing_w)}")
    return "\n".join(lines)


def zeroshot_configs(ensembles: Iterable[Ensemble]) -> list[RunConfig]:
    """The zero-shot run (engine method "zeroshot") of each dataset/backbone: Table 5's 0-Shot column."""
    from ptnl.sections.experiments import config as run_config

    seen = {}
    for e in ensembles:
        p = e.members[0].prompt
        c = run_config(
            p.dataset,
            p.backbone,
            "zeroshot",
            pretrained=p.pretrained,
            precision=p.precision,
            epochs=p.epochs,
            shots=p.shots,
            feature_mode=p.feature_mode,
        )
        seen.setdefault(c.run_id, c)
    return list(seen.values())


# -- pseudo-labels and selection --------------------------------------------------------------------


@dataclass(frozen=True)
class PseudoLabels:
    """Zero-shot predictions on the whole train split (no ground truth is used to make them)."""

    pred: np.ndarray  # int64 [N]: arg-max class
    conf: np.ndarray  # float32 [N]: its softmax probability (UPL's confidence)
    n_classes: int


@torch.no_grad()
def pseudo_label(
    bundle, dataset, device="cpu", precision="fp32", batch: int = engine.EVAL_BATCH
) -> PseudoLabels:
    """Zero-shot CLIP on every train image: the hand-crafted prompt, centre crops, softmax of
    ``logit_scale * cos`` (UPL's ``zero_shot_analyze``), in batches so only [N] arrays are kept."""
    from ptnl.models.heads import ZeroShotCLIP

    device = torch.device(device)
    idx = np.arange(len(dataset.train))
    feats = F.cached_features(bundle, dataset, "train", idx, ["center"], device, precision)[0]
    zs = ZeroShotCLIP(bundle, dataset.prompts()).to(device)
    emb = zs.class_embeddings()
    pred, conf = [], []
    for s in range(0, len(feats), batch):
        with engine.autocast(device, precision):
            logits = zs(feats[s : s + batch].to(device), emb)
        c, p = logits.float().softmax(-1).max(-1)
        pred.append(p.cpu())
        conf.append(c.cpu())
    cat = (lambda xs, dt: torch.cat(xs).numpy().astype(dt)) if pred else (lambda xs, dt: np.zeros(0, dt))
    return PseudoLabels(cat(pred, np.int64), cat(conf, np.float32), dataset.n_classes)


@dataclass(frozen=True)
class Selection:
    """The training set of one ensemble: indices into the train split and their pseudo-labels."""

    idx: np.ndarray  # int64 [M], grouped by pseudo-class (0..C-1)
    labels: np.ndarray  # int64 [M], the pseudo-label of each
    predicted: np.ndarray  # int64 [C]: train images pseudo-labelled as each class
    counts: np.ndarray  # int64 [C]: training samples of each pseudo-class
    shots: int

    @property
    def n_short_classes(self) -> int:
        """Classes predicted for at least one but fewer than K train images."""
        return int(((self.predicted > 0) & (self.predicted < self.shots)).sum())

    @property
    def n_empty_classes(self) -> int:
        return int((self.predicted == 0).sum())


def select(
    pl: PseudoLabels, shots: int, selection: str = "topk", fill: str = "all", seed: int = 1
) -> Selection:
    """K images per pseudo-class: the most confident (``topk``) or uniformly drawn (``random``).

    Each image is used at most once, for its arg-max class (before ``fill="replace"`` tops short
    classes up with duplicates). See the module docstring for short classes.
    """
    from ptnl.data.sampling import check_seed, class_members, rng_stream

    if isinstance(shots, bool) or not isinstance(shots, int | np.integer) or shots < 1:
        raise ValueError(
            f"shots must be an integer >= 1 (K images per pseudo-class; the paper uses 16), got {shots!r}"
        )
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if fill not in FILLS:
        raise ValueError(
            f"fill must be one of {FILLS} (what to do with classes predicted fewer than K times), "
            f"got {fill!r}"
        )
    seed = check_seed(seed)
    pred, conf = np.asarray(pl.pred, np.int64), np.asarray(pl.conf, np.float64)
    if pred.shape != conf.shape or pred.ndim != 1:
        raise ValueError(f"pred and conf must be 1-D of equal length, got {pred.shape} and {conf.shape}")
    idx, labels = [], []
    groups = class_members(pred, pl.n_classes)
    for c, m in enumerate(groups):
        rng = rng_stream(seed, UPL_STREAM, c)
        if selection == "topk":
            # Most confident first; lexsort's last key is primary, ties go to the lower index.
            take = m[np.lexsort((m, -conf[m]))][:shots]
        else:
            take = m[rng.permutation(len(m))[:shots]] if len(m) else m
        take = np.sort(take)
        if fill == "replace" and 0 < len(take) < shots:
            take = np.concatenate([take, rng.choice(take, shots - len(take), replace=True)])
        idx.append(take)
        labels.append(np.full(len(take), c, dtype=np.int64))
    idx = np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return Selection(
        idx,
        labels,
        np.array([len(m) for m in groups], np.int64),
        np.bincount(labels, minlength=pl.n_classes).astype(np.int64),
        int(shots),
    )


def noisy_labels(dataset, sel: Selection, seed: int):
    """The selection as ``NoisyLabels``: ``noisy`` = pseudo-labels, ``true`` = ground truth."""
    from ptnl.data.noise import NoisyLabels

    true = np.asarray(dataset.train.labels, np.int64)[sel.idx]
    wrong = sel.labels != true
    return NoisyLabels(
        true, sel.labels.copy(), wrong, PSEUDO_KIND, float(wrong.mean()) if len(wrong) else 0.0, seed
    )


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
    ds = dataset if dataset is not None else engine._load_dataset(p.dataset)
    bundle = bundle if bundle is not None else engine._load_clip(p.backbone, p.pretrained, str(device))
    pl = pseudo_label(bundle, ds, device, precision)
    sel = select(pl, p.shots, c0.selection, c0.fill, c0.selection_seed)
    labels = noisy_labels(ds, sel, c0.selection_seed)
    runs = [engine.Run(c.prompt, bundle, ds, sel.idx, labels, device, precision) for c in configs]
    return runs, sel, pl


def _group_key(c: UPLConfig) -> str:
    from ptnl.train.sweep import group_key, groupable

    if not groupable(c.prompt):  # exact mode: one at a time
        return c.run_id
    return group_key(c.prompt) + repr(c.selection_key())


def train(
    configs: Iterable[UPLConfig],
    experiment: str | None = None,
    device=None,
    group_size: int = 4,
    progress: bool = False,
) -> list[dict]:
    """Train every member not yet done (a finished run is loaded, not redone); returns the
    metrics in config order. Members sharing a selection and shape train ``group_size`` at a
    time through one batched text pass (``engine.fit``; as ``engine.run_group``, equal to
    training them one by one up to float rounding). Without ``experiment`` nothing is stored
    (and ``ensemble`` cannot use the members)."""
    configs = list(configs)
    bad = [type(c).__name__ for c in configs if not isinstance(c, UPLConfig)]
    if bad:
        raise ValueError(f"train() takes UPLConfigs (see upl.config / upl.sec5_unsupervised), got a {bad[0]}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
    todo = [c for c in configs if experiment is None or not _is_done(c, experiment)]
    todo = list({c.run_id: c for c in todo}.values())
    buckets: dict[str, list[UPLConfig]] = {}
    for c in todo:
        buckets.setdefault(_group_key(c), []).append(c)
    done = {}

    def train_group(group):
        return _train_group(group, experiment, device, progress)

    for bucket in buckets.values():
        for s in range(0, len(bucket), group_size):
            group = bucket[s : s + group_size]
            # Claimed as engine.run's runs are: two processes never train one member twice.
            done.update(
                train_group(group) if experiment is None else engine.claimed(group, experiment, train_group)
            )
    return [done[c.run_id] if c.run_id in done else store.load_metrics(c, experiment) for c in configs]


def _is_done(c: UPLConfig, experiment: str) -> bool:
    return store.is_done(c, experiment) and (store.run_dir(c, experiment) / PROMPT_FILE).is_file()


def _train_group(group: list[UPLConfig], experiment, device, progress) -> dict[str, dict]:
    t0 = time.perf_counter()
    runs, sel, pl = prepare(group, device)
    modules = [
        engine.build_module(r.cfg, r.bundle, r.dataset, F.generator("init", r.cfg.seed)).to(r.device)
        for r in runs
    ]
    hists = engine.fit(runs, modules, [engine.feature_source(r, progress) for r in runs], progress)
    test = engine.test_features(runs[0], progress)
    seconds = (time.perf_counter() - t0) / len(runs)
    gt = np.asarray(runs[0].dataset.train.labels, np.int64)
    out = {}
    for c, r, m, h in zip(group, runs, modules, hists):
        acc = engine.evaluate(m, test, r.dataset.test.labels, r.device, r.precision)
        metrics = {
            "test_acc": acc,  # this member alone; the ensemble's is ``ensemble()``'s
            **h,
            **engine._context_metrics(r, seconds, len(runs)),
            "method": c.method,
            "pseudo_label_acc": float(1.0 - r.labels.is_noisy.mean()) if r.n_train else float("nan"),
            "zeroshot_train_acc": float((pl.pred == gt).mean()) if len(gt) else float("nan"),
            "n_unique": int(len(np.unique(sel.idx))),
            "n_short_classes": sel.n_short_classes,
            "n_empty_classes": sel.n_empty_classes,
            "class_counts": sel.counts.tolist(),
            "predicted_counts": sel.predicted.tolist(),
        }
        out[c.run_id] = metrics
        if experiment is not None:  # written whole, the trained prompt beside the metrics
            buf = io.BytesIO()
            torch.save({k: v.detach().float().cpu() for k, v in _trained_state(m).items()}, buf)
            store.write_run(c, experiment, metrics, files={PROMPT_FILE: buf.getvalue()})
    return out


def _trained_state(module) -> dict[str, torch.Tensor]:
    names = {id(p) for p in module.trainable_parameters()}
    return {k: v for k, v in module.named_parameters() if id(v) in names}


# -- the ensemble ------------------------------------------------------------------------------------


@torch.no_grad()
def member_logits(c: UPLConfig, experiment: str, device=None, dataset=None, bundle=None) -> torch.Tensor:
    """Raw test logits [N_test, C] (float32, CPU) of a finished member, recomputed from its stored
    context: the same module the engine built (same init), its trained parameters loaded back."""
    d = store.run_dir(c, experiment)
    if not _is_done(c, experiment):
        raise FileNotFoundError(
            f"member {c.run_id} ({c.method}, seed {c.prompt.seed}) is not trained in "
            f"experiment {experiment!r} ({d}); run upl.train([...], {experiment!r}) first"
        )
    p = c.prompt
    device = engine.resolve_device(device)
    precision = engine.resolve_precision(p.precision, device)
    ds = dataset if dataset is not None else engine._load_dataset(p.dataset)
    bundle = bundle if bundle is not None else engine._load_clip(p.backbone, p.pretrained, str(device))
    module = engine.build_module(p, bundle, ds, F.generator("init", p.seed)).to(device)
    state = torch.load(d / PROMPT_FILE, map_location="cpu", weights_only=True)
    own = _trained_state(module)
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise ValueError(
            f"{d / PROMPT_FILE} holds {sorted(state)}, the module trains {sorted(own)}: remove {d}"
        )
    for k, v in own.items():
        v.copy_(state[k].to(v.dtype))
    feats = F.cached_features(bundle, ds, "test", np.arange(len(ds.test)), ["center"], device, precision)[0]
    with engine.autocast(device, precision):
        emb = module.class_embeddings()
    out = []
    for s in range(0, len(feats), engine.EVAL_BATCH):
        with engine.autocast(device, precision):
            out.append(module(feats[s : s + engine.EVAL_BATCH].to(device), emb).float().cpu())
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
    ds = engine._load_dataset(cs[0].prompt.dataset)
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


def evaluate(ensembles: Sequence[Ensemble], experiment: str, device=None) -> pd.DataFrame:
    """One row per ensemble: dataset, backbone, variant (method), repeat, ensemble and mean member
    accuracy (percent), pseudo-label accuracy of its training set and of the whole train split."""
    rows = []
    for e in ensembles:
        r = ensemble(e, experiment, device)
        p = e.members[0]
        rows.append(
            {
                "dataset": p.prompt.dataset,
                "backbone": p.prompt.backbone,
                "variant": e.method,
                "repeat": e.repeat,
                "n_prompts": r["n_prompts"],
                "fill": p.fill,
                "acc": 100 * r["test_acc"],
                "member_acc": 100 * float(np.mean(r["member_test_acc"])),
                "pl_acc": 100 * r["pseudo_label_acc"],
                "zeroshot_train_acc": 100 * r["zeroshot_train_acc"],
                "n_train": r["n_train"],
                "n_unique": r["n_unique"],
                "n_classes": r["n_classes"],
                "n_short_classes": r["n_short_classes"],
                "n_empty_classes": r["n_empty_classes"],
            }
        )
    return pd.DataFrame(rows)


def run(
    ensembles: Sequence[Ensemble], experiment: str, device=None, group_size: int = 4, progress: bool = False
) -> pd.DataFrame:
    """Train what is missing (members and the zero-shot runs) and evaluate every ensemble;
    the zero-shot test accuracy comes back as rows of variant "zeroshot"."""
    train(members(ensembles), experiment, device, group_size, progress)
    zs = [engine.run(c, experiment, device) for c in zeroshot_configs(ensembles)]
    df = evaluate(ensembles, experiment, device)
    zrows = [
        {
            "dataset": c.dataset,
            "backbone": c.backbone,
            "variant": "zeroshot",
            "repeat": 1,
            "acc": 100 * m["test_acc"],
        }
        for c, m in zip(zeroshot_configs(ensembles), zs)
    ]
    out = pd.concat([pd.DataFrame(zrows), df], ignore_index=True)
    counts = ["n_prompts", "n_train", "n_unique", "n_classes", "n_short_classes", "n_empty_classes"]
    return out.astype({c: "Int64" for c in counts if c in out})  # integers, missing on zero-shot rows


# -- tables and claims -----------------------------------------------------------------------------

TABLE5_VARIANTS = ("zeroshot", "upl", "robust_upl_ce", "robust_upl_gce")


def summarize(df: pd.DataFrame, value: str = "acc") -> pd.DataFrame:
    """Mean, std and count over repeats per (dataset, backbone, variant): claims.summarize's shape."""
    rows = df.dropna(subset=[value])
    g = rows.groupby(["dataset", "backbone", "variant"], sort=True)[value]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def pseudo_label_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Pseudo-label accuracy of each selection as variants ``pl:upl`` / ``pl:robust_upl`` (the
    two Robust UPL losses share one training set), plus ``pl:all`` (the whole train split)."""
    rows = df[df["variant"] != "zeroshot"].copy()
    rows["variant"] = ["pl:upl" if v == "upl" else "pl:robust_upl" for v in rows["variant"]]
    rows = rows.drop_duplicates(["dataset", "backbone", "variant", "repeat"])
    every = rows.drop_duplicates(["dataset", "backbone", "repeat"]).assign(variant="pl:all")
    every["pl_acc"] = every["zeroshot_train_acc"]
    return summarize(pd.concat([rows, every], ignore_index=True), "pl_acc")


def paper_summary() -> pd.DataFrame:
    """Table 5 and the Caltech101 pseudo-label accuracies of Section 5 in ``summarize``'s shape."""
    from ptnl.report import reference

    t = reference.table("Table 5")
    out = pd.DataFrame(
        {
            "dataset": t["dataset"],
            "backbone": t["backbone"],
            "variant": t["method"],
            "mean": t["accuracy"],
            "std": np.nan,
            "n": 1,
        }
    )
    pl = pd.DataFrame(
        [
            {
                "dataset": "Caltech101",
                "backbone": "RN50",
                "variant": f"pl:{k}",
                "mean": v,
                "std": np.nan,
                "n": 1,
            }
            for k, v in reference.PSEUDO_LABEL_ACCURACY_CALTECH101.items()
        ]
    )
    return pd.concat([out, pl], ignore_index=True)


def table(
    ours: pd.DataFrame,
    paper: pd.DataFrame | None = None,
    variants: Sequence[str] = TABLE5_VARIANTS,
    decimals: int = 1,
) -> pd.DataFrame:
    """Table 5's layout: one row per (source, dataset), one column per variant, "mean ± std" over
    repeats, and a "mean" row over datasets per source."""
    from ptnl.report.claims import fmt

    blocks = []
    for source, s in (("ours", ours), ("paper", paper)):
        if s is None or not len(s):
            continue
        s = s[s["variant"].isin(variants)]
        if not len(s):
            continue
        datasets = sorted(s["dataset"].unique())
        by = {(d, v): (m, sd) for d, v, m, sd in zip(s["dataset"], s["variant"], s["mean"], s["std"])}
        present = [v for v in variants if v in set(s["variant"])]
        cells = pd.DataFrame(
            {v: [fmt(*by[(d, v)], decimals) if (d, v) in by else "" for d in datasets] for v in present},
            index=datasets,
        )
        if len(datasets) > 1:
            cells.loc["mean"] = [f"{s[s['variant'] == v]['mean'].mean():.{decimals}f}" for v in present]
        cells.index = pd.MultiIndex.from_tuples(
            [(source, d) for d in cells.index], names=["source", "dataset"]
        )
        blocks.append(cells)
    return pd.concat(blocks).fillna("") if blocks else pd.DataFrame()


def claims_specs() -> list[dict]:
    """Section 5's claims, measured on ensemble accuracies and pseudo-label accuracies (one
    summary frame holding both: Table 5's variants and ``pl:*``)."""
    from ptnl.report.claims import acc, claim

    def best_other(s):
        return pd.concat([acc(s, "upl"), acc(s, "robust_upl_ce")], axis=1).max(axis=1)

    return [
        *(
            claim(
                f"{name} improves on zero-shot CLIP without any label",
                f"acc({v}) - acc(zero-shot)",
                lambda s, v=v: acc(s, v) - acc(s, "zeroshot"),
                0.0,
            )
            for v, name in (
                ("upl", "UPL"),
                ("robust_upl_ce", "Robust UPL (CE)"),
                ("robust_upl_gce", "Robust UPL (GCE)"),
            )
        ),
        claim(
            "Robust UPL with GCE is the best of the three on average",
            "acc(Robust GCE) - max(acc(UPL), acc(Robust CE))",
            lambda s: acc(s, "robust_upl_gce") - best_other(s),
            0.0,
        ),
        claim(
            "Robust UPL (GCE) beats UPL",
            "acc(Robust GCE) - acc(UPL)",
            lambda s: acc(s, "robust_upl_gce") - acc(s, "upl"),
            0.0,
        ),
        claim(
            "GCE improves Robust UPL over CE",
            "acc(Robust GCE) - acc(Robust CE)",
            lambda s: acc(s, "robust_upl_gce") - acc(s, "robust_upl_ce"),
            0.0,
        ),
        claim(
            "UPL's confident pseudo-labels are cleaner than Robust UPL's random ones (93% vs 83% on Caltech101)",
            "pseudo-label acc(UPL set) - pseudo-label acc(Robust UPL set)",
            lambda s: acc(s, "pl:upl") - acc(s, "pl:robust_upl"),
            0.0,
        ),
        claim(
            "The noisier but more diverse Robust UPL set does not hurt: Robust UPL (CE) matches or beats UPL",
            "acc(Robust CE) - acc(UPL) (matches = within 1 point)",
            lambda s: acc(s, "robust_upl_ce") - acc(s, "upl"),
            -1.0,
        ),
    ]


def figure(
    ours: pd.DataFrame,
    paper: pd.DataFrame | None = None,
    variants: Sequence[str] = ("upl", "robust_upl_ce", "robust_upl_gce"),
):
    """Gain over zero-shot CLIP (accuracy points) per dataset, one bar per method: ours with the
    std over repeats, the paper's Table 5 in its own panel (different datasets in the toy world).
    The zero-shot accuracy each bar is measured from is written under the dataset's name."""
    import matplotlib.pyplot as plt

    from ptnl.report import figures

    sources = [("ours", ours)] + ([("paper", paper)] if paper is not None and len(paper) else [])
    colors = figures.colors_for(
        list(variants), {"upl": "#de8f05", "robust_upl_ce": "#56b4e9", "robust_upl_gce": "#0173b2"}
    )
    names = {"upl": "UPL", "robust_upl_ce": "Robust UPL (CE)", "robust_upl_gce": "Robust UPL (GCE)"}
    fig, axes = plt.subplots(1, len(sources), figsize=(6.5 * len(sources), 3.4), squeeze=False)
    for ax, (source, s) in zip(axes[0], sources):
        zs = s[s["variant"] == "zeroshot"].set_index("dataset")["mean"]
        datasets = sorted(set(zs.index) & set(s.loc[s["variant"].isin(variants), "dataset"]))
        width = 0.8 / len(variants)
        for k, v in enumerate(variants):
            rows = s[s["variant"] == v].set_index("dataset").reindex(datasets)
            x = np.arange(len(datasets)) + (k - (len(variants) - 1) / 2) * width
            err = rows["std"].to_numpy(float) if source == "ours" and rows["std"].notna().any() else None
            ax.bar(
                x,
                rows["mean"].to_numpy(float) - zs.reindex(datasets).to_numpy(float),
                width,
                yerr=None if err is None else np.nan_to_num(err),
                color=colors[v],
                label=names.get(v, v),
                capsize=2,
            )
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(datasets)))
        ax.set_xticklabels(
            [f"{d}\n(0-shot {zs[d]:.1f})" for d in datasets], rotation=30, ha="right", fontsize=7
        )
        ax.set_ylabel("accuracy - zero-shot (points)")
        spread = source == "ours" and s["std"].notna().any()
        ax.set_title(
            "paper: Table 5 (RN50)"
            if source == "paper"
            else "ours (mean ± std over repeats)"
            if spread
            else "ours (one ensemble per dataset)"
        )
    axes[0][0].legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig
