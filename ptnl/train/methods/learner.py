"""The noisy-label prompt learners after the paper: what NLPrompt, JoAPR and the selectors share.

Each trains a CoOp prompt (``PromptCLIP``, context only) with the run's recipe (SGD, lr
schedule, batch size, views) and its own per-epoch data handling, in its own module
(``nlprompt``, ``joapr``, ``selectors``); the constants of their code are their ``Method.recipe``.
They own their losses and re-score the training set every epoch from cached features, so a run
keeps ``loss="ce"`` and a cached feature mode (``LearnerFamily.check``). The pieces here are the
steps of their epoch loops: set-up, the lr of an epoch, one SGD step, probabilities, the scores.
"""

from __future__ import annotations

import torch

from ptnl.models import selectors as S
from ptnl.models.clip import autocast
from ptnl.train import features as F
from ptnl.train.loop import accuracy, batched_logits, label_agreement, optimizer
from ptnl.train.methods.base import Family, init_module
from ptnl.train.methods.prompt import prompt_module
from ptnl.train.optim import lr_at_epoch


class LearnerFamily(Family):
    """A learner with its own epoch loop: ``learn(method, run, progress) -> metrics``."""

    work = "text"

    def check(self, method, cfg):
        if cfg.loss != "ce" or cfg.loss_params:
            raise ValueError(
                f"{method.name} trains with its own losses (its recipe in ptnl.train.methods): leave loss at 'ce'"
            )
        if cfg.feature_mode == "exact":
            raise ValueError(
                f"{method.name} re-scores every training sample each epoch: use feature_mode 'views' or 'center'"
            )

    def build(self, method, cfg, bundle, dataset, generator):
        return prompt_module(cfg, bundle, dataset, generator)

    def train(self, method, runs, progress=False):
        return [self.learn(method, r, progress) for r in runs], [{} for _ in runs]

    def learn(self, method, r, progress=False) -> dict:
        raise NotImplementedError


def setup(method, r, progress):
    """The run's prompt, its train feature bank, the bank's per-epoch source and its SGD."""
    module = init_module(method, r.cfg, r.bundle, r.dataset, r.device)
    bank = F.train_bank(r, progress)
    opt = optimizer(r, list(module.trainable_parameters()))
    return module, bank, F.feature_source(r, progress, bank), opt


def set_lr(opt, cfg, epoch):
    lr = lr_at_epoch(cfg, epoch)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def step(r, module, opt, feats, loss_of_logits, emb=None) -> float:
    """One SGD step on ``feats``; ``emb``: the class embeddings of this step, when the caller has
    already run the text tower (with grad) for them."""
    with autocast(r.device, r.precision):
        logits = module(feats, module.class_embeddings() if emb is None else emb)
    loss = loss_of_logits(logits.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


@torch.no_grad()
def probs(r, module, feats) -> torch.Tensor:
    return torch.cat([z.softmax(-1) for _, z in batched_logits(module, feats, r.device, r.precision)])


def finish(r, module, bank, hist, progress) -> dict:
    acc = accuracy(module, F.test_features(r, progress), r.dataset.test.labels, r.device, r.precision)
    return {"test_acc": acc, **hist, **label_agreement(module, r, progress, bank)}


def selection_metrics(sel, r, prefix="selection_") -> dict:
    return {prefix + k: v for k, v in S.detection(sel, r.labels.true, r.labels.noisy).items()}
