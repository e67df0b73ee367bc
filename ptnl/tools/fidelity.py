"""How much a CLIP looks like OpenAI's, in the quantities that govern prompt tuning under noise.

    python -m ptnl fidelity                                 # toy-rn on the four toy tasks
    python -m ptnl fidelity RN50:DTD toy-rn:toy-textures    # a real pair beside a toy one
    python -m ptnl fidelity RN50:DTD --no-fits --json rn50-dtd.json

The toy world is only useful where it behaves like real CLIP, and the toy's remaining failures
(docs/log/toy-world-v2.md) point at properties of its CLIPs that could not be compared with RN50's
here: no real weights or datasets can be loaded on the machine the toy was built on. This module
measures those properties the same way for any backbone and dataset, so one command on a machine
with the weights gives the real values a future toy world can be pre-registered against.

Per (backbone, dataset) pair, on the test split (centre crops, the feature cache):
- ``temperature``: exp(logit_scale), the frozen scale every method's logits use (OpenAI: 100).
- ``feature_participation_ratio`` (PR = (sum l)^2 / sum l^2 over the eigenvalues l of the
  covariance of the L2-normalised image features) and ``feature_entropy_rank`` (exp of the
  entropy of l / sum l): how many directions the features spread over, out of ``embed_dim``.
  Fitting labels in small-variance directions is slow for SGD.
- ``feature_mean_cosine``: mean cosine between two test images' features (CLIP's "cone").
- ``modality_gap``: distance between the centroids of the normalised image features and of the
  normalised class text embeddings (Liang et al., 2022).
- ``class_text_mean_cosine``: mean cosine between two classes' hand-crafted text embeddings.
- ``zero_shot_acc``: the hand-crafted template's test accuracy.
- ``zero_shot_ece``: its expected calibration error at the CLIP's own temperature (10 equal-width
  bins of top-1 confidence, as LeVine et al. 2023 measured OpenAI's CLIPs; the toy CLIPs ship the
  temperature that matches their published values, docs/log/toy-world-v2.md, addendum 5).
- ``token_rms`` / ``ctx_init_rms``: the root-mean-square norm of the token embeddings of the
  dataset's prompts, and of a context vector drawn as CoOp draws it (N(0, 0.02) per entry). Their
  ratio says how loud a fresh learned context is next to real words.
- With fits (the default): ``classifier_r_fit`` / ``prompt_fit``, the share of their clean
  training views that Classifier-R and prompt tuning predict right after the paper's recipe
  (16 shots, no noise, seed 1 unless ``recipe`` says otherwise; ``train_fit_clean``), with their
  test accuracies. These runs go through the run store (experiment ``fidelity``), so a second
  report is instant.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ptnl.core.files import atomic_write_json
from ptnl.models.heads import ZeroShotCLIP
from ptnl.train import engine
from ptnl.train.config import RunConfig
from ptnl.train.features import test_features
from ptnl.train.loop import accuracy

EXPERIMENT = "fidelity"  # the run store's folder for the fit runs
CTX_INIT_STD = 0.02  # CoOp / PTNL: random context vectors are N(0, 0.02) per entry
DEFAULT_PAIRS = ("toy-rn:toy-shapes", "toy-rn:toy-fine", "toy-rn:toy-textures", "toy-rn:toy-scatter")


def spectrum(features: torch.Tensor) -> dict:
    """Participation ratio and entropy rank of the covariance of L2-normalised ``features`` [N, E]."""
    x = F.normalize(features.double(), dim=-1)
    if len(x) < 2:
        raise ValueError(f"spectrum needs at least 2 feature vectors, got {len(x)}")
    x = x - x.mean(0)
    lam = torch.linalg.eigvalsh(x.T @ x / (len(x) - 1)).clamp_min(0)
    total = lam.sum()
    if total <= 0:
        return {"feature_participation_ratio": 1.0, "feature_entropy_rank": 1.0}
    p = lam / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {
        "feature_participation_ratio": float(total**2 / (lam**2).sum()),
        "feature_entropy_rank": float(entropy.exp()),
    }


def expected_calibration_error(probs: torch.Tensor, labels, n_bins: int = 10) -> float:
    """ECE of ``probs`` [N, C]: top-1 confidence in ``n_bins`` equal-width bins over (0, 1], the
    bin-size-weighted mean of |accuracy - mean confidence| (Guo et al., 2017)."""
    probs = torch.as_tensor(probs, dtype=torch.float64)
    labels = torch.as_tensor(labels)
    if probs.ndim != 2 or len(probs) != len(labels) or len(probs) == 0:
        raise ValueError(
            f"need probs [N, C] and N labels with N > 0, got {tuple(probs.shape)} and {len(labels)}"
        )
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    # bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 cannot be top-1
    bins = (conf * n_bins).ceil().clamp(1, n_bins).long() - 1
    ece = torch.zeros((), dtype=torch.float64)
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.double().mean() * (conf[m].mean() - correct[m].mean()).abs()
    return float(ece)


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine over distinct pairs of rows (exact, without the [N, N] matrix)."""
    u = F.normalize(x.double(), dim=-1)
    n = len(u)
    if n < 2:
        raise ValueError(f"mean_pairwise_cosine needs at least 2 vectors, got {n}")
    s = u.sum(0)
    return float((s @ s - n) / (n * (n - 1)))  # sum over i != j of u_i . u_j, each row has norm 1


