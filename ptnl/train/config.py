"""One run = one ``RunConfig``: validated when built, hashed into the run id.

Defaults are the paper's recipe (CoOp's, as PTNL runs it): SGD lr 0.002, momentum 0.9,
weight decay 5e-4, batch 32, 50 epochs, one warm-up epoch at a constant 1e-5, cosine decay
stepped per epoch, 16 shots, 16 context tokens shared by all classes, class token at the end.

A run is its inputs. The run id hashes the canonical JSON of every field except the two that
*name* a file (``NAMED_BY_CONTENT``: ``pretrained``, ``noise_file``), and in their place what the
files hold: the weights' tensors, the manifest's bytes; then the data's identity, the split and
the content of every image (``ptnl.data.identity``). Two configs share an id exactly when they
describe the same run on the same inputs, whatever the paths that name them. ``config.json``
records every field as given (``to_dict``), the paths too.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ptnl.core.checks import choice, is_number
from ptnl.data import identity as data_identity
from ptnl.data import labels as label_sources
from ptnl.data.manifest import manifest_digest
from ptnl.data.specs import dataset_names
from ptnl.models import losses
from ptnl.models.clip import FORWARD_PRECISIONS
from ptnl.models.weights import local_weights_identity, weights_identity
from ptnl.train import methods

LOSSES = tuple(losses.LOSSES)
# Every way of making a run's training set and labels (ptnl.data.labels): relabelling a K-shot
# draw, the other code bases' protocols, a noise manifest file, zero-shot pseudo-labels.
NOISE_KINDS = tuple(label_sources.KINDS)
FEATURE_MODES = ("exact", "views", "center")
CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
# "coop-fp16" is CoOp's PREC=fp16 arithmetic (its trainers/coop.py): every trained parameter and
# SGD's momentum live in fp16 and each update is rounded to fp16 (forward: fp16 autocast on the
# GPU, fp32 on the CPU). The others keep fp32 master weights and only change the forward pass.
PRECISIONS = ("auto", *FORWARD_PRECISIONS, "coop-fp16")


@dataclass(frozen=True)
class RunConfig:
    dataset: str
    backbone: str = "RN50"
    pretrained: str | None = "default"  # passed to load_clip: "default", "openai", a file, None = random
    method: str = "prompt"
    loss: str = "ce"
    loss_params: dict = field(default_factory=dict)  # e.g. {"q": 0.5} for gce
    noise_kind: str = "symmetric"
    confusion_from: str = "matrix"  # noise_kind="confusion" only: "matrix" or "sample"
    noise_rate: float = 0.0
    shots: int = 16
    n_ctx: int = 16  # with ctx_init: set to its number of words, as CoOp (len(ctx_init.split(" ")))
    ctx_init: str | None = None  # None = random N(0, 0.02) context, as PTNL; else e.g. "a photo of a"
    csc: bool = False
    class_token_position: str = "end"
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    seed: int = 1
    feature_mode: str = "views"
    n_views: int | None = None  # views mode: augmented views per image; None = one per epoch
    precision: str = "auto"  # "auto": fp32 on CPU, bf16 autocast on GPU (master weights stay fp32);
    # "coop-fp16": CoOp's pure-fp16 parameters and SGD updates
    grad_ratio: bool = False  # also record the per-epoch noisy/clean gradient-norm ratio (Sec. 4.4)
    # The softmax temperature T of the head's logits T * cos (prompt tuning, Classifier-R/-C,
    # zero-shot, TEnc-FT); None: the checkpoint's own exp(logit_scale), as CoOp. The toy lab's factor.
    temperature: float | None = None
    # noise_kind="manifest": the CSV its training set and labels are read from (ptnl.data.manifest);
    # the run id hashes the file's content, so an edited manifest is a new run.
    noise_file: str | None = None
    # method="visual_ft" on a real backbone: the ImageNet ResNet-50's state-dict file; None =
    # torchvision's IMAGENET1K_V1 in torch's cache. Hashed by its tensors, not its path.
    visual_weights: str | None = None
    # noise_kind="pseudo_topk" / "pseudo_random" (UPL's members): classes predicted fewer than K
    # times ("all": take them all, "replace": top up to K) and the selection's seed (None = seed;
    # an ensemble's members share one selection and differ in seed).
    fill: str = "all"
    selection_seed: int | None = None

    def __post_init__(self):
        # Coerce the loose types YAML and JSON give us (0 for 0.0) so equal runs hash equally.
        for name, typ in _FIELD_TYPES.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            object.__setattr__(self, name, _coerce(name, value, typ))
        object.__setattr__(
            self, "loss_params", {str(k): self.loss_params[k] for k in sorted(self.loss_params)}
        )
        if self.ctx_init is not None:  # CoOp ignores N_CTX under CTX_INIT: record what is trained
            object.__setattr__(self, "n_ctx", len(self.ctx_init.replace("_", " ").strip().split(" ")))
        _validate(self)

    # -- identity -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v) for f in _FIELDS}

    def identity_dict(self) -> dict[str, Any]:
        """``to_dict`` less the fields that name a file (``NAMED_BY_CONTENT``): what the id hashes
        beside the files' content."""
        return identity_part(self.to_dict())

    def canonical_json(self) -> str:
        return json.dumps(self.identity_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @property
    def run_id(self) -> str:
        """Stable 16-hex-digit hash of the canonical JSON, of the weights ``pretrained`` resolves
        to, and of the data ``dataset`` resolves to (``run_identity``): the run's folder name."""
        extra = () if self.noise_file is None else (f"manifest:{manifest_digest(self.noise_file)}",)
        if self.visual_weights is not None:
            extra += (f"visual:{local_weights_identity(self.visual_weights)}",)
        return run_identity(self.canonical_json(), self.backbone, self.pretrained, self.dataset, *extra)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        unknown = [k for k in d if k not in _FIELD_NAMES]
        if unknown:
            k = unknown[0]
            close = difflib.get_close_matches(k, _FIELD_NAMES, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown RunConfig key {k!r}{hint} (valid keys: {', '.join(_FIELD_NAMES)})")
        if "dataset" not in d:
            raise ValueError(
                "RunConfig needs a 'dataset' (e.g. 'OxfordPets' or a toy task like 'toy-shapes')"
            )
        return cls(**d)

    def replace(self, **changes) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **changes})

    # -- resolved values --------------------------------------------------------------------------
    def label_request(self) -> label_sources.LabelRequest:
        """What ``ptnl.data.labels`` makes this run's training set and labels from."""
        return label_sources.LabelRequest(
            self.noise_kind,
            self.shots,
            self.noise_rate,
            self.seed,
            self.confusion_from,
            self.noise_file,
            self.fill,
            self.selection_seed,
        )

    @property
    def views_per_image(self) -> int:
        return self.epochs if self.n_views is None else self.n_views

    @property
    def n_noisy_per_class(self) -> float:
        return self.noise_rate * self.shots


