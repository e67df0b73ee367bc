"""The baselines prompt tuning is compared with (Figure 1, Table 1, Figure 2, Table 4).

Feature-based modules follow the method-module protocol of ``ptnl.models.prompts``
(``class_embeddings()``, ``forward(image_features, class_embeddings=None)``,
``trainable_parameters()``).

- **Zero-shot CLIP** (``ZeroShotCLIP``): the hand-crafted prompts' text embeddings, fixed.
- **Classifier-R / Classifier-C** (``LinearHead(init="random" | "clip")``, Section 4.3,
  Figure 3a/b). Head form: ``logits = exp(logit_scale) * cos(image_feature, w_c)``, CLIP's
  frozen logit scale, no bias, class vectors normalised in the forward pass. Why: this is the
  classifier prompt tuning ends in (unit class embeddings at CLIP's temperature), so Classifier-C
  starts *exactly* at zero-shot CLIP, and the R / C / prompt-tuning comparison changes only where
  the class embeddings come from (free vectors vs the text encoder), which is the paper's
  question. Classifier-R has the same form with N(0, 1) rows scaled to unit norm, so both start
  with the same weight norm and see the same effective learning rate. ``normalize_weight=False``
  gives the unconstrained variant (free-norm rows, same init).
- **TEnc-FT** (``TextEncoderFT``, Figure 3c): the hand-crafted prompt is fixed and the text
  encoder's weights (transformer, positional embedding, final LayerNorm, projection) are
  fine-tuned. The token-embedding table stays frozen: the prompt's tokens are its input, not its
  weights, and training them is what CLS-/Full-Prompt-Tuning test. It trains a copy: the bundle
  stays frozen for every other method.
- **Linear probe** (``linear_probe``, Figure 1/2, Table 4): CLIP's protocol, sklearn's L-BFGS
  ``LogisticRegression`` (L2, max_iter=1000) with C chosen on a held-out part of the few-shot set
  (its labels are as noisy as the rest: no clean data is assumed). Features are L2-normalised
  first so that one C grid fits every backbone. Deterministic for a seed. (A linear probe trained
  with GCE, Figure 2, is ``LinearHead(init="random")`` trained with that loss.)
- **Visual fine-tuning** (Figure 1) takes images rather than features: ``ptnl.models.visual``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ptnl.models.clip import CLIPBundle
from ptnl.models.text import TextEncoder, check_prompt_lengths, encode_text

C_GRID = tuple(float(c) for c in 10.0 ** np.arange(-6, 7))  # CLIP's sweep range, one value per decade
HOLDOUT = 0.25  # fraction of each class's few-shot samples used to choose C
MAX_ITER = 1000  # CLIP's linear-probe setting
DEFAULT_SEED = 0  # generator=None draws from this seed (never the global RNG)


def default_generator(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a fresh one seeded with ``DEFAULT_SEED``: a head's init never reads the global RNG."""
    return generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)


def _frozen_scale(bundle: CLIPBundle) -> torch.Tensor:
    return bundle.model.logit_scale.detach().float().exp().reshape(()).clone()


# ----------------------------------------------------------------------------- zero-shot, Classifier-R / -C


def _cosine_logits(scale: torch.Tensor, image_features: torch.Tensor, class_embeddings: torch.Tensor):
    return scale * F.normalize(image_features.float(), dim=-1) @ class_embeddings.float().t()


def _prompt_list(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str) or not len(prompts):
        raise ValueError("prompts must be a non-empty list of strings, one per class")
    return list(prompts)


