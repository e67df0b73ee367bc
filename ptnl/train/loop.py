"""The training loop on features: SGD with the recipe over one run or a group of runs, and the
scores of a trained module (test accuracy, how far it fits its own training labels).

A module follows the feature-module protocol of ptnl.models: ``m.class_embeddings()`` once,
then ``m(features, class_embeddings) -> logits``; ``m.trainable_parameters()`` is what SGD trains.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ptnl.models.clip import autocast
from ptnl.models.losses import get_loss
from ptnl.train import features as F
from ptnl.train.optim import HalfSGD, lr_at_epoch, per_sample_grad_norms

EVAL_BATCH = 1024


def fit(runs: list, modules: list, sources: list, progress=False) -> list[dict]:
    """Train each module with its run's recipe; returns per run the per-epoch ``train_loss``,
    ``lr`` and, if asked, ``grad_norm_ratio`` (mean per-sample gradient norm over noisy samples / over
    clean samples, measured on the training batches before each step).

    Several runs (``run_group``) step together: one batched text pass per step, the sum of their
    mean losses backpropagated once (their parameters are disjoint, so each gets exactly its own
    gradient), and each run's own optimizer, learning rate, data order and views.
    """
    cfg0 = runs[0].cfg
    n = runs[0].n_train
    if any(r.n_train != n for r in runs):
        raise ValueError("runs trained together need the same number of training samples")
    device, precision = runs[0].device, runs[0].precision
    params = [list(m.trainable_parameters()) for m in modules]
    opts = [optimizer(r, p) for r, p in zip(runs, params)]
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
        epochs = tqdm(epochs, desc=cfg0.method, unit="epoch", leave=False)
    try:  # the bar is closed on an error too, so the error starts a line of its own
        for epoch in epochs:
            lrs = [lr_at_epoch(r.cfg, epoch) for r in runs]
            for opt, lr in zip(opts, lrs):
                for group in opt.param_groups:
                    group["lr"] = lr
            totals = torch.zeros(len(runs), device=device)
            gsum = torch.zeros(len(runs), 2, device=device)  # [run, clean/noisy] sums of grad norms
            gcount = torch.zeros(len(runs), 2, device=device)
            steps = [F.epoch_batches(n, r.cfg.batch_size, g) for r, g in zip(runs, orders)]
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
    finally:
        if progress:
            epochs.close()
    return hists


def optimizer(r, params):
    """The run's SGD (CoOp's fp16 updates under ``precision="coop-fp16"``) over ``params``."""
    cls = HalfSGD if r.fp16_updates else torch.optim.SGD
    return cls(params, lr=r.cfg.lr, momentum=r.cfg.momentum, weight_decay=r.cfg.weight_decay)


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
def batched_logits(module, feats: torch.Tensor, device, precision, batch: int | None = EVAL_BATCH):
    """Yield ``(start, logits)`` over ``feats`` [N, E] in slices of ``batch`` rows (None: all at
    once): float32 logits [b, C] on ``device``, the class embeddings computed once for all."""
    with autocast(device, precision):
        emb = module.class_embeddings()
    step = batch or max(len(feats), 1)
    for s in range(0, len(feats), step):
        with autocast(device, precision):
            logits = module(feats[s : s + step].to(device), emb)
        yield s, logits.float()


def accuracy(module, feats: torch.Tensor, labels, device, precision) -> float:
    """Top-1 accuracy; the class embeddings are computed once for the whole test set."""
    y = torch.as_tensor(np.asarray(labels), device=device)
    correct = 0
    for s, logits in batched_logits(module, feats, device, precision):
        correct += (logits.argmax(-1) == y[s : s + len(logits)]).sum().item()
    return correct / max(len(feats), 1)


@torch.no_grad()
def label_agreement(module, r, progress=False, bank: torch.Tensor | None = None) -> dict:
    """How far the trained module fits its own training labels, wrong ones and right ones apart.

    ``train_fit_noisy``: the fraction of wrongly labelled training views it predicts as their
    wrong label (1 = the noise is memorised, 0 = none of it is); ``train_fit_clean``: the same
    over correctly labelled ones. Views are the feature bank the run trained on (centre crops in
    ``exact`` mode; ``bank``: the run's ``train_bank``, when the caller already holds it). ``None``
    where a run has no sample of that kind.
    """
    if r.cfg.feature_mode == "exact":  # online crops leave no bank behind: score the centre crops
        bank = F.center_bank(r)
    elif bank is None:
        bank = F.train_bank(r, progress)
    y = torch.as_tensor(r.labels.noisy, device=r.device)
    hits = torch.zeros(r.n_train, device=r.device)
    for view in bank:  # each view whole, as one matmul
        for _, logits in batched_logits(module, view, r.device, r.precision, batch=None):
            hits += (logits.argmax(-1) == y).float()
    hits = (hits / bank.shape[0]).cpu().numpy()
    noisy = np.asarray(r.labels.is_noisy, dtype=bool)
    return {
        "train_fit_noisy": float(hits[noisy].mean()) if noisy.any() else None,
        "train_fit_clean": float(hits[~noisy].mean()) if (~noisy).any() else None,
    }