_FIELDS = dataclasses.fields(RunConfig)
_FIELD_NAMES = tuple(f.name for f in _FIELDS)
_OPTIONAL = {
    "pretrained",
    "ctx_init",
    "n_views",
    "temperature",
    "noise_file",
    "visual_weights",
    "selection_seed",
}
# Fields that name a file: the run id hashes what the file holds (``run_identity``), never the
# name, so a weights file converted to .safetensors, or moved, keeps its runs.
NAMED_BY_CONTENT = ("pretrained", "noise_file", "visual_weights")


def identity_part(record: dict[str, Any]) -> dict[str, Any]:
    """A config record (``to_dict``, a stored ``config.json``) less the fields named by content."""
    return {k: v for k, v in record.items() if k not in NAMED_BY_CONTENT}


_FIELD_TYPES = {
    "dataset": str,
    "backbone": str,
    "pretrained": str,
    "method": str,
    "loss": str,
    "loss_params": dict,
    "noise_kind": str,
    "confusion_from": str,
    "noise_rate": float,
    "shots": int,
    "n_ctx": int,
    "ctx_init": str,
    "csc": bool,
    "class_token_position": str,
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "momentum": float,
    "weight_decay": float,
    "warmup_epochs": int,
    "warmup_lr": float,
    "seed": int,
    "feature_mode": str,
    "n_views": int,
    "precision": str,
    "grad_ratio": bool,
    "temperature": float,
    "noise_file": str,
    "visual_weights": str,
    "fill": str,
    "selection_seed": int,
}
assert set(_FIELD_TYPES) == set(_FIELD_NAMES)


