"""What every section shares: one run with the section-independent choices, grid helpers, reading
the runs back, and the ``Section`` a notebook is built around.

Each section module (one per notebook) has a grid function that takes the notebook's own parameter
names (backbone, datasets, noise_rates, seeds, epochs, ...), builds every run through ``config``
(so a bad value fails there, before anything trains, with RunConfig's message) and returns the
grid in a fixed order, and declares the notebook's parameters once (``ptnl.sections.parameters``).
The notebooks hand their parameters to ``Section.runs``, then call ``ptnl.train.sweep.sweep`` on
the grid and ``results`` to read back exactly these runs.

All notebooks of one parameter set share one experiment folder (``experiment: toy`` etc.), so a
run that two sections need (prompt tuning with CE at 50 % noise appears in Sections 4.2 to 4.6)
trains once: the run id is a hash of every field, so sharing a folder can never mix recipes.

Method-specific choices made here, once, for every section:
- GCE always runs with q = 0.5 (Section 3: "we found q = 0.5 ... good performance").
- The linear probe (sklearn L-BFGS logistic regression) is fitted on one centre-crop feature per
  image, as CLIP's and CoOp's linear probes are. It minimises cross-entropy only, so where the
  paper's linear probe uses GCE or is asked for gradients, a linear head trained by SGD stands in
  (``SGD_LINEAR``). Visual fine-tuning trains the image tower, so it must see images
  (``feature_mode="exact"``). Both modes are the method registry's (``ptnl.train.methods``).
- Untrained methods (zero-shot, random prompts) ignore labels: they run once per dataset (zero-shot)
  or once per seed (random prompts), at noise rate 0.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ptnl.core import paths
from ptnl.core.checks import as_list, is_fraction
from ptnl.data import disk_status, on_disk
from ptnl.models.visual import imagenet_resnet50_on_disk
from ptnl.models.weights import canonical_name, known_backbones, looks_like_path, weights_available
from ptnl.sections.parameters import Parameters
from ptnl.train import engine, methods, store
from ptnl.train import features as F
from ptnl.train.config import RunConfig
from ptnl.train.loop import batched_logits
from ptnl.train.methods import UNTRAINED_METHODS, variant

HIGH_NOISE = 0.5  # the rate Sections 4.4 and 4.6 study, and the "50% noise" of every claim
LINEAR_PROBE_FEATURE_MODE = methods.get("linear_probe").feature_mode
# The linear probe (sklearn L-BFGS) minimises cross-entropy only and has no per-epoch gradients.
# Where the paper trains a linear probe with GCE (Figure 2, 8) or measures its gradients (Figure 4)
# we use a linear head on the image features trained by SGD with the prompt-tuning recipe: the
# Classifier-R head of Section 4.3, with whatever loss the run asks for.
SGD_LINEAR = "classifier_r"
# How the figures that draw it as the paper's linear probe name it.
SGD_LINEAR_LABELS = {
    SGD_LINEAR: "linear probe (SGD head)",
    f"{SGD_LINEAR}_gce": "linear probe (SGD head, GCE)",
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
    """One run with the choices its method's family makes for every section applied
    (``ptnl.train.methods.policy``)."""
    fields = dict(
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
    return RunConfig(**(methods.policy(method, fields) if method in methods.METHODS else fields))


def check_backbone_name(name: str) -> None:
    """A ValueError naming the closest backbone if ``name`` is none that ``load_clip`` knows."""
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


# ------------------------------------------------------------------------------ grid helpers


def shared_fields(backbone, pretrained, epochs, shots, feature_mode) -> dict:
    """The fields every run of a one-backbone section shares."""
    return dict(
        backbone=backbone,
        pretrained=pretrained_for(pretrained, backbone),
        epochs=epochs,
        shots=shots,
        feature_mode=feature_mode,
    )


def grid(datasets, methods_losses, noise_rates, seeds, **common) -> list[RunConfig]:
    """Every (dataset, (method, loss), rate, seed), in that nesting order, duplicates dropped."""
    out, seen = [], set()
    for dataset in as_list(datasets, "datasets"):
        for method, loss in methods_losses:
            for rate in as_list(noise_rates, "noise_rates"):
                for seed in as_list(seeds, "seeds"):
                    c = config(dataset, method=method, loss=loss, noise_rate=rate, seed=seed, **common)
                    if c.run_id not in seen:
                        seen.add(c.run_id)
                        out.append(c)
    return out


def unique(configs: Iterable[RunConfig]) -> list[RunConfig]:
    """``configs`` in order, each run id once."""
    out, seen = [], set()
    for c in configs:
        if c.run_id not in seen:
            seen.add(c.run_id)
            out.append(c)
    return out


def check_rate(rate, name="noise_rate"):
    """A ValueError unless ``rate`` is a noise rate, a fraction in [0, 1)."""
    if not is_fraction(rate):
        raise ValueError(f"{name} must be a fraction in [0, 1) (the paper's 50 % is 0.5), got {rate!r}")


# ---------------------------------------------------------------------------- reading back


def results(configs: Sequence[RunConfig], experiment: str, metrics: Sequence[dict] | None = None):
    """The finished runs among ``configs`` as ``store.collect`` rows, plus a ``variant`` column:
    from ``metrics`` (what ``sweep`` returned for them) where given, else read from the store.
    Only these configs' runs are read, whatever else the experiment folder holds."""
    df = store.rows(configs, experiment, metrics)
    df["variant"] = [variant(m, loss) for m, loss in zip(df["method"], df["loss"])]
    return df


