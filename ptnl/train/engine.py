"""Train and evaluate one run (or a batched group of prompt-tuning runs) from a RunConfig.

Data flow of one run:
    load_dataset -> fewshot_indices(train labels, shots, seed) -> add_noise -> load_clip
    -> image features (cache: train views / centre crops; test centre crops; or online in
       ``exact`` mode) -> method module -> SGD with the recipe -> test accuracy with the class
       embeddings computed once -> metrics.

One function per method family:
- ``_run_module``: every method that follows the module protocol on image features (prompt,
  cls_tuning, full_prompt, classifier_r, classifier_r_free, classifier_c, tenc_ft):
  ``m.class_embeddings()`` then ``m(features, class_embeddings)``; it also reports how far the
  trained module fits its training labels (``training_fit``).
- ``_run_untrained``: zeroshot, random_prompt (evaluate only).
- ``_run_linear_probe``: sklearn logistic regression on features.
- ``_run_visual_ft``: the image tower is trained, so images are encoded every step.

Random streams are all derived from the run's seed by name (``features.generator``): the
module's initialisation ("init"), the batch order ("order"), the views drawn per epoch ("views")
and ``exact``-mode crops ("exact"). The few-shot draw and the noise use ptnl.data's own streams
of the same seed. So runs that differ only in noise rate or loss share images, initialisation
and batch order (paired comparisons).

Precision: fp32 on CPU; on GPU the forward passes run under bf16 autocast ("auto") while the
trained parameters, their gradients and SGD's state stay fp32. CoOp trains pure fp16, ctx
included (reference §7.1): ``precision="coop-fp16"`` reproduces that arithmetic (``HalfSGD``)
with fp16 autocast on the GPU and an fp32 forward on the CPU. Losses are always computed in fp32.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from ptnl.core import store
from ptnl.train import features as F
from ptnl.train.config import PROMPT_METHODS, RunConfig, lr_at_epoch

EVAL_BATCH = 1024
# Per-sample gradients cost (samples x parameters) memory, and the batched backward holds one
# copy of the text tower's activation gradients per sample: chunks of at most this many samples,
# and of at most this many gradient floats (tenc_ft has ~38M text-tower parameters).
PER_SAMPLE_GRAD_CHUNK = 8
PER_SAMPLE_GRAD_FLOATS = 64_000_000


# -- set-up ---------------------------------------------------------------------------------------


def autocast(device, precision):
    from ptnl.models.clip import autocast as _autocast

    return _autocast(device, precision)


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
def _load_clip(backbone: str, pretrained, device: str):
    # Frozen towers are shared by every run of a sweep in this process; methods that train a
    # tower (tenc_ft, visual_ft) copy the parts they train.
    from ptnl.models.clip import load_clip

    return load_clip(backbone, pretrained=pretrained, device=device)


@functools.lru_cache(maxsize=4)
def _load_dataset(name: str):
    from ptnl.data import load_dataset

    return load_dataset(name)


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
    from ptnl.data import check_images, fewshot_indices
    from ptnl.data.noise import add_noise

    device = resolve_device(device)
    precision = resolve_precision(cfg.precision, device)
    ds = dataset if dataset is not None else _load_dataset(cfg.dataset)
    idx = fewshot_indices(ds.train.labels, cfg.shots, cfg.seed, n_classes=ds.n_classes)
    # Every image the run will read is checked before the backbone loads or anything is encoded.
    check_images(ds.train, [ds.train.refs[i] for i in idx])
    check_images(ds.test)
    bundle = bundle if bundle is not None else _load_clip(cfg.backbone, cfg.pretrained, str(device))
    true = ds.train.labels[idx]
    scores = None
    if cfg.noise_kind == "confusion" and cfg.noise_rate > 0:
        scores = zeroshot_probs(bundle, ds, idx, device, precision)
    labels = add_noise(
        true, ds.n_classes, cfg.noise_kind, cfg.noise_rate, cfg.seed, scores, cfg.confusion_from
    )
    return Run(cfg, bundle, ds, idx, labels, device, precision)


# -- features ------------------------------------------------------------------------------------


def train_bank(r: Run, progress=False) -> torch.Tensor:
    """[V, N, E] training features: V augmented views (views mode) or V = 1 centre crop."""
    views = (
        ["center"] if r.cfg.feature_mode == "center" else [f"aug{v}" for v in range(r.cfg.views_per_image)]
    )
    return F.cached_features(
        r.bundle, r.dataset, "train", r.train_idx, views, r.device, r.precision, progress=progress
    )


def test_features(r: Run, progress=False) -> torch.Tensor:
    idx = np.arange(len(r.dataset.test))
    return F.cached_features(
        r.bundle, r.dataset, "test", idx, ["center"], r.device, r.precision, progress=progress
    )[0]


def view_schedule(n: int, n_views: int, epochs: int, g: torch.Generator) -> torch.Tensor:
    """[epochs, n] view index per epoch and sample: each sample cycles through a fresh random
    permutation of its V views every V epochs, so with V = epochs every view is used once."""
    out = torch.empty(epochs, n, dtype=torch.long)
    for start in range(0, epochs, n_views):
        perms = torch.argsort(torch.rand(n, n_views, generator=g), dim=1)  # [n, V]
        stop = min(epochs, start + n_views)
        out[start:stop] = perms[:, : stop - start].T
    return out


def epoch_batches(n: int, batch_size: int, g: torch.Generator) -> list[torch.Tensor]:
    """One epoch of a shuffled loader with Dassl's drop_last (only when n >= batch_size)."""
    perm = torch.randperm(n, generator=g)
    if n < batch_size:
        return [perm]
    return list(perm[: (n // batch_size) * batch_size].split(batch_size))


def feature_source(r: Run, progress=False, bank: torch.Tensor | None = None):
    """``fn(epoch, batch) -> features [B, E]`` on the run's device, for the config's feature mode
    (``bank``: the run's ``train_bank``, when the caller already holds it)."""
    cfg = r.cfg
    if cfg.feature_mode == "exact":
        split = r.dataset.train

        def exact(epoch, batch):
            pixels = F.exact_batch(r.bundle, split, r.train_idx[batch.numpy()], cfg.seed, epoch)
            return F.encode_images(r.bundle, pixels, r.device, r.precision)

        return exact
    bank = train_bank(r, progress) if bank is None else bank
    schedule = view_schedule(r.n_train, bank.shape[0], cfg.epochs, F.generator("views", cfg.seed))
    bank = bank.to(r.device)

    def cached(epoch, batch):
        return bank[schedule[epoch - 1, batch].to(r.device), batch.to(r.device)]

    return cached


@torch.no_grad()
def zeroshot_probs(bundle, dataset, idx, device, precision) -> torch.Tensor:
    """Zero-shot CLIP probabilities [N, C] of train images ``idx`` (the hand-crafted template on
    centre crops from the cache): the scores confusion noise reads."""
    from ptnl.models.heads import ZeroShotCLIP

    img = F.cached_features(bundle, dataset, "train", idx, ["center"], device, precision)[0].to(device)
    zs = ZeroShotCLIP(bundle, dataset.prompts())
    return zs(img).float().softmax(-1).cpu()


# -- modules -------------------------------------------------------------------------------------


def build_module(cfg: RunConfig, bundle, dataset, generator: torch.Generator):
    """The method module for ``cfg.method`` (see ptnl.models.prompts / ptnl.models.heads)."""
    names = dataset.classnames
    if cfg.method in PROMPT_METHODS or cfg.method == "random_prompt":
        from ptnl.models import prompts

        learn = {"prompt": "ctx", "random_prompt": "ctx", "cls_tuning": "cls", "full_prompt": "full"}[
            cfg.method
        ]
        return prompts.PromptCLIP(
            bundle,
            names,
            n_ctx=cfg.n_ctx,
            ctx_init=cfg.ctx_init,
            csc=cfg.csc,
            class_token_position=cfg.class_token_position,
            learn=learn,
            generator=generator,
        )
    from ptnl.models import heads as baselines

    if cfg.method == "zeroshot":
        return baselines.ZeroShotCLIP(bundle, dataset.prompts())
    if cfg.method in ("classifier_r", "classifier_r_free"):
        return baselines.LinearHead(
            bundle,
            dataset.prompts(),
            init="random",
            generator=generator,
            normalize_weight=cfg.method == "classifier_r",
        )
    if cfg.method == "classifier_c":
        return baselines.LinearHead(bundle, dataset.prompts(), init="clip", generator=generator)
    if cfg.method == "tenc_ft":
        return baselines.TextEncoderFT(bundle, dataset.prompts())
    raise ValueError(f"method {cfg.method!r} has no module")


# -- training ------------------------------------------------------------------------------------


def per_sample_grad_norms(losses: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """||d losses[i] / d params|| for every i, exactly, from one forward graph.

    Batched backward (``is_grads_batched``: a vmap over the backward pass with one-hot grad
    outputs) gives every sample's gradient through the text tower without B forward passes;
    chunked so that samples x parameters stays bounded, with a per-sample loop as fallback.
    The graph is kept for the training step's own backward.
    """
    b = losses.shape[0]
    n_params = sum(p.numel() for p in params)
    chunk = max(1, min(b, PER_SAMPLE_GRAD_CHUNK, PER_SAMPLE_GRAD_FLOATS // max(n_params, 1)))
    sq = torch.zeros(b, device=losses.device)
    eye = torch.eye(b, device=losses.device, dtype=losses.dtype)
    for s in range(0, b, chunk):
        rows = eye[s : s + chunk]
        try:
            grads = torch.autograd.grad(
                losses, params, grad_outputs=rows, is_grads_batched=True, retain_graph=True
            )
            sq[s : s + chunk] = sum(g.reshape(len(rows), -1).float().pow(2).sum(1) for g in grads)
        except RuntimeError:  # an op without a batching rule, or out of memory: one sample at a time
            for k in range(s, min(b, s + chunk)):
                grads = torch.autograd.grad(losses[k], params, retain_graph=True)
                sq[k] = sum(g.float().pow(2).sum() for g in grads)
    return sq.sqrt()


class HalfSGD:
    """SGD with CoOp's PREC=fp16 arithmetic: parameters, gradients and momentum are fp16 and every
    update is rounded to fp16, with no loss scaling and no fp32 master copy (reference §2a).

    The module keeps fp32 tensors holding exactly the fp16 values, so forward passes need no
    change; this optimizer owns the fp16 copies and runs ``torch.optim.SGD`` on them, which does
    CoOp's optimizer's operations in fp16 (on the CPU as on the GPU: each op computes in fp32
    and rounds its result). Departure: the gradient is computed in the forward's precision and
    rounded to fp16 once at the end, not at every layer of the backward pass.

    An update smaller than half an fp16 spacing of its parameter is lost: ``stalled`` records,
    per step, the share of parameter entries a step left unchanged.
    """

    def __init__(self, params, lr: float, momentum: float, weight_decay: float):
        self.params = list(params)
        with torch.no_grad():
            for p in self.params:  # born fp16, as CoOp's context vectors are
                p.copy_(p.half().float())
        self.half = [torch.nn.Parameter(p.detach().half()) for p in self.params]
        self._sgd = torch.optim.SGD(self.half, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.param_groups = self._sgd.param_groups
        self.stalled: list[float] = []

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p, h in zip(self.params, self.half):
            h.grad = None if p.grad is None else p.grad.to(torch.float16)
        before = [h.clone() for h in self.half]
        self._sgd.step()
        unchanged = 0
        for p, h, b in zip(self.params, self.half, before):
            p.copy_(h.float())
            unchanged += int((h == b).sum())
        self.stalled.append(unchanged / max(1, sum(h.numel() for h in self.half)))


def fit(runs: list[Run], modules: list, sources: list, progress=False) -> list[dict]:
    """Train each module with its run's recipe; returns per run the per-epoch ``train_loss``,
    ``lr`` and, if asked, ``grad_norm_ratio`` (mean per-sample gradient norm over noisy samples / over
    clean samples, measured on the training batches before each step).

    Several runs (``run_group``) step together: one batched text pass per step, the sum of their
    mean losses backpropagated once (their parameters are disjoint, so each gets exactly its own
    gradient), and each run's own optimizer, learning rate, data order and views.
    """
    from ptnl.models.losses import get_loss

    cfg0 = runs[0].cfg
    n = runs[0].n_train
    if any(r.n_train != n for r in runs):
        raise ValueError("runs trained together need the same number of training samples")
    device, precision = runs[0].device, runs[0].precision
    params = [list(m.trainable_parameters()) for m in modules]
    opts = [
        (HalfSGD if r.fp16_updates else torch.optim.SGD)(
            p, lr=r.cfg.lr, momentum=r.cfg.momentum, weight_decay=r.cfg.weight_decay
        )
        for r, p in zip(runs, params)
    ]
    loss_fns = [get_loss(r.cfg.loss, **r.cfg.loss_params) for r in runs]
    labels = [torch.as_tensor(r.labels.noisy, device=device) for r in runs]
    noisy = [torch.as_tensor(r.labels.is_noisy, device=device) for r in runs]
    orders = [F.generator("order", r.cfg.seed) for r in runs]
    hists = [
        {
            "train_loss": [],
            "lr": [],
            **({"grad_norm_ratio": []} if r.cfg.grad_ratio else {}),
            **({"stalled_updates": []} if r.fp16_updates else {}),
        }
        for r in runs
    ]
    epochs = range(1, cfg0.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=cfg0.method, unit="epoch", leave=False)
    for epoch in epochs:
        lrs = [lr_at_epoch(r.cfg, epoch) for r in runs]
        for opt, lr in zip(opts, lrs):
            for group in opt.param_groups:
                group["lr"] = lr
        totals = torch.zeros(len(runs), device=device)
        gsum = torch.zeros(len(runs), 2, device=device)  # [run, clean/noisy] sums of grad norms
        gcount = torch.zeros(len(runs), 2, device=device)
        steps = [epoch_batches(n, r.cfg.batch_size, g) for r, g in zip(runs, orders)]
        seen = 0
        for batches in zip(*steps):
            feats = [src(epoch, b) for src, b in zip(sources, batches)]
            with autocast(device, precision):
                embs = class_embeddings(modules)
                logits = [m(f, e) for m, f, e in zip(modules, feats, embs)]
            losses = [
                fn(z.float(), y[b.to(device)], reduction="none")
                for fn, z, y, b in zip(loss_fns, logits, labels, batches)
            ]
            for k, r in enumerate(runs):
                if r.cfg.grad_ratio:
                    norms = per_sample_grad_norms(losses[k], params[k])
                    which = noisy[k][batches[k].to(device)].long()
                    gsum[k].index_add_(0, which, norms)
                    gcount[k].index_add_(0, which, torch.ones_like(norms))
            means = torch.stack([loss.mean() for loss in losses])
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            means.sum().backward()
            for opt in opts:
                opt.step()
            totals += means.detach() * len(batches[0])
            seen += len(batches[0])
        for k, h in enumerate(hists):
            h["train_loss"].append(totals[k].item() / seen)
            h["lr"].append(lrs[k])
            if "stalled_updates" in h:  # mean over the epoch's steps
                h["stalled_updates"].append(float(np.mean(opts[k].stalled)))
                opts[k].stalled.clear()
            if "grad_norm_ratio" in h:
                clean, noisy_mean = (gsum[k] / gcount[k].clamp(min=1)).tolist()
                ok = gcount[k].min().item() > 0 and clean > 0
                h["grad_norm_ratio"].append(noisy_mean / clean if ok else float("nan"))
    return hists


def class_embeddings(modules: list) -> list:
    """Each module's class embeddings; prompt modules of a group share one text-tower pass."""
    if len(modules) == 1:
        return [modules[0].class_embeddings()]
    parts = [m.prompt_learner() for m in modules]  # (embeddings [C, L, D], eot [C]) each
    c = parts[0][0].shape[0]
    x = torch.cat([p[0] for p in parts])
    eot = torch.cat([p[1] for p in parts])
    # One TextEncoder pass over all runs' prompts; each run's [SOS][ctx] prefix is computed once.
    prefix = modules[0].prompt_learner.shared_prefix
    feats = modules[0].text_encoder(x, eot, shared_prefix=prefix, groups=len(modules))
    return list(torch.nn.functional.normalize(feats.float(), dim=-1).split(c))


@torch.no_grad()
def evaluate(module, feats: torch.Tensor, labels, device, precision) -> float:
    """Top-1 accuracy; the class embeddings are computed once for the whole test set."""
    y = torch.as_tensor(np.asarray(labels), device=device)
    with autocast(device, precision):
        emb = module.class_embeddings()
    correct = 0
    for s in range(0, len(feats), EVAL_BATCH):
        f = feats[s : s + EVAL_BATCH].to(device)
        with autocast(device, precision):
            logits = module(f, emb)
        correct += (logits.float().argmax(-1) == y[s : s + EVAL_BATCH]).sum().item()
    return correct / max(len(feats), 1)


@torch.no_grad()
def training_fit(module, r: Run, progress=False, bank: torch.Tensor | None = None) -> dict:
    """How far the trained module fits its own training labels, wrong ones and right ones apart.

    ``train_fit_noisy``: the fraction of wrongly labelled training views it predicts as their
    wrong label (1 = the noise is memorised, 0 = none of it is); ``train_fit_clean``: the same
    over correctly labelled ones. Views are the feature bank the run trained on (centre crops in
    ``exact`` mode; ``bank``: the run's ``train_bank``, when the caller already holds it). ``None``
    where a run has no sample of that kind.
    """
    if r.cfg.feature_mode == "exact":  # online crops leave no bank behind: score the centre crops
        bank = F.cached_features(r.bundle, r.dataset, "train", r.train_idx, ["center"], r.device, r.precision)
    elif bank is None:
        bank = train_bank(r, progress)
    y = torch.as_tensor(r.labels.noisy, device=r.device)
    with autocast(r.device, r.precision):
        emb = module.class_embeddings()
    hits = torch.zeros(r.n_train, device=r.device)
    for v in range(bank.shape[0]):
        with autocast(r.device, r.precision):
            logits = module(bank[v].to(r.device), emb)
        hits += (logits.float().argmax(-1) == y).float()
    hits = (hits / bank.shape[0]).cpu().numpy()
    noisy = np.asarray(r.labels.is_noisy, dtype=bool)
    return {
        "train_fit_noisy": float(hits[noisy].mean()) if noisy.any() else None,
        "train_fit_clean": float(hits[~noisy].mean()) if (~noisy).any() else None,
    }


# -- method families -----------------------------------------------------------------------------


def _run_module(r: Run, progress=False) -> dict:
    module = build_module(r.cfg, r.bundle, r.dataset, F.generator("init", r.cfg.seed)).to(r.device)
    bank = None if r.cfg.feature_mode == "exact" else train_bank(r, progress)  # read once, used twice
    [hist] = fit([r], [module], [feature_source(r, progress, bank)], progress)
    acc = evaluate(module, test_features(r, progress), r.dataset.test.labels, r.device, r.precision)
    return {"test_acc": acc, **hist, **training_fit(module, r, progress, bank)}


def _run_untrained(r: Run, progress=False) -> dict:
    module = build_module(r.cfg, r.bundle, r.dataset, F.generator("init", r.cfg.seed)).to(r.device)
    acc = evaluate(module, test_features(r, progress), r.dataset.test.labels, r.device, r.precision)
    return {"test_acc": acc}


def _run_linear_probe(r: Run, progress=False) -> dict:
    from ptnl.models import heads as baselines

    bank = train_bank(r, progress) if r.cfg.feature_mode != "exact" else None
    if bank is None:  # exact mode has no stored views: the probe sees centre crops, as CLIP's
        bank = F.cached_features(r.bundle, r.dataset, "train", r.train_idx, ["center"], r.device, r.precision)
    x = bank.reshape(-1, bank.shape[-1]).numpy()  # every view is one more sample
    y = np.tile(r.labels.noisy, bank.shape[0])
    # All views of one image stay on the same side of the held-out split that picks C; otherwise
    # the held-out score sees near-copies of training rows and favours weak regularisation.
    groups = np.tile(np.arange(r.n_train), bank.shape[0])
    probe = baselines.linear_probe(x, y, n_classes=r.dataset.n_classes, seed=r.cfg.seed, groups=groups)
    test = test_features(r, progress).numpy()
    acc = float((probe.predict(test) == np.asarray(r.dataset.test.labels)).mean())
    return {"test_acc": acc, "probe_C": probe.C}


def _run_visual_ft(r: Run, progress=False) -> dict:
    import torchvision.transforms as T

    from ptnl.models import heads as baselines

    cfg = r.cfg
    module = baselines.VisualFT(r.bundle, r.dataset.n_classes, generator=F.generator("init", cfg.seed)).to(
        r.device
    )
    split = r.dataset.train

    def pixels(epoch, batch):  # CoOp's augmentation at the fine-tuned encoder's own size and normalisation
        return F.exact_batch(module, split, r.train_idx[batch.numpy()], cfg.seed, epoch).to(r.device)

    module.train()
    [hist] = fit([r], [_PixelAdapter(module)], [pixels], progress)
    module.eval()
    if module.kind == "clip":
        preprocess = r.bundle.preprocess
    else:  # CLIP's test transform (shorter side, centre crop) with the encoder's normalisation
        size = module.image_size
        bicubic = T.InterpolationMode.BICUBIC
        preprocess = T.Compose(
            [T.Resize(size, bicubic), T.CenterCrop(size), T.ToTensor(), T.Normalize(module.mean, module.std)]
        )
    correct, test = 0, r.dataset.test
    with torch.no_grad():
        for s in range(0, len(test), 64):
            ids = list(range(s, min(len(test), s + 64)))
            x = torch.stack([preprocess(test.load_image(i)) for i in ids]).to(r.device)
            with autocast(r.device, r.precision):
                pred = module(x).float().argmax(-1).cpu().numpy()
            correct += int((pred == test.labels[ids]).sum())
    return {"test_acc": correct / max(len(test), 1), **hist, "visual_weights_id": module.weights_id}


class _PixelAdapter(torch.nn.Module):
    """visual_ft (``m(images) -> logits``) seen through the feature-module protocol."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def class_embeddings(self):
        return None

    def forward(self, x, class_embeddings=None):
        return self.m(x)

    def trainable_parameters(self):
        return self.m.trainable_parameters()


FAMILIES = {
    "prompt": _run_module,
    "cls_tuning": _run_module,
    "full_prompt": _run_module,
    "classifier_r": _run_module,
    "classifier_r_free": _run_module,
    "classifier_c": _run_module,
    "tenc_ft": _run_module,
    "zeroshot": _run_untrained,
    "random_prompt": _run_untrained,
    "linear_probe": _run_linear_probe,
    "visual_ft": _run_visual_ft,
}


def _context_metrics(r: Run, seconds: float, group_size: int = 1) -> dict:
    import ptnl

    return {
        "train_label_acc": float(1.0 - r.labels.is_noisy.mean()) if r.n_train else float("nan"),
        "n_train": r.n_train,
        "n_noisy": int(r.labels.is_noisy.sum()),
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
    }


def train_and_evaluate(cfg: RunConfig, device=None, progress=False) -> dict:
    """One run, without the store: its metrics dict."""
    t0 = time.perf_counter()
    r = prepare(cfg, device)
    out = FAMILIES[cfg.method](r, progress)
    return {**out, **_context_metrics(r, time.perf_counter() - t0)}


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
    in seed, noise, loss and optimiser settings; ``sweep.GROUP_FREE_FIELDS``) in one batched text
    pass per step. Each run keeps its own context, optimizer state, data order and views, so its
    metrics equal ``run(config)``'s up to float rounding. Returns the metrics in config order.
    With ``experiment``, runs are claimed and stored as ``run`` does; runs that another process
    holds are left to it and waited for."""
    from ptnl.train.sweep import group_key, groupable

    configs = list(configs)
    if not configs:
        return []
    bad = [c.method + "/" + c.feature_mode for c in configs if not groupable(c)]
    if bad:
        raise ValueError(f"run_group trains prompt methods on cached features only, got {bad[0]}")
    if len({group_key(c) for c in configs}) > 1:
        raise ValueError("run_group needs configs that differ only in " + ", ".join(_free_fields()))

    def train(todo):
        t0 = time.perf_counter()
        runs = [prepare(c, device) for c in todo]
        modules = [
            build_module(r.cfg, r.bundle, r.dataset, F.generator("init", r.cfg.seed)).to(r.device)
            for r in runs
        ]
        banks = [train_bank(r, progress) for r in runs]  # grouped runs are cached-feature runs
        hists = fit(runs, modules, [feature_source(r, progress, b) for r, b in zip(runs, banks)], progress)
        test = test_features(runs[0], progress)
        seconds = (time.perf_counter() - t0) / len(runs)  # the group's time, shared out
        out = {}
        for r, m, h, b in zip(runs, modules, hists, banks):
            acc = evaluate(m, test, r.dataset.test.labels, r.device, r.precision)
            out[r.cfg.run_id] = {
                "test_acc": acc,
                **h,
                **training_fit(m, r, progress, b),
                **_context_metrics(r, seconds, len(runs)),
            }
            if experiment is not None:
                store.write_run(r.cfg, experiment, out[r.cfg.run_id])
        return out

    todo = list({c.run_id: c for c in configs}.values())
    done = train(todo) if experiment is None else claimed(todo, experiment, train)
    return [done[c.run_id] if c.run_id in done else store.load_metrics(c, experiment) for c in configs]


def claimed(configs: list[RunConfig], experiment: str, train) -> dict[str, dict]:
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


def _free_fields():
    from ptnl.train.sweep import GROUP_FREE_FIELDS

    return GROUP_FREE_FIELDS
