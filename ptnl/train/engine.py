"""Train and evaluate one run (or a batched group of prompt-tuning runs) from a RunConfig.

Data flow of one run:
    get_dataset -> fewshot_indices(train labels, shots, seed) -> add_noise (or another label
    source: ``ptnl.train.labels``, the protocols of ``ptnl.data.protocols``, a noise manifest, a
    dataset's own noisy labels; ``draw_images`` and ``relabel``) -> load_clip -> image features (``ptnl.train.features``: cache
    of train views / centre crops and test centre crops, or online in ``exact`` mode) -> the
    method's trainer (``ptnl.train.trainers``, picked by the method registry) -> metrics
    -> the run store (``run``, ``run_group``: claimed, written whole once they succeed).

The few-shot draw and the noise use ptnl.data's own random streams of the run's seed, the
trainers the streams ``features.generator`` derives from it by name; so runs that differ only in
noise rate or loss share images, initialisation and batch order (paired comparisons).

Precision: fp32 on CPU; on GPU the forward passes run under bf16 autocast ("auto") while the
trained parameters, their gradients and SGD's state stay fp32. CoOp trains pure fp16, ctx
included: ``precision="coop-fp16"`` reproduces that arithmetic (``optim.HalfSGD``) with fp16
autocast on the GPU and an fp32 forward on the CPU. Losses are always computed in fp32.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

import ptnl
from ptnl.core import numerics
from ptnl.data import check_images, fewshot_indices
from ptnl.data.manifest import MANIFEST_KIND, read_manifest, write_manifest
from ptnl.data.noise import NoisyLabels, add_noise
from ptnl.data.protocols import (
    INSTANCE_KIND,
    POOLED_KINDS,
    PTNL_KIND,
    SAMPLER_KINDS,
    instance_noise,
    instance_pixels,
    pooled_noise,
    ptnl_fewshot,
)
from ptnl.data.readers import get_dataset
from ptnl.models.clip import load_clip
from ptnl.train import methods, store
from ptnl.train.config import RunConfig
from ptnl.train.labels import zeroshot_probs
from ptnl.train.robust import TRAINERS as ROBUST_TRAINERS
from ptnl.train.trainers import TRAINERS, train_modules

# Fields that may differ inside one batched group (run_group): they change data, labels, loss
# or optimiser state, not the shape of the shared text pass.
GROUP_FREE_FIELDS = (
    "seed",
    "noise_kind",
    "confusion_from",
    "noise_rate",
    "loss",
    "loss_params",
    "lr",
    "momentum",
    "weight_decay",
    "warmup_lr",
    "grad_ratio",
)
REAL_KIND = "real"  # NoisyLabels.kind of a dataset's own noisy labels
GROUP_LOSS_FIELDS = ("loss", "loss_params", "lr", "momentum", "weight_decay", "warmup_lr", "grad_ratio")


# -- set-up ---------------------------------------------------------------------------------------


def resolve_device(device=None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The forward passes' precision: fp32, bf16 or fp16 (autocast)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "coop-fp16":  # CoOp runs its towers in fp16; the CPU has no fast fp16 autocast
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


@functools.lru_cache(maxsize=2)
def backbone(name: str, pretrained, device: str):
    """The CLIP bundle of a backbone, loaded once per process: its frozen towers are shared by
    every run of a sweep; methods that train a tower (tenc_ft, visual_ft) copy the parts they train."""
    return load_clip(name, pretrained=pretrained, device=device)


@dataclass
class Run:
    """Everything a method family needs, built once per run by ``prepare``."""

    cfg: RunConfig
    bundle: object  # ptnl.models.clip.CLIPBundle
    dataset: object  # ptnl.data.base.Dataset
    train_idx: np.ndarray  # few-shot indices into dataset.train
    labels: object  # ptnl.data.noise.NoisyLabels over train_idx
    device: torch.device
    precision: str  # resolved: fp32, bf16 or fp16

    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    @property
    def fp16_updates(self) -> bool:
        """Trained parameters and SGD's state held in fp16, as CoOp's PREC=fp16 (``HalfSGD``)."""
        return self.cfg.precision == "coop-fp16"


def prepare(cfg: RunConfig, device=None, dataset=None, bundle=None) -> Run:
    """Load (or take) the dataset and backbone, draw the few-shot set and its noisy labels."""
    device = resolve_device(device)
    precision = resolve_precision(cfg.precision, device)
    ds = dataset if dataset is not None else get_dataset(cfg.dataset)
    idx, labels = draw_images(cfg, ds)
    # Every image the run will read (its few-shot train images, all of test) is checked to be there
    # and readable before the backbone loads or anything is encoded.
    check_images(ds.train, [ds.train.refs[i] for i in idx])
    check_images(ds.test)
    bundle = bundle if bundle is not None else backbone(cfg.backbone, cfg.pretrained, str(device))
    if labels is None:
        labels = relabel(cfg, ds, idx, bundle, device, precision)
    return Run(cfg, bundle, ds, idx, labels, device, precision)


def draw_images(cfg: RunConfig, ds) -> tuple[np.ndarray, object]:
    """The few-shot images (indices into ``ds.train``), with their labels where the protocol picks
    both at once (PTNL's sampler, a manifest), else None: ``relabel`` makes them."""
    if cfg.noise_kind == PTNL_KIND:
        if ds.train_true_labels is not None and not np.array_equal(ds.train_true_labels, ds.train.labels):
            raise ValueError(
                f"{ds.name} carries real noisy labels; PTNL's sampler makes synthetic ones: use the default "
                "noise_kind at noise_rate 0 (or the sampler on its clean variant, e.g. CIFAR10N-clean)"
            )
        return ptnl_fewshot(ds.train.labels, ds.n_classes, cfg.shots, cfg.noise_rate, cfg.seed)
    if cfg.noise_kind == MANIFEST_KIND:
        return read_manifest(cfg.noise_file, ds)
    return fewshot_indices(ds.train.labels, cfg.shots, cfg.seed, n_classes=ds.n_classes), None


def relabel(cfg: RunConfig, ds, idx, bundle, device, precision):
    """The noisy labels of the few-shot images ``idx`` under ``cfg``'s noise kind and rate; on a
    dataset with real noisy labels (``Dataset.train_true_labels``), its own labels at rate 0."""
    real = ds.train_true_labels
    if real is not None:
        true, given = real[idx], ds.train.labels[idx]
        if cfg.noise_rate == 0.0:
            return NoisyLabels(true, given, (given != true) & (true >= 0), REAL_KIND, 0.0, cfg.seed)
        if not np.array_equal(true, given):
            raise ValueError(
                f"{ds.name} carries real noisy labels: train on them at noise_rate 0, or add synthetic "
                "noise to its clean variant (e.g. CIFAR10N-clean)"
            )
    true = ds.train.labels[idx]
    if cfg.noise_kind in POOLED_KINDS:
        return pooled_noise(true, ds.n_classes, cfg.noise_kind, cfg.noise_rate, cfg.seed)
    if cfg.noise_kind == INSTANCE_KIND:
        pixels = instance_pixels(ds.train, idx) if cfg.noise_rate > 0 else np.zeros((len(idx), 1))
        return instance_noise(true, ds.n_classes, cfg.noise_rate, cfg.seed, pixels)
    scores = None
    if cfg.noise_kind == "confusion" and cfg.noise_rate > 0:
        scores = zeroshot_probs(bundle, ds, idx, device, precision)
    return add_noise(true, ds.n_classes, cfg.noise_kind, cfg.noise_rate, cfg.seed, scores, cfg.confusion_from)


def export_manifest(cfg: RunConfig, path, device=None):
    """Write the noise manifest of ``cfg`` (its training set and labels, ``ptnl.data.manifest``) to
    ``path``; ``cfg.replace(noise_kind="manifest", noise_rate=0.0, noise_file=path)`` trains the same run."""
    r = prepare(cfg, device)
    return write_manifest(path, r.dataset, r.train_idx, r.labels)


def context_metrics(r: Run, seconds: float, group_size: int = 1) -> dict:
    """What every run's metrics record beside its scores: its data, weights, device and time."""
    return {
        "train_label_acc": 1.0 - r.labels.actual_rate if r.labels.known.any() else float("nan"),
        "n_train": r.n_train,
        "n_noisy": int(r.labels.is_noisy.sum()),
        **({"n_truth_unknown": int((~r.labels.known).sum())} if not r.labels.known.all() else {}),
        "n_test": len(r.dataset.test),
        "n_classes": r.dataset.n_classes,
        "feature_mode": r.cfg.feature_mode,
        "weights_id": r.bundle.weights_id,
        "split_source": r.dataset.split_source,
        "device": str(r.device),
        "precision": r.precision,
        **({"update_precision": "fp16"} if r.fp16_updates else {}),
        "seconds": seconds,
        "group_size": group_size,
        "ptnl_version": ptnl.__version__,
        "torch_version": torch.__version__,
        "numeric_path": numerics.describe(),  # where and with which kernels: provenance
    }


# -- groups ---------------------------------------------------------------------------------------


def group_key(cfg: RunConfig) -> str:
    """Configs with equal keys can share one batched text pass (``run_group``)."""
    d = cfg.to_dict()
    # Kinds whose few-shot set depends on seed and rate (its size too) group only across losses.
    free = GROUP_LOSS_FIELDS if cfg.noise_kind in (*SAMPLER_KINDS, MANIFEST_KIND) else GROUP_FREE_FIELDS
    for f in free:
        d.pop(f)
    return RunConfig.__name__ + repr(sorted(d.items()))


def groupable(cfg: RunConfig) -> bool:
    return methods.get(cfg.method).groupable and cfg.feature_mode in ("views", "center")


def train_group(runs: list[Run], progress=False, t0: float | None = None) -> tuple[list[dict], list]:
    """Train prepared runs together (``trainers.train_modules``), whatever their labels' source,
    and add each one's context metrics (the group's time since ``t0``, default now, shared out).
    Returns the metrics and the trained modules."""
    t0 = time.perf_counter() if t0 is None else t0
    scores, modules = train_modules(runs, progress)
    seconds = (time.perf_counter() - t0) / len(runs)
    return [{**s, **context_metrics(r, seconds, len(runs))} for s, r in zip(scores, runs)], modules


# -- runs, through the store ---------------------------------------------------------------------------


def train_and_evaluate(cfg: RunConfig, device=None, progress=False) -> dict:
    """One run, without the store: its metrics dict."""
    t0 = time.perf_counter()
    r = prepare(cfg, device)
    out = {**TRAINERS, **ROBUST_TRAINERS}[methods.get(cfg.method).trainer](r, progress)
    return {**out, **context_metrics(r, time.perf_counter() - t0)}


def run(config: RunConfig, experiment: str | None = None, device=None, progress=False) -> dict:
    """Train and evaluate ``config``; with ``experiment``, through the run store: a finished run
    is loaded, not redone, and a new one is trained under its claim and written whole once it has
    succeeded (a failure leaves nothing). If another live process is training it, this waits for
    that process's result (``store`` explains claims)."""
    if experiment is None:
        return train_and_evaluate(config, device, progress)

    def train(cs):
        metrics = train_and_evaluate(cs[0], device, progress)
        store.write_run(cs[0], experiment, metrics)
        return {cs[0].run_id: metrics}

    trained = claimed([config], experiment, train)
    return trained[config.run_id] if config.run_id in trained else store.load_metrics(config, experiment)


def run_group(configs, experiment: str | None = None, device=None, progress=False) -> list[dict]:
    """Train R prompt-tuning runs that share backbone, dataset, method and shape (they may differ
    in seed, noise, loss and optimiser settings; ``GROUP_FREE_FIELDS``) in one batched text
    pass per step. Each run keeps its own context, optimizer state, data order and views, so its
    metrics equal ``run(config)``'s up to float rounding. Returns the metrics in config order.
    With ``experiment``, runs are claimed and stored as ``run`` does; runs that another process
    holds are left to it and waited for."""
    configs = list(configs)
    if not configs:
        return []
    bad = [c.method + "/" + c.feature_mode for c in configs if not groupable(c)]
    if bad:
        raise ValueError(f"run_group trains prompt methods on cached features only, got {bad[0]}")
    if len({group_key(c) for c in configs}) > 1:
        raise ValueError("run_group needs configs that differ only in " + ", ".join(GROUP_FREE_FIELDS))

    def train(todo):
        t0 = time.perf_counter()
        runs = [prepare(c, device) for c in todo]
        metrics, _ = train_group(runs, progress, t0)
        out = {}
        for r, m in zip(runs, metrics):
            out[r.cfg.run_id] = m
            if experiment is not None:
                store.write_run(r.cfg, experiment, m)
        return out

    todo = list({c.run_id: c for c in configs}.values())
    done = train(todo) if experiment is None else claimed(todo, experiment, train)
    return [done[c.run_id] if c.run_id in done else store.load_metrics(c, experiment) for c in configs]


def claimed(configs: list, experiment: str, train) -> dict[str, dict]:
    """``train(configs) -> {run_id: metrics}`` (which stores them) on those of ``configs`` not done
    yet, each under its claim. Runs another live process holds are left to it and polled for until
    they are done, or trained here if it dies. Returns the metrics of the runs trained here."""
    store.clean(experiment)
    out, todo, told = {}, list(configs), False
    while todo := [c for c in todo if not store.is_done(c, experiment)]:
        held = [c for c in todo if store.claim(c, experiment)]
        try:
            mine = [c for c in held if not store.is_done(c, experiment)]  # it finished before we claimed it
            if mine:
                out.update(train(mine))
        finally:
            for c in held:
                store.release(c, experiment)
        if not held:
            if not told:
                print(
                    f"waiting for {len(todo)} run(s) that another process is training: "
                    f"{store.holder(todo[0], experiment)}",
                    file=sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(store.POLL_SECONDS)
    return out
