"""Fine-tuning a tower: the text encoder on the hand-crafted prompts (``tenc_ft``, Table 1's
TEnc-FT: a feature module, trained like the others) and the image tower (``visual_ft``,
Figure 1: CLIP's image tower, or an ImageNet ResNet-50 on a real backbone). Visual fine-tuning
trains the image tower, so its features cannot be cached: it sees images every step
(``feature_mode="exact"``)."""

from __future__ import annotations

import torch
import torchvision.transforms as T

from ptnl.models import heads
from ptnl.models.clip import autocast
from ptnl.models.visual import VisualFT
from ptnl.train import features as F
from ptnl.train.loop import fit
from ptnl.train.methods.base import Family, Method, ModuleFamily

VISUAL_TEST_BATCH = 64


class TextEncoderFamily(ModuleFamily):
    name = "tenc_ft"

    def build(self, method, cfg, bundle, dataset, generator):
        return heads.TextEncoderFT(bundle, dataset.prompts())


class VisualFamily(Family):
    name = "visual_ft"
    gradient_trained = True
    scales_logits = False
    feature_mode = "exact"

    def check(self, method, cfg):
        if cfg.feature_mode != "exact":
            raise ValueError(
                "visual_ft trains the image tower, so its features cannot be cached: set feature_mode='exact'"
            )

    def train(self, method, runs, progress=False):
        return [train_visual(r, progress) for r in runs], [{} for _ in runs]


def train_visual(r, progress=False) -> dict:
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


TEXT = TextEncoderFamily()
VISUAL = VisualFamily()
METHODS = (
    Method(
        "tenc_ft",
        "TEnc-FT",
        TEXT,
        "fine-tune the text encoder on the hand-crafted prompts",
        color="#949494",
    ),
    Method(
        "visual_ft",
        "visual fine-tuning",
        VISUAL,
        "fine-tune the image tower (Figure 1)",
        color="#d55e00",
    ),
)