def confusion_matrix(config: RunConfig, device=None):
    """Test-set confusion matrix [C, C] (rows = true class, counts) of an untrained method's run
    (zero-shot or random prompt): the same module, with the same initialisation, the engine scores."""
    if config.method not in UNTRAINED_METHODS:
        raise ValueError(
            f"confusion_matrix needs an untrained method (zeroshot, random_prompt), got {config.method!r}"
        )
    r = engine.prepare(config, device)
    module = methods.init_module(methods.get(config.method), config, r.bundle, r.dataset, r.device)
    feats = F.test_features(r)
    batches = batched_logits(module, feats, r.device, r.precision, batch=None)  # one matmul
    pred = np.concatenate([z.argmax(-1).cpu().numpy() for _, z in batches] or [np.zeros(0, np.int64)])
    c = r.dataset.n_classes
    counts = np.zeros((c, c), dtype=np.int64)
    np.add.at(counts, (np.asarray(r.dataset.test.labels), pred), 1)
    return counts


def status(configs: Sequence, experiment: str) -> dict:
    """Counts of runs, done and pending, and what is missing on disk for the pending ones."""
    done = sum(store.is_done(c, experiment) for c in configs)
    pending = [c for c in configs if not store.is_done(c, experiment)]
    return {
        "runs": len(configs),
        "done": done,
        "pending": len(pending),
        "datasets": sorted({c.dataset for c in configs}),
        "backbones": sorted({c.backbone for c in configs}),
        "missing_datasets": sorted({d for d in {c.dataset for c in pending} if not on_disk(d)}),
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
                if not weights_available(c.backbone, c.pretrained)
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


# ---------------------------------------------------------------------------------- a section


@dataclass(frozen=True)
class Section:
    """One paper section, as its notebook uses it.

    ``grid`` is the grid function (the notebook's parameters in, as keywords; its runs out) and
    ``parameters`` the notebook's parameters, declared once (``ptnl.sections.parameters``: its
    ``parameters`` cell is generated from them and every set and override is checked against
    them); ``runs`` builds the grid from a dict of them; ``describe`` says what a sweep of them
    will do and ``results`` reads their finished runs back; ``stored`` turns the grid into the
    configs the run store holds where those differ from the grid's items (Section 5: its zero-shot
    runs and every ensemble member)."""

    stem: str  # the notebook's file stem, e.g. "03_robustness_attribution"
    title: str  # the part of the paper it reproduces
    grid: Callable[..., list]
    parameters: Parameters
    describe: Callable[[Sequence, str], str] = describe
    results: Callable[[Sequence, str], pd.DataFrame] = results
    stored: Callable[[list], list] | None = None  # None: the grid's items themselves
    # Runs its sweep trains together (``sweep(group_size=...)``); None: the notebook's ``group_size``.
    group_size: int | None = None

    def __post_init__(self):
        required = [
            name
            for name, p in inspect.signature(self.grid).parameters.items()
            if p.default is inspect.Parameter.empty and name not in self.parameters
        ]
        if required:
            raise ValueError(
                f"{self.stem}: the grid takes {', '.join(required)}, which its parameters do not declare"
            )

    def runs(self, params: Mapping | None = None, /, **keywords) -> list:
        """The grid: from a dict of notebook parameters (what ``check_parameters`` returns; names
        the grid does not take, device, experiment ..., are ignored), from keywords as the grid
        function takes them, or from both (the keywords win)."""
        accepted = inspect.signature(self.grid).parameters
        given = {k: v for k, v in (params or {}).items() if k in accepted}
        return self.grid(**{**given, **keywords})

    def sweep_group_size(self, params: Mapping) -> int:
        """The ``group_size`` this section's sweep trains with, for these notebook parameters."""
        return self.group_size if self.group_size is not None else int(params.get("group_size", 1))

    def build(self, params: dict) -> list:
        """The stored runs from a dict of notebook parameters (names the grid does not take are ignored)."""
        out = self.runs(params)
        return self.stored(out) if self.stored is not None else out
