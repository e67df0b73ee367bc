"""Zero-shot CLIP's scores on training images: what confusion noise and pseudo-labels read.

``Scorer`` is the callback that ``ptnl.data.labels`` asks for scores through: the label kinds
that need a model's view of the images (confusion noise, pseudo-labels) get it without the data
layer knowing about models. The backbone is loaded only when a kind asks, and every image it
scores is checked to be there and readable first.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ptnl.data.disk import check_images
from ptnl.data.pseudo import PseudoLabels
from ptnl.models.heads import ZeroShotCLIP
from ptnl.train import features as F
from ptnl.train.loop import EVAL_BATCH, batched_logits


@torch.no_grad()
def zeroshot_probs(bundle, dataset, idx, device, precision) -> torch.Tensor:
    """Zero-shot CLIP probabilities [N, C] of train images ``idx`` (the hand-crafted template on
    centre crops from the cache): the scores confusion noise reads. The cached features and the
    text embeddings are float32, and so is this product (no autocast)."""
    img = F.cached_features(bundle, dataset, "train", idx, ["center"], device, precision)[0].to(device)
    zs = ZeroShotCLIP(bundle, dataset.prompts())
    return zs(img).float().softmax(-1).cpu()


@torch.no_grad()
def pseudo_label(bundle, dataset, device="cpu", precision="fp32", batch: int = EVAL_BATCH) -> PseudoLabels:
    """Zero-shot CLIP on every train image: the hand-crafted prompt, centre crops, softmax of
    ``logit_scale * cos`` (UPL's ``zero_shot_analyze``), in batches so only [N] arrays are kept."""
    device = torch.device(device)
    idx = np.arange(len(dataset.train))
    feats = F.cached_features(bundle, dataset, "train", idx, ["center"], device, precision)[0]
    zs = ZeroShotCLIP(bundle, dataset.prompts()).to(device)
    pred, conf = [], []
    for _, logits in batched_logits(zs, feats, device, precision, batch):
        c, p = logits.softmax(-1).max(-1)
        pred.append(p.cpu())
        conf.append(c.cpu())
    cat = (lambda xs, dt: torch.cat(xs).numpy().astype(dt)) if pred else (lambda xs, dt: np.zeros(0, dt))
    return PseudoLabels(cat(pred, np.int64), cat(conf, np.float32), dataset.n_classes)


class Scorer:
    """Zero-shot scores of one dataset's train images under one backbone (``ptnl.data.labels.Scores``).

    ``bundle`` is a callable that loads the backbone (once, on first use). Each call checks the
    images it reads and the test split first, so a run's missing image is reported before the
    backbone loads or anything is encoded, whichever kind asks."""

    def __init__(self, bundle: Callable, dataset, device, precision):
        self._bundle, self._loaded = bundle, None
        self.dataset, self.device, self.precision = dataset, device, precision

    def bundle(self):
        if self._loaded is None:
            self._loaded = self._bundle()
        return self._loaded

    def probs(self, idx: np.ndarray) -> torch.Tensor:
        """Probabilities [len(idx), C] of the train images ``idx``."""
        check_images(self.dataset.train, [self.dataset.train.refs[i] for i in idx])
        check_images(self.dataset.test)
        return zeroshot_probs(self.bundle(), self.dataset, idx, self.device, self.precision)

    def top1(self) -> PseudoLabels:
        """Arg-max class and its probability on every train image (UPL's pseudo-labels)."""
        for split in (self.dataset.train, self.dataset.test):  # pseudo-labelling reads all of train
            check_images(split)
        return pseudo_label(self.bundle(), self.dataset, self.device, self.precision)