def _coerce(name, value, typ):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ValueError(f"RunConfig.{name} must be {typ.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _validate(c: RunConfig) -> None:
    choice("method", c.method, methods.RUN_METHODS)
    choice("loss", c.loss, LOSSES)
    choice("noise_kind", c.noise_kind, NOISE_KINDS)
    label_sources.check(c.label_request())  # the label kind's own settings
    choice("feature_mode", c.feature_mode, FEATURE_MODES)
    choice("class_token_position", c.class_token_position, CLASS_TOKEN_POSITIONS)
    choice("precision", c.precision, PRECISIONS)
    if not c.dataset.startswith("toy-"):
        # the datasets' specs (ptnl.data.specs); "toy-*" names belong to the toy world (ptnl.data.toy)
        choice("dataset", c.dataset, (*dataset_names(), "toy-<task>"))
    if not 0.0 <= c.noise_rate < 1.0 or math.isnan(c.noise_rate):
        raise ValueError(f"noise_rate must be in [0, 1), got {c.noise_rate} (0.5 = half the labels flipped)")
    for name in ("shots", "epochs", "batch_size"):
        if getattr(c, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
    if c.ctx_init is not None and not c.ctx_init.strip():
        raise ValueError("ctx_init must be words like 'a photo of a', or None for a random context")
    if c.n_ctx < 0:
        raise ValueError(f"n_ctx must be >= 0 (0 = class name only, the paper's Ctx-0), got {c.n_ctx}")
    method = methods.get(c.method)
    method.family.check(method, c)  # the method's own rules (its family's module in ptnl.train.methods)
    if c.n_views is not None and c.n_views < 1:
        raise ValueError(f"n_views must be >= 1 or None (one view per epoch), got {c.n_views}")
    if not 0 <= c.warmup_epochs <= c.epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs={c.epochs}], got {c.warmup_epochs}")
    for name in ("lr", "warmup_lr", "weight_decay"):
        v = getattr(c, name)
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    if not 0.0 <= c.momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {c.momentum}")
    if c.grad_ratio and not method.gradient_trained:
        raise ValueError(
            f"grad_ratio needs a method trained by gradient descent, not {c.method!r} "
            "(Section 4.4's linear baseline is classifier_r: a linear head trained with SGD)"
        )
    if c.temperature is not None:
        if not (math.isfinite(c.temperature) and c.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0 (CLIP's is 100), got {c.temperature}")
        if not method.family.scales_logits:
            raise ValueError(
                f"temperature scales the cosine logits of CLIP-style heads; {c.method!r} has its own "
                "head and ignores it: leave temperature at None"
            )
    if c.visual_weights is not None and c.method != "visual_ft":
        raise ValueError(
            f"visual_weights is the ImageNet ResNet-50 file of method='visual_ft', not of {c.method!r}: "
            "leave it at None"
        )
    for k, v in c.loss_params.items():
        if not is_number(v):
            raise ValueError(f"loss_params[{k!r}] must be a number, got {v!r}")
    try:
        json.dumps(c.to_dict(), allow_nan=False)
    except ValueError as e:
        raise ValueError(f"RunConfig values must be finite JSON numbers: {e}") from None


def run_identity(canonical_json: str, backbone: str, pretrained, dataset: str, *extra: str) -> str:
    """A run id: the config's canonical JSON plus what its names resolve to on this machine.

    - the weights (``ptnl.models.weights.weights_identity``): a shipped toy checkpoint's sha256, a local
      file's tensors, or the tag, so a regenerated checkpoint gets fresh runs, while a file
      converted from .pt to .safetensors keeps its results;
    - the data (``ptnl.data.identity``): split source, class names, template and the ordered
      images and labels of every split, so adding CoOp's split files over a torchvision download
      (or editing a split) never reuses a result trained on the old split;
    - ``extra``: what else the numbers read from a file (a noise manifest's content hash).
    """
    key = "\n".join([canonical_json, weights_identity(backbone, pretrained), data_identity(dataset), *extra])
    return hashlib.sha256(key.encode()).hexdigest()[:16]