def _prompt_token_rms(bundle, prompts: Sequence[str]) -> float:
    tokens = bundle.tokenizer(list(prompts)).flatten()
    tokens = torch.unique(tokens[tokens != 0])  # padding is id 0 in open_clip's tokenizer
    emb = bundle.model.token_embedding.weight.detach().float()[
        tokens.to(bundle.model.token_embedding.weight.device)
    ]
    return float(emb.norm(dim=-1).pow(2).mean().sqrt())


def measure(
    backbone: str,
    dataset: str,
    pretrained: str | None = "default",
    fits: bool = True,
    device=None,
    recipe: dict | None = None,
) -> dict:
    """Every quantity of the module docstring for one (backbone, dataset) pair. ``recipe``:
    RunConfig fields for the fit runs other than the paper's (e.g. ``{"epochs": 200}``)."""
    cfg = RunConfig.from_dict(
        {
            **(recipe or {}),
            "dataset": dataset,
            "backbone": backbone,
            "pretrained": pretrained,
            "method": "zeroshot",
        }
    )
    r = engine.prepare(cfg.replace(shots=1), device=device)  # test-split measures draw no few-shot set
    bundle, ds = r.bundle, r.dataset
    img = test_features(r).float().cpu()
    zero_shot = ZeroShotCLIP(bundle, ds.prompts())
    txt = zero_shot.class_embeddings().float().cpu()  # unit rows
    width = bundle.model.token_embedding.weight.shape[1]
    out = {
        "backbone": bundle.name,
        "dataset": ds.name,
        "weights": bundle.weights_id,
        "n_classes": ds.n_classes,
        "n_test": len(img),
        "embed_dim": bundle.embed_dim,
        "temperature": float(bundle.model.logit_scale.detach().float().exp()),
        **spectrum(img),
        "feature_mean_cosine": mean_pairwise_cosine(img),
        "modality_gap": float((F.normalize(img, dim=-1).mean(0) - txt.mean(0)).norm()),
        "class_text_mean_cosine": mean_pairwise_cosine(txt),
        "zero_shot_acc": accuracy(zero_shot, img, ds.test.labels, r.device, r.precision),
        "zero_shot_ece": expected_calibration_error(
            zero_shot(img.to(r.device)).float().softmax(1).cpu(), ds.test.labels
        ),
        "token_rms": _prompt_token_rms(bundle, ds.prompts()),
        "ctx_init_rms": CTX_INIT_STD * math.sqrt(width),
    }
    if fits:
        for method in ("classifier_r", "prompt"):
            m = engine.run(cfg.replace(method=method, noise_rate=0.0), EXPERIMENT, device=device)
            out[f"{method}_fit"] = m["train_fit_clean"]
            out[f"{method}_test_acc"] = m["test_acc"]
    return out


def parse_pair(text: str) -> tuple[str, str]:
    backbone, sep, dataset = text.rpartition(":")
    if not sep or not backbone or not dataset:
        raise ValueError(f"{text!r}: write a pair as BACKBONE:DATASET, e.g. RN50:DTD or toy-rn:toy-textures")
    return backbone, dataset


def report(rows: Sequence[dict]) -> str:
    """The pairs side by side, one quantity per line."""
    df = pd.DataFrame(rows)
    df.index = [f"{r['backbone']}:{r['dataset']}" for r in rows]
    body = df.drop(columns=["backbone", "dataset"]).T
    return body.to_string(float_format=lambda v: f"{v:.3g}")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags of ``python -m ptnl fidelity``."""
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    ap.add_argument("pairs", nargs="*", default=list(DEFAULT_PAIRS), help="BACKBONE:DATASET pairs")
    ap.add_argument(
        "--pretrained", default="default", help="passed to load_clip for every pair ('none': random weights)"
    )
    ap.add_argument("--no-fits", action="store_true", help="skip the two training runs per pair")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None, help="also write the rows to this file")


def command(args: argparse.Namespace) -> int:
    """Measure every pair and print them side by side (``--json``: also write the rows)."""
    try:
        pairs = [parse_pair(p) for p in args.pairs]
        pretrained = None if args.pretrained.lower() == "none" else args.pretrained
        rows = [measure(b, d, pretrained, fits=not args.no_fits, device=args.device) for b, d in pairs]
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(rows))
    if args.json:
        atomic_write_json(Path(args.json), rows)
    return 0
