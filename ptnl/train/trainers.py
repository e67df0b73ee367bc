"""One function per method family: train a prepared run (or a group of them) and score it.

The family of a method is its registry entry's ``trainer`` (``ptnl.train.methods``):
- ``module``: a method module on image features (prompt, cls_tuning, full_prompt, classifier_r,
  classifier_r_free, classifier_c, tenc_ft), ``build_module`` -> ``loop.fit`` -> test accuracy
  and how far it fits its training labels. Groups of prompt runs train together (``train_modules``).
- ``untrained``: zeroshot, random_prompt (evaluate only).
- ``linear_probe``: sklearn logistic regression on features.
- ``visual_ft``: the image tower is trained, so images are encoded every step.

A run ``r`` is a ``ptnl.train.engine.Run``. Every random stream comes from the run's seed by
name (``features.generator``): the module's initialisation ("init"), the batch order ("order"),
the views drawn per epoch ("views") and ``exact``-mode crops ("exact").
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms as T

from ptnl.models import heads
from ptnl.models import prompts as P
from ptnl.models.clip import autocast
from ptnl.models.visual import VisualFT
from ptnl.train import features as F
from ptnl.train import methods
from ptnl.train.loop import evaluate, fit, training_fit

VISUAL_TEST_BATCH = 64


def build_module(cfg, bundle, dataset, generator: torch.Generator):
    """The method module of ``cfg.method``, as its registry entry declares it, its logits at
    ``cfg.temperature`` when set (else the checkpoint's)."""
    module = _build_module(cfg, bundle, dataset, generator)
    if cfg.temperature is not None:
        module.logit_scale.fill_(cfg.temperature)
    return module


def _build_module(cfg, bundle, dataset, generator: torch.Generator):
    m = methods.get(cfg.method)
    if m.module == "prompt":
        return P.PromptCLIP(
            bundle,
            dataset.classnames,
            n_ctx=cfg.n_ctx,
            ctx_init=cfg.ctx_init,
            csc=cfg.csc,
            class_token_position=cfg.class_token_position,
            generator=generator,
            **m.options,
        )
    if m.module == "zeroshot":
        return heads.ZeroShotCLIP(bundle, dataset.prompts())
    if m.module == "linear_head":
        return heads.LinearHead(bundle, dataset.prompts(), generator=generator, **m.options)
    if m.module == "tenc_ft":
        return heads.TextEncoderFT(bundle, dataset.prompts())
    raise ValueError(f"method {cfg.method!r} has no module")


def init_module(cfg, bundle, dataset, device):
    """The method module of a run, initialised from its seed's "init" stream, on ``device``."""
    return build_module(cfg, bundle, dataset, F.generator("init", cfg.seed)).to(device)


def train_modules(runs: list, progress=False) -> tuple[list[dict], list]:
    """Train the runs' modules together (one run, or a group through one batched text pass) and
    score each: ``test_acc``, the per-epoch history and ``training_fit``. Returns the metrics and
    the trained modules, in run order."""
    modules = [init_module(r.cfg, r.bundle, r.dataset, r.device) for r in runs]
    # Read once, used twice (training and training_fit); exact mode has no bank.
    banks = [None if r.cfg.feature_mode == "exact" else F.train_bank(r, progress) for r in runs]
    hists = fit(runs, modules, [F.feature_source(r, progress, b) for r, b in zip(runs, banks)], progress)
    test = F.test_features(runs[0], progress)  # one test set for the group
    out = []
    for r, m, h, b in zip(runs, modules, hists, banks):
        acc = evaluate(m, test, r.dataset.test.labels, r.device, r.precision)
        out.append({"test_acc": acc, **h, **training_fit(m, r, progress, b)})
    return out, modules


def train_module(r, progress=False) -> dict:
    [metrics], _ = train_modules([r], progress)
    return metrics


def train_untrained(r, progress=False) -> dict:
    module = init_module(r.cfg, r.bundle, r.dataset, r.device)
    acc = evaluate(module, F.test_features(r, progress), r.dataset.test.labels, r.device, r.precision)
    return {"test_acc": acc}


def train_linear_probe(r, progress=False) -> dict:
    # exact mode has no stored views: the probe sees centre crops, as CLIP's
    bank = F.train_bank(r, progress) if r.cfg.feature_mode != "exact" else F.center_bank(r)
    x = bank.reshape(-1, bank.shape[-1]).numpy()  # every view is one more sample
    y = np.tile(r.labels.noisy, bank.shape[0])
    # All views of one image stay on the same side of the held-out split that picks C; otherwise
    # the held-out score sees near-copies of training rows and favours weak regularisation.
    groups = np.tile(np.arange(r.n_train), bank.shape[0])
    probe = heads.linear_probe(x, y, n_classes=r.dataset.n_classes, seed=r.cfg.seed, groups=groups)
    test = F.test_features(r, progress).numpy()
    acc = float((probe.predict(test) == np.asarray(r.dataset.test.labels)).mean())
    return {"test_acc": acc, "probe_C": probe.C}


def train_visual_ft(r, progress=False) -> dict:
    cfg = r.cfg
    weights = cfg.visual_weights or "default"  # the ImageNet ResNet-50's file, where it trains one
    module = VisualFT(
        r.bundle, r.dataset.n_classes, generator=F.generator("init", cfg.seed), weights=weights
    ).to(r.device)
    split = r.dataset.train

    def pixels(epoch, batch):  # CoOp's augmentation at the fine-tuned encoder's own size and normalisation
        return F.exact_batch(module, split, r.train_idx[batch.numpy()], cfg.seed, epoch).to(r.device)

    module.train()
    [hist] = fit([r], [PixelAdapter(module)], [pixels], progress)
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
        for s in range(0, len(test), VISUAL_TEST_BATCH):
            ids = list(range(s, min(len(test), s + VISUAL_TEST_BATCH)))
            x = torch.stack([preprocess(test.load_image(i)) for i in ids]).to(r.device)
            with autocast(r.device, r.precision):
                pred = module(x).float().argmax(-1).cpu().numpy()
            correct += int((pred == test.labels[ids]).sum())
    return {"test_acc": correct / max(len(test), 1), **hist, "visual_weights_id": module.weights_id}


class PixelAdapter(torch.nn.Module):
    """visual_ft (``m(images) -> logits``) seen through the feature-module protocol of ``loop.fit``."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def class_embeddings(self):
        return None

    def forward(self, x, class_embeddings=None):
        return self.m(x)

    def trainable_parameters(self):
        return self.m.trainable_parameters()


TRAINERS = {
    "module": train_module,
    "untrained": train_untrained,
    "linear_probe": train_linear_probe,
    "visual_ft": train_visual_ft,
}
