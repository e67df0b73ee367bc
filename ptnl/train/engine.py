"""Train and evaluate one run (or a batched group of prompt-tuning runs) from a RunConfig.

Data flow of one run:
    get_dataset -> its training set and labels (``ptnl.data.labels.training_set``: the label
    kind draws the images and labels them, reading zero-shot scores through ``scores.Scorer``
    where it needs them) -> load_clip -> the method's family (``ptnl.train.methods``) trains and
    scores it on image features (``ptnl.train.features``: cache of train views / centre crops and
    test centre crops, or online in ``exact`` mode) -> metrics -> the run store (``run``,
    ``run_group``: claimed, written whole once they succeed).

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
from dataclasses import dataclass, field

import numpy as np
import torch

import ptnl
from ptnl.core import numerics
from ptnl.data import check_images
from ptnl.data import labels as label_sources
from ptnl.data.manifest import write_manifest
from ptnl.data.readers import get_dataset
from ptnl.models.clip import load_clip
from ptnl.train import methods, store
from ptnl.train.config import RunConfig
from ptnl.train.scores import Scorer

# Fields that may differ inside one batched group (run_group) whatever the label kind: they change
# the loss or the optimiser's state, not the shape of the shared text pass. Each label kind adds
# the fields its training sets may differ in and keep their size (``LabelSource.group_across``).
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
    label_info: dict = field(default_factory=dict)  # what the label kind records (ptnl.data.labels)

    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    @property
    def fp16_updates(self) -> bool:
        """Trained parameters and SGD's state held in fp16, as CoOp's PREC=fp16 (``HalfSGD``)."""
        return self.cfg.precision == "coop-fp16"


def prepare(cfg: RunConfig, device=None, dataset=None, bundle=None) -> Run:
    """Load (or take) the dataset and backbone, and make the run's training set and labels
    (``ptnl.data.labels``: the kind's images, its labels, zero-shot scores where it reads them)."""
    device = resolve_device(device)
    precision = resolve_precision(cfg.precision, device)
    ds = dataset if dataset is not None else get_dataset(cfg.dataset)
    scorer = Scorer(
        (lambda: bundle)
        if bundle is not None
        else (lambda: backbone(cfg.backbone, cfg.pretrained, str(device))),
        ds,
        device,
        precision,
    )
    made = label_sources.training_set(ds, cfg.label_request(), scorer)
    # Every image the run will read (its train images, all of test) is checked to be there and
    # readable before the backbone loads (where its labels did not need it) or anything is encoded.
    check_images(ds.train, [ds.train.refs[i] for i in made.idx])
    check_images(ds.test)
    return Run(cfg, scorer.bundle(), ds, made.idx, made.labels, device, precision, made.info)


def export_manifest(cfg: RunConfig, path, device=None):
    """Write the noise manifest of ``cfg`` (its training set and labels, ``ptnl.data.manifest``) to
    ``path``; ``cfg.replace(noise_kind="manifest", noise_rate=0.0, noise_file=path)`` trains the same run."""
    r = prepare(cfg, device)
    return write_manifest(path, r.dataset, r.train_idx, r.labels)


def context_metrics(r: Run, seconds: float, group_size: int = 1) -> dict:
    """What every run's metrics record beside its scores: its data, weights, device and time."""
    return {
        **r.label_info,
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
    """Configs with equal keys can share one batched text pass (``run_group``): equal but for the
    loss and optimiser fields and the fields their label kind lets differ."""
    d = cfg.to_dict()
    for f in (*GROUP_LOSS_FIELDS, *label_sources.KINDS[cfg.noise_kind].group_across):
        d.pop(f)
    return RunConfig.__name__ + repr(sorted(d.items()))


def groupable(cfg: RunConfig) -> bool:
    return methods.get(cfg.method).groupable and cfg.feature_mode in ("views", "center")


def train(runs: list[Run], progress=False, t0: float | None = None) -> tuple[list[dict], list[dict]]:
    """Train prepared runs of one method (one run, or a group where the method is groupable) by
    its family, and add each one's context metrics (the group's time since ``t0``, default now,
    shared out). Returns each run's metrics and the files stored beside them."""
    t0 = time.perf_counter() if t0 is None else t0
    method = methods.get(runs[0].cfg.method)
    if len(runs) > 1 and not (method.groupable and all(r.cfg.method == method.name for r in runs)):
        raise ValueError(
            f"only runs of one groupable method train together, got {[r.cfg.method for r in runs]}"
        )
    scores, files = method.family.train(method, runs, progress)
    seconds = (time.perf_counter() - t0) / len(runs)
    return [{**s, **context_metrics(r, seconds, len(runs))} for s, r in zip(scores, runs)], files


def train_configs(configs: list[RunConfig], experiment: str | None, device=None, progress=False) -> dict:
    """Prepare and train ``configs`` (one run, or one batched group) and, with ``experiment``,
    write each run whole: ``{run_id: metrics}``. Claims are the caller's (``claimed``)."""
    t0 = time.perf_counter()
    runs = [prepare(c, device) for c in configs]
    metrics, files = train(runs, progress, t0)
    out = {}
    for r, m, f in zip(runs, metrics, files):
        out[r.cfg.run_id] = m
        if experiment is not None:
            store.write_run(r.cfg, experiment, m, files=f)
    return out


# -- runs, through the store ---------------------------------------------------------------------------


def train_and_evaluate(cfg: RunConfig, device=None, progress=False) -> dict:
    """One run, without the store: its metrics dict."""
    return train_configs([cfg], None, device, progress)[cfg.run_id]


def run(config: RunConfig, experiment: str | None = None, device=None, progress=False) -> dict:
    """Train and evaluate ``config``; with ``experiment``, through the run store: a finished run
    is loaded, not redone, and a new one is trained under its claim and written whole once it has
    succeeded (a failure leaves nothing). If another live process is training it, this waits for
    that process's result (``store`` explains claims)."""
    return run_group([config], experiment, device, progress)[0]


def run_group(configs, experiment: str | None = None, device=None, progress=False) -> list[dict]:
    """Train runs of one groupable method that share backbone, dataset and shape (they may differ
    in the loss and optimiser fields and what their label kind allows; ``group_key``) in one
    batched text pass per step; a single config is one run of any method. Each run keeps its own
    context, optimizer state, data order and views, so its metrics equal ``run(config)``'s up to
    float rounding. Returns the metrics in config order. With ``experiment``, runs are claimed and
    stored as ``run`` does; runs that another process holds are left to it and waited for."""
    configs = list(configs)
    if not configs:
        return []
    todo = list({c.run_id: c for c in configs}.values())
    if len(todo) > 1:
        bad = [c.method + "/" + c.feature_mode for c in todo if not groupable(c)]
        if bad:
            raise ValueError(f"run_group trains prompt methods on cached features only, got {bad[0]}")
        if len({group_key(c) for c in todo}) > 1:
            raise ValueError(
                "run_group needs configs that differ only in the loss and optimiser fields ("
                + ", ".join(GROUP_LOSS_FIELDS)
                + ") and what their label kind lets differ (seed, noise_kind, noise_rate for relabelling)"
            )

    def train_here(cs):
        return train_configs(cs, experiment, device, progress)

    done = train_here(todo) if experiment is None else claimed(todo, experiment, train_here)
    return [done[c.run_id] if c.run_id in done else store.load_metrics(c, experiment) for c in configs]


def claimed(configs: list, experiment: str, train, wait: bool = True) -> dict[str, dict]:
    """``train(configs) -> {run_id: metrics}`` (which stores them) on those of ``configs`` not done
    yet, each under its claim: the one place runs are claimed. Runs another live process holds
    are left to it; with ``wait``, polled for until they are done, or trained here if it dies.
    Returns the metrics of the runs trained here."""
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
        if not wait:
            break
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
