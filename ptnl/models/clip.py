"""Frozen CLIP backbones through open_clip: loading and image features.

``load_clip`` returns a ``CLIPBundle``: the open_clip model in eval mode with every weight
frozen, its test transform and tokenizer, and a ``weights_id`` that names the weights for cache
keys. Which names it accepts and which weights a ``pretrained`` value means is decided by
``ptnl.models.weights.resolve_weights`` (the paper's RN50 and ViT-B-32 always with QuickGELU,
any open_clip model, the toy backbones; an open_clip tag, a local checkpoint, or None for random
weights, seeded, so "random" is still one fixed set of weights and a valid cache key).

Weights are kept in fp32. Lower precision is applied as autocast on the GPU (``precision`` is
"bf16" or "fp16"): the frozen towers then compute in half precision while anything trainable on
top (prompts, heads) keeps fp32 master weights. This departs from CoOp, which casts CLIP *and the
context vectors* to fp16 and updates fp16 values with plain SGD. On the CPU only fp32 is allowed.
Text features are in ``ptnl.models.text``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from torch import nn

from ptnl.core.paths import weights_dir
from ptnl.models.checkpoints import is_torchscript, read_state_dict
from ptnl.models.toy import TOY_BACKBONES
from ptnl.models.weights import (
    OPENAI_CONFIGS,
    canonical_name,
    download_tag,
    openai_config,
    resolve_weights,
    tag_config,
)

FORWARD_PRECISIONS = ("fp32", "bf16", "fp16")  # what the frozen towers' forward passes run in
RANDOM_INIT_SEED = 0  # pretrained=None builds these weights, so "random" names one fixed model


@dataclass(frozen=True, eq=False)
class CLIPBundle:
    model: nn.Module  # open_clip CLIP, eval mode, requires_grad=False everywhere
    preprocess: Any  # test transform: PIL image -> normalised tensor [3, image_size, image_size]
    tokenizer: Any  # open_clip tokenizer: list[str] -> LongTensor [N, context_length]
    name: str  # the canonical name asked for ("RN50", "ViT-B-32", "toy-vit", ...)
    weights_id: str  # "openai" (or another tag), "random", "file:<sha256[:16]>", "toy:<sha256[:16]>"
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    embed_dim: int
    context_length: int
    device: str = "cpu"
    precision: str = "fp32"


# ----------------------------------------------------------------------------- loading


def check_precision(device: str | torch.device, precision: str) -> None:
    if precision not in FORWARD_PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {FORWARD_PRECISIONS}")
    if torch.device(device).type == "cpu" and precision != "fp32":
        raise ValueError(
            f"precision {precision!r} needs a GPU; on the CPU use precision='fp32' "
            "(half-precision autocast on the CPU is slow and not what the paper ran)"
        )


def autocast(device: str | torch.device, precision: str):
    """The autocast context for a precision: a no-op for fp32, bf16/fp16 autocast on the GPU."""
    check_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def _quiet_open_clip():
    # open_clip logs "No pretrained weights loaded ... initialized randomly" on every random build;
    # we load weights ourselves right after, so the message is wrong here.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def load_weights(model: nn.Module, path: str | Path, what: str) -> None:
    """Load a checkpoint file into ``model`` strictly, with an error that says what did not match."""
    state = read_state_dict(path)
    state = open_clip.convert.convert_state_dict(model, state)
    own = model.state_dict()
    if (
        "logit_scale" in state
        and "logit_scale" in own
        and state["logit_scale"].shape != own["logit_scale"].shape
    ):
        state["logit_scale"] = state["logit_scale"].reshape(own["logit_scale"].shape)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with other shapes (e.g. {k}: {tuple(state[k].shape)} in the file, "
                f"{tuple(own[k].shape)} in the model)"
            )
        raise ValueError(
            f"checkpoint {path} does not match {what}: "
            + "; ".join(parts)
            + ". Check that the file was saved from this architecture."
        )
    model.load_state_dict(state, strict=True)


def _build_random(build, *args, **kwargs):
    # Random init draws from the global RNG inside open_clip; fork it so the weights are the same
    # on every call and the caller's RNG stream is left untouched.
    with torch.random.fork_rng(devices=[]), _quiet_open_clip():
        torch.manual_seed(RANDOM_INIT_SEED)
        return build(*args, **kwargs)


def _model_from_config(cfg: dict) -> nn.Module:
    cfg = dict(cfg)
    for key in ("preprocess_cfg", "name", "description"):
        cfg.pop(key, None)
    custom_text = cfg.pop("custom_text", False)
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    return model_class(**cfg)


def _image_size(model: nn.Module) -> int:
    size = getattr(model.visual, "image_size", 224)
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"only square image sizes are supported, model has {size}")
        size = size[0]
    return int(size)


def load_clip(
    name: str,
    pretrained: str | os.PathLike | None = "default",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    cache_dir: str | None = None,
) -> CLIPBundle:
    """Load a frozen CLIP (see the module docstring for names and ``pretrained``).

    ``cache_dir`` is open_clip's download cache (None = open_clip's default, the Hugging Face
    cache). The returned model is in eval mode (open_clip 3.3 returns train mode, which would let
    RN50's BatchNorm update its statistics) and has requires_grad=False on every parameter.
    """
    name = canonical_name(name)
    device = str(torch.device(device))
    check_precision(device, precision)
    toys = dict(TOY_BACKBONES)
    preprocess_cfg: dict[str, Any] = {}
    if name.startswith("toy-") and name not in toys:
        raise ValueError(
            f"unknown toy backbone {name!r}; known toy backbones: {sorted(toys) or 'none (ptnl.models.toy is not available)'}"
        )
    if name not in toys and name not in OPENAI_CONFIGS and name not in set(open_clip.list_models()):
        raise ValueError(
            f"unknown backbone {name!r}: use 'RN50' or 'ViT-B-32' (the paper's), a toy backbone "
            f"({sorted(toys) or 'ptnl.models.toy not available'}), or any name in open_clip.list_models()"
        )
    w = resolve_weights(name, pretrained)
    weights_id = w.weights_id

    if name in toys:
        spec = toys[name]
        cfg = json.loads(Path(spec.config).read_text())
        preprocess_cfg = dict(cfg.get("preprocess_cfg", {}))
        model = _build_random(_model_from_config, cfg)
        tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
        embed_dim = int(cfg["embed_dim"])
        if w.kind == "toy":
            if not w.path.is_file():
                raise FileNotFoundError(
                    f"toy checkpoint {w.path} is missing; build it with `python -m ptnl toy pretrain`, "
                    f"or pass pretrained=None for random weights"
                )
            load_weights(model, w.path, f"toy backbone {name}")
        elif w.kind == "file":
            load_weights(model, w.path, f"toy backbone {name}")
    else:
        if w.kind == "tag" and w.tag == "default":
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ValueError(
                f"{name} has no default weights here: pass pretrained=<tag> (one of {tags}), a path "
                f"to a checkpoint file (or save it as {weights_dir() / (name + '.pt')}), or None for "
                "random weights"
            )
        config = name
        tag_cfg: dict = {}
        checkpoint: str | Path | None = None
        force_quick_gelu = False
        if w.kind == "random":
            config = openai_config(name)  # same architecture as with OpenAI's weights
        elif w.kind == "file":
            checkpoint = w.path
            # A local file for the paper's backbones holds OpenAI weights: QuickGELU, never GELU.
            # So does any OpenAI TorchScript file, whatever the architecture.
            config = openai_config(name)
            force_quick_gelu = is_torchscript(checkpoint)
        else:
            tag_cfg = tag_config(name, w.tag)
            if not tag_cfg:
                tags = sorted(
                    set(open_clip.list_pretrained_tags_by_model(name))
                    | set(open_clip.list_pretrained_tags_by_model(openai_config(name)))
                )
                raise ValueError(
                    f"pretrained={w.tag!r} is neither a tag of {name} (tags: {tags}) nor an existing "
                    "checkpoint file"
                )
            if tag_cfg.get("quick_gelu", False):
                config = openai_config(name)
                force_quick_gelu = True
            checkpoint = download_tag(name, w.tag, tag_cfg, cache_dir)
        model = _build_random(
            open_clip.create_model,
            config,
            pretrained=None,
            precision="fp32",
            device="cpu",
            force_quick_gelu=force_quick_gelu,
        )
        if checkpoint is not None:
            load_weights(model, checkpoint, f"open_clip model {config}")
        preprocess_cfg = merge_preprocess_dict(getattr(model.visual, "preprocess_cfg", {}), tag_cfg)
        tokenizer = open_clip.get_tokenizer(config)
        embed_dim = int(open_clip.get_model_config(config)["embed_dim"])

    model = model.to(device).eval().requires_grad_(False)
    if _is_conv_tower(model.visual):
        # NHWC convolutions: measured 1.25x faster RN50 image encoding on CPU (oneDNN), and the
        # layout cuDNN's tensor cores want; the same numbers up to float rounding (~1e-8).
        # Encoding itself runs inference_tower(visual); this layout is for what copies the tower
        # to train it (visual fine-tuning of a toy ResNet).
        model.visual.to(memory_format=torch.channels_last)
    image_size = _image_size(model)
    pp = PreprocessCfg(**{**merge_preprocess_dict(PreprocessCfg(), preprocess_cfg), "size": image_size})
    vocab = getattr(tokenizer, "vocab_size", None)
    model_vocab = getattr(model, "vocab_size", None)
    if vocab is not None and model_vocab is not None and vocab > model_vocab:
        raise ValueError(f"{name}: the tokenizer has {vocab} tokens but the text tower only {model_vocab}")
    return CLIPBundle(
        model=model,
        preprocess=image_transform_v2(pp, is_train=False),
        tokenizer=tokenizer,
        name=name,
        weights_id=weights_id,
        image_size=image_size,
        mean=tuple(float(m) for m in pp.mean),
        std=tuple(float(s) for s in pp.std),
        embed_dim=embed_dim,
        context_length=int(model.context_length),
        device=device,
        precision=precision,
    )


# ----------------------------------------------------------------------------- image features


def encode_images(bundle: CLIPBundle, images: torch.Tensor, precision: str | None = None) -> torch.Tensor:
    """Frozen image-tower features [B, E] (float32, not normalised) of preprocessed images [B,3,H,W]."""
    precision = precision or bundle.precision
    model = bundle.model
    if model.training:  # someone called .train(): RN50's BatchNorm must keep its running statistics
        model.eval()
    images = images.to(bundle.device, non_blocking=True)
    visual = inference_tower(model.visual)
    if images.dim() == 4 and _is_conv_tower(model.visual):
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast(bundle.device, precision):
        features = visual(images)  # what open_clip's encode_image(normalize=False) computes
    return features.float()


def _is_conv_tower(visual: nn.Module) -> bool:
    return isinstance(visual, open_clip.modified_resnet.ModifiedResNet)


_INFERENCE_TOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_tower(visual: nn.Module) -> nn.Module:
    """The frozen image tower as ``encode_images`` runs it: ``visual`` itself, or for a
    ModifiedResNet (RN50) a copy with every eval-mode BatchNorm folded into the convolution before
    it, in NHWC layout (measured 1.25x faster on CPU than BN as separate passes; the same features
    up to float rounding, ~1e-7 relative). Built once per tower; the tower is frozen, so a change
    to its weights afterwards is not seen (build a new bundle instead)."""
    if not _is_conv_tower(visual):
        return visual
    folded = _INFERENCE_TOWERS.get(visual)
    if folded is None:
        folded = _INFERENCE_TOWERS[visual] = fold_batchnorm(visual)
    return folded


def fold_batchnorm(visual: nn.Module) -> nn.Module:
    """A copy of a ModifiedResNet in eval mode with each BatchNorm2d that directly follows a Conv2d
    (in registration order, which is forward order in open_clip's ModifiedResNet) folded into it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not _is_conv_tower(visual):
        raise ValueError(f"fold_batchnorm is for open_clip's ModifiedResNet, got {type(visual).__name__}")
    out = copy.deepcopy(visual).eval()
    for parent in out.modules():
        names = list(parent._modules)
        for prev, name in zip(names, names[1:]):
            conv, bn = parent._modules[prev], parent._modules[name]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[prev] = fuse_conv_bn_eval(conv, bn)
                parent._modules[name] = nn.Identity()
    return out.to(memory_format=torch.channels_last).requires_grad_(False)
