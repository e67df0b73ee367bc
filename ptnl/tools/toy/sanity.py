"""Sanity checks of the shipped toy CLIPs, using open_clip directly (no other ptnl module).

    python -m ptnl toy sanity            # zero-shot and 16-shot linear probe, both backbones
    python -m ptnl toy sanity --backbones toy-rn --checkpoint candidate/toy-rn.safetensors

Zero-shot: each task's own hand-crafted template, cosine similarity of normalised features, as
CLIP does. Linear probe: sklearn logistic regression on 16 clean shots per class (features
normalised), the cheap check that the features carry more than the zero-shot prompt uses.
Zero-shot on CoOp's views: the same classifier on CoOp's training augmentation of the test images
(RandomResizedCrop scale (0.08, 1), bicubic, flip), how much label information the crops that
prompt tuning trains on keep for this model. Zero-shot with the camera off: the same test pictures
rendered without the downstream camera (blur, haze, stronger noise), how much of the zero-shot
shortfall is that shift; pretraining shows half of its pictures through random web cameras whose
range covers it (toy world v2.1, docs/log/toy-world-v2.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ptnl.data.toy import TOY_TASKS
from ptnl.data.toy.tasks import load_task
from ptnl.models.toy import CONFIG_DIR, TOY_BACKBONES


def load_toy_model(backbone: str, checkpoint: Path | None = None):
    """(model in eval mode, preprocess, tokenizer) with the checkpoint loaded strictly, in fp32."""
    import open_clip
    from safetensors.torch import load_file

    from ptnl.models.toy.lab import expand_state

    if backbone not in TOY_BACKBONES:
        raise ValueError(f"unknown toy backbone {backbone!r}; choose one of {tuple(TOY_BACKBONES)}")
    ckpt = Path(checkpoint) if checkpoint is not None else TOY_BACKBONES[backbone].checkpoint
    if not ckpt.exists():
        raise FileNotFoundError(
            f"{ckpt} is missing; regenerate it with `python -m ptnl toy pretrain --backbone {backbone}`"
        )
    open_clip.add_model_config(CONFIG_DIR)
    model, _, preprocess = open_clip.create_model_and_transforms(backbone, pretrained=None)
    # fp16 values are cast into the fp32 params; a lab snapshot's shrunk rows are put back first
    model.load_state_dict(expand_state(load_file(str(ckpt))), strict=True)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(backbone)


@torch.no_grad()
def image_features(model, preprocess, split, indices=None, batch_size=256) -> torch.Tensor:
    idx = range(len(split)) if indices is None else indices
    x = torch.stack([preprocess(split.load_image(i)) for i in idx])
    return torch.cat(
        [model.encode_image(x[i : i + batch_size], normalize=True) for i in range(0, len(x), batch_size)]
    )


@torch.no_grad()
def text_features(model, tokenizer, prompts) -> torch.Tensor:
    return model.encode_text(tokenizer(prompts), normalize=True)


def zero_shot_acc(
    model, preprocess, tokenizer, task: str, n_per_class: int | None = None, camera: bool = True
) -> float:
    """Test accuracy of zero-shot CLIP with the task's template (first n_per_class per class);
    ``camera=False``: on the same test pictures without the downstream camera."""
    ds = load_task(task, camera=camera)
    n = (
        len(ds.test) if n_per_class is None else n_per_class * ds.n_classes
    )  # labels cycle: prefix is balanced
    feats = image_features(model, preprocess, ds.test, range(n))
    pred = (feats @ text_features(model, tokenizer, ds.prompts()).T).argmax(1).numpy()
    return float((pred == ds.test.labels[:n]).mean())


# CoOp's train augmentation (ptnl.train.features.augment), written with torchvision's own transforms here.
COOP_RRC_SCALE = (0.08, 1.0)


@torch.no_grad()
def zero_shot_views_acc(
    model, preprocess, tokenizer, task: str, n_views: int = 4, n_per_class: int | None = None, seed: int = 0
) -> float:
    """Zero-shot test accuracy on ``n_views`` CoOp-augmented views of each test image (mean)."""
    from torchvision import transforms as T

    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    normalize = [t for t in preprocess.transforms if isinstance(t, T.Normalize)][-1]
    augment = T.Compose(
        [
            T.RandomResizedCrop(size, scale=COOP_RRC_SCALE, interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            normalize,
        ]
    )
    ds = load_task(task)
    n = len(ds.test) if n_per_class is None else n_per_class * ds.n_classes
    text = text_features(model, tokenizer, ds.prompts())
    torch.manual_seed(seed)  # torchvision's transforms draw from the global generator
    correct = 0
    for _ in range(n_views):
        x = torch.stack([augment(ds.test.load_image(i).convert("RGB")) for i in range(n)])
        pred = (model.encode_image(x, normalize=True) @ text.T).argmax(1).numpy()
        correct += int((pred == ds.test.labels[:n]).sum())
    return correct / (n * n_views)


def zero_shot_table(backbone: str, checkpoint: Path | None = None, n_per_class: int | None = None) -> dict:
    model, preprocess, tokenizer = load_toy_model(backbone, checkpoint)
    return {t: round(zero_shot_acc(model, preprocess, tokenizer, t, n_per_class), 4) for t in TOY_TASKS}


def linear_probe_acc(model, preprocess, task: str, shots: int = 16, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression

    ds = load_task(task)
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(ds.train.labels == c), shots, replace=False) for c in range(ds.n_classes)]
    )
    xtr = image_features(model, preprocess, ds.train, idx).numpy()
    xte = image_features(model, preprocess, ds.test).numpy()
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(xtr, ds.train.labels[idx])
    return float((clf.predict(xte) == ds.test.labels).mean())


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags of ``python -m ptnl toy sanity``."""
    ap.description = __doc__
    ap.add_argument("--backbones", nargs="+", default=list(TOY_BACKBONES))
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument(
        "--checkpoint",
        type=Path,
        help="judge this safetensors file instead of the shipped one (a candidate from "
        "`python -m ptnl toy pretrain --out-dir`); needs exactly one --backbones",
    )


def command(args: argparse.Namespace) -> int:
    """Print one line per (backbone, task), then every row as one JSON object."""
    if args.checkpoint is not None and len(args.backbones) != 1:
        args.usage_error(
            f"--checkpoint {args.checkpoint} needs exactly one backbone, e.g. --backbones toy-rn"
        )
    rows = {}
    for b in args.backbones:
        model, preprocess, tokenizer = load_toy_model(b, checkpoint=args.checkpoint)
        for t in TOY_TASKS:
            ds = load_task(t)
            row = {
                "classes": ds.n_classes,
                "chance": round(1 / ds.n_classes, 4),
                "zero_shot": round(zero_shot_acc(model, preprocess, tokenizer, t), 4),
            }
            row["zero_shot_coop_views"] = round(zero_shot_views_acc(model, preprocess, tokenizer, t), 4)
            row["zero_shot_camera_off"] = round(
                zero_shot_acc(model, preprocess, tokenizer, t, camera=False), 4
            )
            if not args.no_probe:
                row["linear_probe_16shot"] = round(linear_probe_acc(model, preprocess, t), 4)
            rows[f"{b} {t}"] = row
            print(f"{b:8s} {t:13s} " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    print(json.dumps(rows))
    return 0
