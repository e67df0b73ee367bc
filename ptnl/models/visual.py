"""Visual fine-tuning (Figure 1): a whole image encoder plus a linear head, trained end to end.

``VisualFT`` takes images, ``forward(images) -> logits``: torchvision's ImageNet ResNet-50 for
real backbones (``load_imagenet_resnet50``), a copy of the toy CLIP's visual tower for toy
backbones. Its input normalisation is ``module.mean/std`` (ImageNet's for the ResNet-50), which
can differ from the CLIP bundle's.
"""

from __future__ import annotations

import copy
import os
import urllib.error
from pathlib import Path

import torch
from torch import nn

from ptnl.models.clip import CLIPBundle, load_weights
from ptnl.models.heads import DEFAULT_SEED, default_generator
from ptnl.models.weights import file_weights_id, looks_like_path, resolve_checkpoint

HEAD_INIT_STD = 0.01  # visual fine-tuning head init
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The classic torchvision ResNet-50 (76.1% top-1), the "ImageNet ResNet-50" of the paper's era;
# IMAGENET1K_V2 (a 2021 training recipe) can be asked for by name.
RESNET50_DEFAULT_WEIGHTS = "IMAGENET1K_V1"


def load_imagenet_resnet50(
    weights: str | os.PathLike | None = "default", device="cpu"
) -> tuple[nn.Module, str]:
    """torchvision's ResNet-50 without its fc layer (2048-d features) and an id of its weights.

    ``weights``: "default" (= IMAGENET1K_V1) or another ``ResNet50_Weights`` name, downloaded to
    torch's hub cache as torchvision does; a local state-dict file (also looked up by name in
    ``weights_dir()``); or None (random, seeded).
    """
    from torchvision.models import ResNet50_Weights, resnet50

    # Find the weights first (cheap failures before the 25M-parameter build), then build and load.
    weights = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
    state, path = None, None
    if weights is None:
        weights_id = "random"
    elif looks_like_path(weights):
        path = resolve_checkpoint(weights)
        weights_id = file_weights_id(path)  # by its tensors, as the run id names it
    else:
        name = RESNET50_DEFAULT_WEIGHTS if weights == "default" else weights
        try:
            enum = ResNet50_Weights[name]
        except KeyError:
            raise ValueError(
                f"weights={weights!r} is not a ResNet50_Weights name ({[w.name for w in ResNet50_Weights]}), "
                "'default', a path to a state-dict file, or None"
            ) from None
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        try:
            state = torch.hub.load_state_dict_from_url(enum.url, progress=False, check_hash=True)
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            raise RuntimeError(
                f"cannot load the torchvision ResNet-50 weights {name}: {os.path.basename(enum.url)} is not in "
                f"the cache folder {folder} and the download failed ({type(e).__name__}: {e}). Offline? Put "
                f"the file there, or pass a local file: notebook 02's -p resnet50_weights /path/to/resnet50.pth (RunConfig.visual_weights; a state dict)."
            ) from e
        weights_id = f"torchvision:{name}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEFAULT_SEED)
        model = resnet50(weights=None)
    if path is not None:
        load_weights(model, path, "torchvision resnet50")
    elif state is not None:
        model.load_state_dict(state)
    model.fc = nn.Identity()
    return model.to(device), weights_id


def imagenet_resnet50_on_disk() -> bool:
    """Whether visual fine-tuning's torchvision ResNet-50 weights are in torch's hub cache."""
    from torchvision.models import ResNet50_Weights

    url = ResNet50_Weights[RESNET50_DEFAULT_WEIGHTS].url
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


class VisualFT(nn.Module):
    """Visual fine-tuning: an image encoder + a linear head, both trained: ``forward(images) -> logits``.

    ``backbone``: "imagenet-rn50" (the paper's baseline: torchvision's ImageNet ResNet-50,
    ``weights`` as in ``load_imagenet_resnet50``), "clip" (a copy of the bundle's visual tower),
    or "auto": "clip" for toy backbones and random-weight bundles (tests: no download, no 25M
    parameter ResNet), "imagenet-rn50" otherwise. The head is N(0, 0.01) from ``generator``, bias 0.
    ``image_size``, ``mean``, ``std`` say how the encoder expects its images (ImageNet's
    normalisation for the ResNet-50, not CLIP's); ``weights_id`` names its starting weights.
    """

    def __init__(
        self,
        bundle: CLIPBundle,
        n_classes: int,
        generator: torch.Generator | None = None,
        backbone: str = "auto",
        weights: str | os.PathLike | None = "default",
    ):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if backbone == "auto":
            toy = bundle.name.startswith("toy-") or bundle.weights_id.startswith("toy:")
            backbone = "clip" if toy or bundle.weights_id == "random" else "imagenet-rn50"
        if backbone == "clip":
            self.backbone = copy.deepcopy(bundle.model.visual).train()
            dim, self.image_size, self.mean, self.std = (
                bundle.embed_dim,
                bundle.image_size,
                bundle.mean,
                bundle.std,
            )
            self.weights_id = f"{bundle.name}:{bundle.weights_id}"
        elif backbone == "imagenet-rn50":
            self.backbone, self.weights_id = load_imagenet_resnet50(weights, bundle.device)
            dim, self.image_size, self.mean, self.std = 2048, 224, IMAGENET_MEAN, IMAGENET_STD
        else:
            raise ValueError(f"backbone={backbone!r} must be 'auto', 'clip' or 'imagenet-rn50'")
        self.kind = backbone
        self.backbone.requires_grad_(True)
        w = torch.randn(n_classes, dim, generator=default_generator(generator)) * HEAD_INIT_STD
        self.head = nn.Linear(dim, n_classes).to(bundle.device)
        with torch.no_grad():
            self.head.weight.copy_(w)
            self.head.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images).float())

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
