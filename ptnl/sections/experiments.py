"""What each notebook runs: its parameters in, the list of ``RunConfig``s of its sweep out.

One function per paper section (one per notebook). Each takes the notebook's own parameter names
(backbone, datasets, noise_rates, seeds, epochs, ...), builds every run through ``RunConfig`` (so
a bad value fails here, before anything trains, with RunConfig's message) and returns the grid in
a fixed order. The notebooks then call ``ptnl.train.sweep.sweep`` on it and ``results`` to read back
exactly these runs.

All notebooks of one parameter set share one experiment folder (``experiment: toy`` etc.), so a
run that two sections need (prompt tuning with CE at 50 % noise appears in Sections 4.2 to 4.6)
trains once: the run id is a hash of every field, so sharing a folder can never mix recipes.

``plan(param_set)`` (``python -m ptnl.sections.experiments --set paper``) prints, before ``make paper``
starts, what every notebook will run, how many runs are already done, and which datasets and
weights are missing on disk.

Method-specific choices made here, once, for every section:
- GCE always runs with q = 0.5 (Section 3: "we found q = 0.5 ... good performance").
- The linear probe (sklearn L-BFGS logistic regression) is fitted on one centre-crop feature per
  image, as CLIP's and CoOp's linear probes are. It minimises cross-entropy only, so where the
  paper's linear probe uses GCE or is asked for gradients, a linear head trained by SGD stands in
  (``SGD_LINEAR``). Visual fine-tuning trains the image tower, so it must see images
  (``feature_mode="exact"``).
- Untrained methods (zero-shot, random prompts) ignore labels: they run once per dataset (zero-shot)
  or once per seed (random prompts), at noise rate 0.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ptnl.core import paths, store
from ptnl.data import disk_status
from ptnl.models.clip import canonical_name, looks_like_path
from ptnl.train.config import RunConfig

PAPER_NOISE_RATES = (0.0, 0.125, 0.25, 0.5)
HIGH_NOISE = 0.5  # the rate Sections 4.4 and 4.6 study
GCE_Q = 0.5
LINEAR_PROBE_FEATURE_MODE = "center"
# The linear probe (sklearn L-BFGS) minimises cross-entropy only and has no per-epoch gradients.
# Where the paper trains a linear probe with GCE (Figure 2, 8) or measures its gradients (Figure 4)
# we use a linear head on the image features trained by SGD with the prompt-tuning recipe: the
# Classifier-R head of Section 4.3, with whatever loss the run asks for.
SGD_LINEAR = "classifier_r"
ROBUST_LOSSES = ("ce", "gce", "sce", "nce_rce")

# Notebook file stem -> the function that builds its runs (07's ensembles come from ptnl.train.upl).
NOTEBOOK_SECTIONS = {
    "00_quickstart": "quickstart",
    "01_prompt_tuning_gce": "sec3_gce",
    "02_noise_robustness": "sec42_robustness",
    "03_robustness_attribution": "sec43_attribution",
    "04_noisy_gradients": "sec44_gradients",
    "05_architectures": "sec45_architectures",
    "06_correlated_noise": "sec46_correlated",
    "07_unsupervised": "sec5_unsupervised",
    "08_appendix": "appendix",
}


# ------------------------------------------------------------------------------------ one run


def config(
    dataset: str,
    backbone: str,
    method: str = "prompt",
    loss: str = "ce",
    noise_rate: float = 0.0,
    seed: int = 1,
    epochs: int = 50,
    shots: int = 16,
    feature_mode: str = "views",
    **fields,
) -> RunConfig:
    """One run with the section-independent choices of the module docstring applied."""
    fields = dict(fields)
    if loss == "gce":
        fields.setdefault("loss_params", {"q": GCE_Q})
    if method == "visual_ft":
        feature_mode = "exact"
    elif method == "linear_probe":
        feature_mode = LINEAR_PROBE_FEATURE_MODE
    if method in ("zeroshot", "random_prompt"):
        noise_rate, loss = 0.0, "ce"
        fields.pop("loss_params", None)
        if method == "zeroshot":
            seed = 1
    return RunConfig(
        dataset=dataset,
        backbone=backbone,
        method=method,
        loss=loss,
        noise_rate=noise_rate,
        seed=seed,
        epochs=epochs,
        shots=shots,
        feature_mode=feature_mode,
        **fields,
    )


def check_backbone_name(name: str) -> None:
    """A ValueError naming the closest backbone if ``name`` is none that ``load_clip`` knows."""
    import difflib

    from ptnl.models.clip import known_backbones

    known = known_backbones()
    if canonical_name(name) not in known:
        close = difflib.get_close_matches(canonical_name(name), known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown backbone {name!r}{hint}: use RN50, ViT-B-32, a toy backbone or an open_clip name"
        )


def pretrained_by_backbone(pretrained, backbones: Sequence[str]) -> dict[str, str | None]:
    """The ``pretrained`` value of each backbone a notebook uses, from its ``pretrained`` parameter:
    one value for every backbone ("default", a tag, None for random weights, or a file when only
    one backbone is used), or a mapping ``{backbone: value}`` (the others keep "default"), e.g.
    ``{RN50: weights/rn50.pt, ViT-B-32: weights/vitb32.safetensors}`` for notebook 05."""
    used = list(dict.fromkeys(canonical_name(b) for b in backbones))
    if isinstance(pretrained, dict):
        given = {canonical_name(str(k)): v for k, v in pretrained.items()}
        for k in given:  # a mapping in a params set's common section also names other notebooks' backbones
            if k not in used:
                check_backbone_name(k)
        for k, v in given.items():
            if v is not None and not isinstance(v, str):
                raise ValueError(
                    f"pretrained[{k!r}] must be a file path, a tag, 'default' or null, got {v!r}"
                )
        return {b: given.get(b, "default") for b in used}
    if pretrained is not None and not isinstance(pretrained, str):
        raise ValueError(
            f"pretrained must be 'default', a file path, a tag, null or a mapping, got {pretrained!r}"
        )
    if len(used) > 1 and isinstance(pretrained, str) and looks_like_path(pretrained):
        raise ValueError(
            f"pretrained={pretrained!r} is one file, but this notebook uses {', '.join(used)}: give a mapping "
            f"{{{used[0]}: FILE, {used[1]}: FILE}} (or save each file as weights/<backbone>.pt, found by name)"
        )
    return dict.fromkeys(used, pretrained)


def pretrained_for(pretrained, backbone: str):
    """``pretrained_by_backbone`` for a notebook with one backbone (what ``load_clip`` takes)."""
    return pretrained_by_backbone(pretrained, [backbone])[canonical_name(backbone)]


def _common(backbone, pretrained, epochs, shots, feature_mode) -> dict:
    """The fields every run of a one-backbone section shares."""
    return dict(
        backbone=backbone,
        pretrained=pretrained_for(pretrained, backbone),
        epochs=epochs,
        shots=shots,
        feature_mode=feature_mode,
    )


def variant(method: str, loss: str = "ce") -> str:
    """The label of a (method, loss) pair in tables and figures: ``prompt``, ``prompt_gce``, ..."""
    return method if loss == "ce" else f"{method}_{loss}"


def _grid(datasets, methods_losses, noise_rates, seeds, **common) -> list[RunConfig]:
    """Every (dataset, (method, loss), rate, seed), in that nesting order, duplicates dropped."""
    out, seen = [], set()
    for dataset in _as_list(datasets, "datasets"):
        for method, loss in methods_losses:
            for rate in _as_list(noise_rates, "noise_rates"):
                for seed in _as_list(seeds, "seeds"):
                    c = config(dataset, method=method, loss=loss, noise_rate=rate, seed=seed, **common)
                    if c.run_id not in seen:
                        seen.add(c.run_id)
                        out.append(c)
    return out


def _as_list(values, name: str) -> list:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list (e.g. [{values!r}]), got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    return values


def _check_rate(rate, name="noise_rate"):
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate < 1:
        raise ValueError(f"{name} must be a fraction in [0, 1) (the paper's 50 % is 0.5), got {rate!r}")


# ------------------------------------------------------------------------------ the sections


def quickstart(
    backbone: str,
    dataset: str,
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 00: zero-shot CLIP, and prompt tuning at each noise rate."""
    common = _common(backbone, pretrained, epochs, shots, feature_mode)
    return [
        config(dataset, method="zeroshot", **common),
        *_grid([dataset], [("prompt", "ce")], noise_rates, seeds, **common),
    ]


