"""Optimisers and gradient measurements of the training loop.

- ``HalfSGD``: SGD with CoOp's PREC=fp16 arithmetic (``precision="coop-fp16"``).
- ``per_sample_grad_norms``: every sample's gradient norm from one forward graph (Section 4.4).
- ``lr_at_epoch``: the learning-rate schedule of CoOp's recipe.
"""

from __future__ import annotations

import math

import torch

# Per-sample gradients cost (samples x parameters) memory, and the batched backward holds one
# copy of the text tower's activation gradients per sample: chunks of at most this many samples,
# and of at most this many gradient floats (tenc_ft has ~38M text-tower parameters).
PER_SAMPLE_GRAD_CHUNK = 8
PER_SAMPLE_GRAD_FLOATS = 64_000_000


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
    update is rounded to fp16, with no loss scaling and no fp32 master copy (CoOp's trainers/coop.py).

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


def lr_at_epoch(config, epoch: int) -> float:
    """Learning rate of 1-based ``epoch``: Dassl's ConstantWarmupScheduler around CosineAnnealingLR.

    Warm-up epochs run at ``warmup_lr``; after them the cosine (T_max = epochs) starts at ``lr``,
    shifted by the warm-up, and is stepped once per epoch. With the defaults: epoch 1 = 1e-5,
    epoch e >= 2 = 1e-3 * (1 + cos(pi * (e - 2) / 50)), epoch 50 ~ 7.9e-6 (CoOp issue #26's log).
    """
    if not 1 <= epoch <= config.epochs:
        raise ValueError(f"epoch must be in [1, {config.epochs}], got {epoch}")
    if epoch <= config.warmup_epochs:
        return config.warmup_lr
    t = epoch - 1 - config.warmup_epochs
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * t / config.epochs))