class ZeroShotCLIP(nn.Module):
    """Zero-shot CLIP as a method module: the hand-crafted prompts' unit text embeddings, fixed."""

    def __init__(self, bundle: CLIPBundle, prompts: Sequence[str]):
        super().__init__()
        w = F.normalize(encode_text(bundle, _prompt_list(prompts)), dim=-1)
        self.register_buffer("weight", w)
        self.register_buffer("logit_scale", _frozen_scale(bundle), persistent=False)

    def class_embeddings(self) -> torch.Tensor:
        return self.weight

    def forward(
        self, image_features: torch.Tensor, class_embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        w = self.weight if class_embeddings is None else class_embeddings
        return _cosine_logits(self.logit_scale, image_features, w)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return []


class LinearHead(nn.Module):
    """Classifier-R (``init="random"``) and Classifier-C (``init="clip"``): a cosine classifier on
    frozen image features at CLIP's frozen temperature (the why is in the module docstring).

    ``prompts`` are the hand-crafted prompts, one per class: Classifier-C starts from their text
    embeddings (so its logits start equal to zero-shot CLIP's); Classifier-R only counts them.
    """

    def __init__(
        self,
        bundle: CLIPBundle,
        prompts: Sequence[str],
        init: str = "random",
        generator: torch.Generator | None = None,
        normalize_weight: bool = True,
    ):
        super().__init__()
        prompts = _prompt_list(prompts)
        if init == "clip":
            w = encode_text(bundle, prompts)
        elif init == "random":
            w = torch.randn(len(prompts), bundle.embed_dim, generator=default_generator(generator)).to(
                bundle.device
            )
        else:
            raise ValueError(f"init={init!r} must be 'random' (Classifier-R) or 'clip' (Classifier-C)")
        self.init = init
        self.weight = nn.Parameter(F.normalize(w.float(), dim=-1))
        self.register_buffer("logit_scale", _frozen_scale(bundle), persistent=False)
        self.normalize_weight = normalize_weight

    def class_embeddings(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=-1) if self.normalize_weight else self.weight

    def forward(
        self, image_features: torch.Tensor, class_embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        w = self.class_embeddings() if class_embeddings is None else class_embeddings
        return _cosine_logits(self.logit_scale, image_features, w)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [self.weight]


# ----------------------------------------------------------------------------- TEnc-FT


class TextEncoderFT(nn.Module):
    """TEnc-FT: the hand-crafted prompts fixed, a copy of the text encoder trainable (module doc)."""

    def __init__(self, bundle: CLIPBundle, prompts: Sequence[str]):
        super().__init__()
        prompts = _prompt_list(prompts)
        check_prompt_lengths(bundle, prompts)
        tokens = bundle.tokenizer(prompts).to(bundle.device)
        eot = tokens.argmax(dim=-1)  # CLIP's EOT has the largest id
        with torch.no_grad():
            embeds = bundle.model.token_embedding(tokens[:, : int(eot.max()) + 1]).float()
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        self.register_buffer("eot", eot, persistent=False)
        self.text_encoder = copy.deepcopy(TextEncoder(bundle.model)).requires_grad_(True)
        self.register_buffer("logit_scale", _frozen_scale(bundle), persistent=False)

    def class_embeddings(self) -> torch.Tensor:
        return F.normalize(self.text_encoder(self.prompt_embeds, self.eot).float(), dim=-1)

    def forward(
        self, image_features: torch.Tensor, class_embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        w = (
            self.class_embeddings()
            if class_embeddings is None
            else F.normalize(class_embeddings.float(), dim=-1)
        )
        return _cosine_logits(self.logit_scale, image_features, w)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


# ----------------------------------------------------------------------------- linear probe


class LinearProbeHead(nn.Module):
    """A fitted linear probe as a method module (nothing to train): ``normalize(f) @ W.T + b``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, normalize: bool = True, device="cpu"):
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32, device=device))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32, device=device))
        self.normalize = normalize

    def class_embeddings(self) -> torch.Tensor:
        return self.weight

    def forward(
        self, image_features: torch.Tensor, class_embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        w = self.weight if class_embeddings is None else class_embeddings
        f = image_features.float().to(w.device)
        f = F.normalize(f, dim=-1) if self.normalize else f
        return f @ w.t() + self.bias

    def trainable_parameters(self) -> list[nn.Parameter]:
        return []


@dataclass(frozen=True, eq=False)
class LinearProbe:
    weight: np.ndarray  # [n_classes, E]; classes absent from the training labels have 0 rows, -inf bias
    bias: np.ndarray  # [n_classes]
    C: float  # the chosen inverse L2 strength
    normalize: bool
    val_accuracy: dict[float, float] = field(default_factory=dict)  # C -> held-out accuracy
    val_loss: dict[float, float] = field(default_factory=dict)  # C -> held-out cross-entropy

    def logits(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Logits [N, n_classes] (float32, CPU) of image features [N, E]."""
        return self.as_module()(torch.as_tensor(_as_numpy(features)))

    def predict(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """Predicted class indices [N] (int64)."""
        return self.logits(features).argmax(-1).numpy()

    def as_module(self, device="cpu") -> LinearProbeHead:
        return LinearProbeHead(self.weight, self.bias, self.normalize, device)


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def holdout_split(
    labels: np.ndarray, holdout: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class split of sample indices into (train, held-out).

    Per class, round(holdout * n) of its n groups are held out: at least one where it has two or
    more, and never all. A group is one image (``groups[i]``: its id; several augmented views
    of an image must not sit on both sides, or the held-out score rewards memorising); without
    ``groups`` every sample is its own group.
    """
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"groups must be one id per sample: {groups.shape} vs labels {labels.shape}")
    rng = np.random.default_rng(seed)
    val_groups = []
    for c in np.unique(labels):
        g = rng.permutation(np.unique(groups[labels == c]))
        n_val = min(max(int(round(holdout * len(g))), 1), len(g) - 1) if len(g) >= 2 else 0
        val_groups.append(g[:n_val])
    is_val = np.isin(groups, np.concatenate(val_groups))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _fit(x: np.ndarray, y: np.ndarray, C: float, max_iter: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter)
    with warnings.catch_warnings():
        # Weakly regularised fits of separable few-shot data stop at max_iter by design (CLIP's setting).
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def _dense(clf, n_classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    classes = clf.classes_.astype(np.int64)
    w = np.zeros((n_classes, dim), dtype=np.float32)
    b = np.full(n_classes, -np.inf, dtype=np.float32)
    if len(classes) == 2:  # sklearn keeps one row for binary problems: logit of classes[1] vs classes[0]
        w[classes[0]], b[classes[0]] = 0.0, 0.0
        w[classes[1]], b[classes[1]] = clf.coef_[0], clf.intercept_[0]
    else:
        w[classes], b[classes] = clf.coef_, clf.intercept_
    return w, b


def linear_probe(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    n_classes: int | None = None,
    c_grid: Sequence[float] = C_GRID,
    holdout: float = HOLDOUT,
    seed: int = 0,
    max_iter: int = MAX_ITER,
    normalize: bool = True,
    groups: np.ndarray | None = None,
) -> LinearProbe:
    """CLIP's linear probe: pick C on a held-out part, refit on everything with that C.

    C maximises held-out accuracy; ties (common on a 4-per-class held-out set) go to the lower
    held-out cross-entropy, then to the smaller C (stronger regularisation). Same data + seed ->
    same split, same C, same weights. ``groups`` (one image id per row) keeps all augmented views
    of an image on the same side of the split.
    """
    x = _as_numpy(features).astype(np.float64)
    y = _as_numpy(labels).astype(np.int64)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"features must be [N, E] and labels [N], got {x.shape} and {y.shape}")
    if y.min(initial=0) < 0:
        raise ValueError("labels must be >= 0")
    n_classes = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if y.max() >= n_classes:
        raise ValueError(f"label {y.max()} is out of range for n_classes={n_classes}")
    if len(np.unique(y)) < 2:
        raise ValueError("a linear probe needs samples of at least two classes")
    grid = sorted({float(c) for c in c_grid})
    if not grid or min(grid) <= 0:
        raise ValueError(f"c_grid must hold positive values, got {list(c_grid)}")
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    acc, loss = {}, {}
    if len(grid) > 1:
        if not 0 < holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {holdout}")
        tr, va = holdout_split(y, holdout, seed, groups)
        if len(va) == 0 or len(np.unique(y[tr])) < 2:
            raise ValueError(
                "not enough samples to hold some out for choosing C (a class needs >= 2 samples); "
                "pass a single value in c_grid"
            )
        for C in grid:
            clf = _fit(x[tr], y[tr], C, max_iter)
            proba = clf.predict_proba(x[va])
            col = {int(c): i for i, c in enumerate(clf.classes_)}
            p_true = np.array([proba[i, col[int(t)]] for i, t in enumerate(y[va])])
            acc[C] = float(np.mean(clf.classes_[proba.argmax(1)] == y[va]))
            loss[C] = float(-np.mean(np.log(np.clip(p_true, 1e-12, None))))
        best = min(grid, key=lambda C: (-acc[C], loss[C], C))
    else:
        best = grid[0]
    w, b = _dense(_fit(x, y, best, max_iter), n_classes, x.shape[1])
    return LinearProbe(weight=w, bias=b, C=best, normalize=normalize, val_accuracy=acc, val_loss=loss)