def sec3_gce(
    backbone: str,
    dataset: str,
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    qs: Sequence[float],
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 01: prompt tuning with CE and with GCE for each q in ``qs`` (q = 1 is MAE up to a factor)."""
    common = _common(backbone, pretrained, epochs, shots, feature_mode)
    out = _grid([dataset], [("prompt", "ce")], noise_rates, seeds, **common)
    for q in _as_list(qs, "qs"):
        if not isinstance(q, int | float) or not 0 < q <= 1:
            raise ValueError(f"every GCE q must be in (0, 1] (q -> 0 is CE, q = 1 is MAE), got {q!r}")
        for rate in noise_rates:
            for seed in seeds:
                out.append(
                    config(
                        dataset,
                        method="prompt",
                        loss="gce",
                        noise_rate=rate,
                        seed=seed,
                        loss_params={"q": float(q)},
                        **common,
                    )
                )
    return out


SEC42_FIG2 = (
    ("prompt", "ce"),
    ("prompt", "gce"),
    ("linear_probe", "ce"),
    (SGD_LINEAR, "ce"),
    (SGD_LINEAR, "gce"),
)


def sec42_robustness(
    backbone: str,
    datasets: Sequence[str],
    fig1_datasets: Sequence[str],
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 02: Figure 2 (prompt tuning and a linear head, CE and GCE; the sklearn linear
    probe) on ``datasets``, and Figure 1's extra baseline, visual fine-tuning, on ``fig1_datasets``."""
    common = _common(backbone, pretrained, epochs, shots, feature_mode)
    return _grid(datasets, SEC42_FIG2, noise_rates, seeds, **common) + _grid(
        fig1_datasets, [("visual_ft", "ce")], noise_rates, seeds, **common
    )


TABLE1_METHODS = ("classifier_r", "classifier_c", "tenc_ft", "prompt")
TABLE2_METHODS = ("full_prompt", "cls_tuning", "prompt")


def sec43_attribution(
    backbone: str,
    datasets: Sequence[str],
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 03: Table 1 (class embeddings) and Table 2 (which prompt parts are learned)."""
    methods = [(m, "ce") for m in dict.fromkeys(TABLE1_METHODS + TABLE2_METHODS)]
    common = _common(backbone, pretrained, epochs, shots, feature_mode)
    return _grid(datasets, methods, noise_rates, seeds, **common)


def sec44_gradients(
    backbone: str,
    datasets: Sequence[str],
    noise_rate: float,
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 04: prompt tuning and a linear head at one noise rate, recording the per-epoch
    noisy-to-clean gradient-norm ratio."""
    _check_rate(noise_rate)
    if noise_rate == 0:
        raise ValueError(
            "the gradient-norm ratio needs noisy samples: set noise_rate > 0 (the paper uses 0.5)"
        )
    methods = [("prompt", "ce"), (SGD_LINEAR, "ce")]
    common = _common(backbone, pretrained, epochs, shots, feature_mode)
    return _grid(datasets, methods, [noise_rate], seeds, grad_ratio=True, **common)


def sec45_architectures(
    backbone: str,
    backbones: Sequence[str],
    datasets: Sequence[str],
    table3_datasets: Sequence[str],
    n_ctxs: Sequence[int],
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 05: Figure 5 (context lengths ``n_ctxs`` and the linear probe) with ``backbone`` on
    ``datasets``; Table 3 (prompt tuning, each of ``backbones``) on ``table3_datasets``.

    n_ctx = 0 is the paper's Ctx-0, the class name alone: there is nothing to train, so it runs
    once per dataset as an untrained prompt (``random_prompt`` with no context tokens), whose
    accuracy holds at every noise rate. ``pretrained`` may map each backbone to its weights."""
    weights = pretrained_by_backbone(pretrained, [backbone, *_as_list(backbones, "backbones")])
    common = dict(epochs=epochs, shots=shots, feature_mode=feature_mode)
    main = dict(backbone=backbone, pretrained=weights[canonical_name(backbone)], **common)
    out = []
    for dataset in _as_list(datasets, "datasets"):
        for n_ctx in _as_list(n_ctxs, "n_ctxs"):
            if n_ctx == 0:  # Ctx-0 learns nothing: one untrained evaluation, the same at every noise rate
                out.append(config(dataset, method="random_prompt", n_ctx=0, **main))
                continue
            for rate in noise_rates:
                for seed in seeds:
                    out.append(
                        config(dataset, method="prompt", noise_rate=rate, seed=seed, n_ctx=n_ctx, **main)
                    )
    out += _grid(datasets, [("linear_probe", "ce")], noise_rates, seeds, **main)
    for b in _as_list(backbones, "backbones"):
        b_weights = weights[canonical_name(b)]
        out += _grid(
            table3_datasets,
            [("prompt", "ce")],
            noise_rates,
            seeds,
            backbone=b,
            pretrained=b_weights,
            **common,
        )
    return _unique(out)


def sec46_correlated(
    backbone: str,
    datasets: Sequence[str],
    confusion_datasets: Sequence[str],
    noise_rate: float,
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    confusion_from: str = "matrix",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 06: zero-shot confusion matrices of CLIP with a random prompt (Figure 6) and with
    the hand-crafted prompt (the source of confusion noise) on ``confusion_datasets``; random vs
    confusion noise at ``noise_rate`` (Table 4) on ``datasets``. ``confusion_from`` picks each
    mislabelled image's wrong class: "matrix" (one per class, the paper's reading) or "sample"."""
    _check_rate(noise_rate)
    common = _common(backbone, pretrained, epochs, shots, feature_mode)
    out = [
        config(d, method=m, seed=1, **common)
        for d in _as_list(confusion_datasets, "confusion_datasets")
        for m in ("random_prompt", "zeroshot")
    ]
    for kind in ("symmetric", "confusion"):
        out += _grid(
            datasets,
            [("linear_probe", "ce"), ("prompt", "ce")],
            [noise_rate],
            seeds,
            noise_kind=kind,
            **({"confusion_from": confusion_from} if kind == "confusion" else {}),
            **common,
        )
    return _unique(out)


def appendix(
    backbone: str,
    datasets: Sequence[str],
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    random_prompt_draws: int,
    robust_losses: Sequence[str] = ROBUST_LOSSES,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 08: Table 8 (random prompts, ``random_prompt_draws`` draws), Figure 8 (GCE for
    prompt tuning and the linear probe), Figure 9 (robust losses for prompt tuning), Tables 6-7
    (Tables 1-2 on every dataset), and zero-shot CLIP on every dataset (what prompt tuning is
    measured against)."""
    if not isinstance(random_prompt_draws, int) or random_prompt_draws < 1:
        raise ValueError(
            f"random_prompt_draws must be an integer >= 1 (the paper uses 100), got {random_prompt_draws!r}"
        )
    common = _common(backbone, pretrained, epochs, shots, feature_mode)
    out = [
        config(d, method="random_prompt", seed=s, **common)
        for d in _as_list(datasets, "datasets")
        for s in range(1, random_prompt_draws + 1)
    ]
    out += [config(d, method="zeroshot", **common) for d in _as_list(datasets, "datasets")]
    out += _grid(
        datasets,
        [("prompt", loss) for loss in _as_list(robust_losses, "robust_losses")]
        + [("linear_probe", "ce"), (SGD_LINEAR, "ce"), (SGD_LINEAR, "gce")],
        noise_rates,
        seeds,
        **common,
    )
    out += sec43_attribution(backbone, datasets, noise_rates, seeds, epochs, shots, feature_mode, pretrained)
    return _unique(out)


def _unique(configs: Iterable[RunConfig]) -> list[RunConfig]:
    out, seen = [], set()
    for c in configs:
        if c.run_id not in seen:
            seen.add(c.run_id)
            out.append(c)
    return out


def build(section: str, params: dict) -> list:
    """``section``'s runs from a dict of notebook parameters (names the section does not use are ignored).

    Section 5 (notebook 07) gives its zero-shot runs and then every UPL ensemble member (``UPLConfig``,
    which has a run id and a place in the store like a ``RunConfig``)."""
    if section == "sec5_unsupervised":
        from ptnl.train import upl

        fn = upl.sec5_unsupervised
    else:
        fn = globals()[section]
    accepted = inspect.signature(fn).parameters
    out = fn(**{k: v for k, v in params.items() if k in accepted})
    if section == "sec5_unsupervised":
        out = upl.zeroshot_configs(out) + upl.members(out)
    return out


# ---------------------------------------------------------------------------- reading back


def results(configs: Sequence[RunConfig], experiment: str):
    """The finished runs among ``configs`` as ``store.collect`` rows, plus a ``variant`` column.

    The experiment folder may hold other notebooks' runs; only these configs' rows come back.
    """
    import pandas as pd

    ids = {c.run_id for c in configs}
    try:
        df = store.collect(experiment)
    except FileNotFoundError:
        df = pd.DataFrame(columns=["run_id", *RunConfig.__dataclass_fields__])
    df = df[df["run_id"].isin(ids)].reset_index(drop=True)
    df["variant"] = [variant(m, loss) for m, loss in zip(df["method"], df["loss"])]
    return df


def confusion_matrix(config: RunConfig, device=None):
    """Test-set confusion matrix [C, C] (rows = true class, counts) of an untrained method's run
    (zero-shot or random prompt): the same module, with the same initialisation, the engine scores."""
    import numpy as np
    import torch

    from ptnl.models.clip import autocast
    from ptnl.train import engine
    from ptnl.train import features as F

    if config.method not in ("zeroshot", "random_prompt"):
        raise ValueError(
            f"confusion_matrix needs an untrained method (zeroshot, random_prompt), got {config.method!r}"
        )
    r = engine.prepare(config, device)
    module = engine.build_module(config, r.bundle, r.dataset, F.generator("init", config.seed)).to(r.device)
    feats = engine.test_features(r).to(r.device)
    with torch.no_grad(), autocast(r.device, r.precision):
        pred = module(feats, module.class_embeddings()).float().argmax(-1).cpu().numpy()
    c = r.dataset.n_classes
    counts = np.zeros((c, c), dtype=np.int64)
    np.add.at(counts, (np.asarray(r.dataset.test.labels), pred), 1)
    return counts


def status(configs: Sequence, experiment: str) -> dict:
    """Counts of runs, done and pending, and what is missing on disk for the pending ones.

    ``configs`` are RunConfigs or UPLConfigs (whose data and weights are those of their ``prompt``)."""
    done = sum(store.is_done(c, experiment) for c in configs)
    pending = [c for c in configs if not store.is_done(c, experiment)]
    configs = [getattr(c, "prompt", c) for c in configs]
    pending = [getattr(c, "prompt", c) for c in pending]
    return {
        "runs": len(configs),
        "done": done,
        "pending": len(pending),
        "datasets": sorted({c.dataset for c in configs}),
        "backbones": sorted({c.backbone for c in configs}),
        "missing_datasets": sorted({d for d in {c.dataset for c in pending} if not dataset_on_disk(d)}),
        # parsed, not only present: a corrupt split file, or images without their split file
        "dataset_problems": {
            d: f"{st.state}: {st.message}"
            for d in sorted({c.dataset for c in pending})
            if (st := disk_status(d)).state != "ok"
        },
        "missing_weights": sorted(
            {
                f"{c.backbone} ({c.pretrained})"
                for c in pending
                if not weights_on_disk(c.backbone, c.pretrained)
            }
            | {
                "ImageNet ResNet-50 (torchvision, for visual_ft)"
                for c in pending
                if c.method == "visual_ft"
                and not c.backbone.startswith("toy-")
                and not imagenet_resnet50_on_disk()
            }
        ),
    }


def describe(configs: Sequence[RunConfig], experiment: str) -> str:
    """A short human summary of ``status`` (what a notebook prints before sweeping)."""
    s = status(configs, experiment)
    lines = [
        f"{s['runs']} runs in experiment {experiment!r}: {s['done']} done, {s['pending']} to run",
        f"  backbones: {', '.join(s['backbones'])}; datasets: {', '.join(s['datasets'])}",
    ]
    if s["missing_datasets"]:
        lines.append(f"  MISSING datasets (under {paths.data_root()}): {', '.join(s['missing_datasets'])}")
    for d, problem in s["dataset_problems"].items():
        lines.append(f"  {d}: {problem}")
    if s["missing_weights"]:
        lines.append(f"  MISSING weights: {', '.join(s['missing_weights'])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- disk checks


def dataset_on_disk(name: str) -> bool:
    """Whether ``load_dataset(name)`` will find files, checked cheaply (no image list is read)."""
    if name.startswith("toy-"):
        return True  # rendered on demand
    from ptnl.data import datasets as ds

    spec = ds.SPECS[ds.resolve_name(name)]
    root = paths.data_root()
    if ds.coop_available(spec, root):
        return True
    folder = ds.TORCHVISION.get(spec.torchvision, (None,))[0] if spec.torchvision else None
    return folder is not None and (root / folder).is_dir()


def weights_on_disk(backbone: str, pretrained: str | None) -> bool:
    """Whether ``load_clip(backbone, pretrained)`` can load without a download."""
    from ptnl.models import clip

    return clip.weights_available(backbone, pretrained)


def imagenet_resnet50_on_disk() -> bool:
    """Whether visual fine-tuning's torchvision ResNet-50 weights are in torch's hub cache."""
    import os

    import torch
    from torchvision.models import ResNet50_Weights

    from ptnl.models.heads import RESNET50_DEFAULT_WEIGHTS

    url = ResNet50_Weights[RESNET50_DEFAULT_WEIGHTS].url
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


# ------------------------------------------------------------------------------------- plan


def notebook_params(notebook: Path, param_set: str) -> dict:
    """Every parameter of ``notebook`` as ``ptnl.tools.notebooks.run`` would give it: its defaults, then the set."""
    from ptnl.tools import notebooks

    params = {}
    for name, source in notebooks.notebook_parameters(notebook).items():
        try:
            params[name] = ast.literal_eval(source)
        except (ValueError, SyntaxError):
            params[name] = source
    params.update(notebooks.load_param_set(param_set, notebook))
    return params


def plan(param_set: str = "paper", overrides: dict | None = None, file=None) -> list[dict]:
    """Print what the notebooks of ``param_set`` will run; returns one status dict per notebook.

    ``overrides`` (``-p NAME VALUE`` of the notebook runner) apply to the notebooks that declare them.
    """
    from ptnl.tools import notebooks

    file = file or sys.stdout
    rows, everything = [], {}
    for nb in sorted(notebooks.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        if nb.stem not in NOTEBOOK_SECTIONS:
            print(
                f"{nb.stem:28s} (no run plan in ptnl.sections.experiments.NOTEBOOK_SECTIONS: not counted)",
                file=file,
            )
            continue
        params = notebook_params(nb, param_set)
        mine = {k: v for k, v in (overrides or {}).items() if k in params}
        notebooks.check_values(mine, notebooks.notebook_parameters(nb), "override")
        params.update(mine)
        configs = build(NOTEBOOK_SECTIONS[nb.stem], params)
        experiment = params.get("experiment", param_set)
        s = status(configs, experiment)
        rows.append({"notebook": nb.stem, "experiment": experiment, **s})
        for c in configs:
            everything[(experiment, c.run_id)] = c
        print(
            f"{nb.stem:28s} {s['runs']:6d} runs ({s['done']} done, {s['pending']} to run)  "
            f"backbones {', '.join(s['backbones'])}",
            file=file,
        )
    unique = list(everything.items())
    pending = [c for (exp, _), c in unique if not store.is_done(c, exp)]
    print(
        f"{'total (shared runs once)':28s} {len(unique):6d} runs ({len(unique) - len(pending)} done, "
        f"{len(pending)} to run)",
        file=file,
    )
    missing_d = sorted({d for r in rows for d in r["missing_datasets"]})
    missing_w = sorted({w for r in rows for w in r["missing_weights"]})
    problems = {d: p for r in rows for d, p in r["dataset_problems"].items()}
    print(f"datasets missing under {paths.data_root()}: {', '.join(missing_d) or 'none'}", file=file)
    for d, problem in sorted(problems.items()):
        print(f"  {d}: {problem}", file=file)
    print(f"weights missing: {', '.join(missing_w) or 'none'}", file=file)
    return rows


def main(argv=None) -> int:
    from ptnl.tools import notebooks

    ap = argparse.ArgumentParser(
        prog="python -m ptnl.sections.experiments",
        description="Print what the notebooks of a parameter set will run.",
    )
    ap.add_argument("--set", default="paper", help="parameter set: params/<set>.yaml (default: paper)")
    notebooks.add_param_option(ap)
    ap.add_argument("-f", "--parameters-file", action="append", default=[], type=Path, help="YAML overrides")
    args = ap.parse_args(argv)
    try:
        overrides = notebooks.parse_overrides(args.param, args.parameters_file)
        notebooks.check_names(overrides, notebooks.declared_anywhere(), "override", "any notebook")
        plan(args.set, overrides)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
