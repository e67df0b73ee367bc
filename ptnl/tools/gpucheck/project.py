"""The paper grid's projected wall time: every distinct run of a parameter set's notebooks,
counted through the sections' run grids, times the measured costs (``costs.measure_step_times``)."""

from __future__ import annotations

from collections import Counter, defaultdict

from ptnl.data.labels import PSEUDO_KINDS
from ptnl.sections import SECTIONS, build
from ptnl.tools import notebooks
from ptnl.tools.gpucheck.common import HEADS, PARAM_SET, UNTRAINED, dataset_sizes
from ptnl.tools.plan import notebook_params
from ptnl.train import sweep
from ptnl.train.config import RunConfig

ASSUMPTIONS = [
    "one GPU, runs one after another; the CPU's augmentation and the GPU's work do not overlap",
    "step times measured with random weights, precision 'auto' (bf16 autocast on the GPU), n_ctx=16 "
    "(runs with 4 or 8 context tokens are counted at 16), linear in the class count between the two "
    "measured class counts (the text pass covers every class); the synthetic class names are 2-3 "
    "tokens, real ones up to ~10, so the text pass is somewhat longer in the real grid",
    "groupable runs (sweep.groupable, sweep.group_key) of a notebook train in groups of its group_size; "
    "a group of R costs the single step plus (R-1)/(G-1) of the measured group's extra over it",
    "grad_ratio runs and UPL members are counted as single runs; grad_ratio at the measured factor",
    "linear heads (classifier_r/_free/_c): the measured classifier_r step at every class count",
    "tenc_ft: the measured factor over a prompt step, scaled with the class count like prompt tuning",
    "linear probe (sklearn on the CPU, its C search included): measured on synthetic class-structured "
    "features at the small class count with 16 shots, scaled linearly with the class count (real "
    "features may need more L-BFGS iterations)",
    "visual_ft: per image, decode + augment on the CPU + 3x the backbone's measured image forward "
    "(the backbone's tower standing in for the ImageNet ResNet-50)",
    "feature encoding once per (dataset, backbone): the expected union of the seeds' 16-shot draws "
    "x 50 views, the test split, centre crops of the few-shot union (linear probe, confusion "
    "noise) or of the whole train split (UPL); decode/augment measured on one synthetic JPEG of "
    "JPEG_SIZE on this CPU, one image after another as features.cached_features does",
    "every run loads its feature files whole at the measured torch.load rate",
    "untrained runs (zero-shot, random prompts) cost their cache reads only",
    "dataset sizes: CoOp's table (each dataset's Spec.sizes, ptnl.data.specs)",
]


def grid_runs(param_set: str = PARAM_SET) -> list[tuple[str, object, int]]:
    """(notebook, config, group_size) for every distinct run of the set's notebooks, in the
    notebook that first asks for it (a run shared by notebooks trains once)."""
    seen = {}
    for nb in sorted(notebooks.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        if nb.stem not in SECTIONS:
            continue
        params = notebook_params(nb, param_set)
        group = int(params.get("group_size", 1))
        for c in build(nb.stem, params):
            seen.setdefault((params.get("experiment", param_set), c.run_id), (nb.stem, c, group))
    return list(seen.values())


def _steps(cfg, n_classes: int) -> int:
    n = cfg.shots * n_classes
    return cfg.epochs * (1 if n < cfg.batch_size else n // cfg.batch_size)


def _line(t: dict, key: str, c: float) -> float:
    (c1, c2), (y1, y2) = t["classes"], t[key]
    # A step over more classes never costs less: a negative slope is timing noise (one timed step
    # in the dry mode, a loaded machine), read as a flat line.
    slope = max(0.0, (y2 - y1) / (c2 - c1))
    return max(0.0, y1 + slope * (c - c1))


def step_s(t: dict, n_classes: int, runs: int = 1) -> float:
    """Seconds per step of ``runs`` prompt-tuning runs trained together at ``n_classes``."""
    one = _line(t, "single_s", n_classes)
    if runs == 1:
        return one
    # A group costs at least one run's step: a noisy timing (a loaded machine, one timed step in
    # the dry mode) must not make the extra runs of a group cost negative time.
    return max(one, one + (runs - 1) / (t["group_runs"] - 1) * (_line(t, "group_s", n_classes) - one))


def _union(n_classes: int, n_train: int, shots: int, n_seeds: int) -> float:
    """Expected distinct images in ``n_seeds`` independent ``shots``-per-class draws."""
    per_class = n_train / n_classes
    k = min(shots, per_class)
    return n_classes * per_class * (1.0 - (1.0 - k / per_class) ** n_seeds)


def _train_s(cfg, t: dict, n_classes: int) -> tuple[float, float]:
    """(GPU seconds, CPU seconds) of one run's training, alone."""
    steps = _steps(cfg, n_classes)
    if cfg.method in UNTRAINED:
        return 0.0, 0.0
    if cfg.method == "linear_probe":
        return 0.0, t["linear_probe_s"] * n_classes / t["linear_probe_classes"]
    if cfg.method == "visual_ft":
        per_image = t["decode_s"] + t["augment_s"] + 3 * t["encode_s_per_image"]
        return steps * cfg.batch_size * per_image, 0.0
    grad = t["grad_ratio_factor"] if cfg.grad_ratio else 1.0
    if cfg.method in HEADS:
        return steps * t["linear_head_s"] * grad, 0.0
    if cfg.method == "tenc_ft":
        return steps * step_s(t, n_classes) * t["tenc_ft_factor"], 0.0
    return steps * step_s(t, n_classes) * grad, 0.0


def project_grid(timings: dict, param_set: str = PARAM_SET) -> dict:
    """Projected wall time of ``param_set``'s grid from per-backbone ``timings``
    (``measure_step_times``), one GPU, runs one after another."""
    entries = grid_runs(param_set)
    configs = [(nb, c, g, c.noise_kind in PSEUDO_KINDS) for nb, c, g in entries]
    # the toy lab (notebook 09) runs toy CLIPs in every set: minutes beside the real grid, left out
    toy = [x for x in configs if x[1].backbone.startswith("toy-")]
    configs = [x for x in configs if not x[1].backbone.startswith("toy-")]
    missing = sorted({c.backbone for _, c, _, _ in configs} - set(timings))
    sizes = dataset_sizes()
    unknown = sorted({c.dataset for _, c, _, _ in configs} - set(sizes))
    if missing or unknown:
        raise ValueError(f"no timings for backbones {missing} / no sizes for datasets {unknown}")

    # what each (dataset, backbone) must encode once
    needs = defaultdict(
        lambda: {"view_seeds": set(), "views": 0, "center_seeds": set(), "full_center": False}
    )
    for _, c, _, upl in configs:
        need = needs[(c.dataset, c.backbone)]
        need["full_center"] |= upl  # UPL pseudo-labels the whole train split
        if c.method in UNTRAINED or c.feature_mode == "exact":
            pass
        elif c.feature_mode == "views":
            need["view_seeds"].add(c.seed)
            need["views"] = max(need["views"], c.views_per_image)
        else:
            need["center_seeds"].add(c.seed)
        if c.noise_kind == "confusion" and c.noise_rate > 0:  # zero-shot scores of the few-shot set
            need["center_seeds"].add(c.seed)

    encode_h, refs = {}, {}
    for (ds, bb), need in needs.items():
        t, (n_cls, n_train, n_test) = timings[bb], sizes[ds]
        enc = t["encode_s_per_image"]
        u_views = _union(n_cls, n_train, 16, len(need["view_seeds"])) if need["view_seeds"] else 0.0
        n_center = (
            n_train
            if need["full_center"]
            else _union(n_cls, n_train, 16, len(need["center_seeds"]))
            if need["center_seeds"]
            else 0.0
        )
        centre = t["decode_s"] + t["preprocess_s"] + enc
        seconds = (
            u_views * (t["decode_s"] + need["views"] * (t["augment_s"] + enc)) + (n_center + n_test) * centre
        )
        encode_h[f"{ds} / {bb}"] = seconds / 3600
        refs[(ds, bb)] = {"views": u_views * need["views"], "center": n_center, "test": n_test}

    def read_s(c) -> float:
        t, r = timings[c.backbone], refs[(c.dataset, c.backbone)]
        n = r["test"] + (0 if c.method in UNTRAINED or c.feature_mode == "exact" else r[c.feature_mode])
        return n * t["feature_dim"] * 4 / 2**30 / t["cache_read_gb_s"]

    gpu_h, cpu_h, read_h = Counter(), Counter(), Counter()
    groups = defaultdict(list)
    for nb, c, g, upl in configs:
        read_h[nb] += read_s(c) / 3600
        if g > 1 and not upl and not c.grad_ratio and sweep.groupable(c):
            groups[(nb, g, sweep.group_key(c))].append(c)
            continue
        gs, cs = _train_s(c, timings[c.backbone], sizes[c.dataset][0])
        gpu_h[nb] += gs / 3600
        cpu_h[nb] += cs / 3600
    for (nb, g, _), members in groups.items():
        c0, n_cls = members[0], sizes[members[0].dataset][0]
        for start in range(0, len(members), g):
            runs = len(members[start : start + g])
            gpu_h[nb] += _steps(c0, n_cls) * step_s(timings[c0.backbone], n_cls, runs) / 3600

    hours = {
        "training_gpu": sum(gpu_h.values()),
        "linear_probe_cpu": sum(cpu_h.values()),
        "feature_encoding": sum(encode_h.values()),
        "cache_reads": sum(read_h.values()),
    }
    hours["total"] = sum(hours.values())
    by_notebook = {
        nb: round(gpu_h[nb] + cpu_h[nb] + read_h[nb], 3) for nb in sorted({nb for nb, *_ in configs})
    }
    return {
        "param_set": param_set,
        "runs": len(configs),
        "toy_runs_not_projected": len(toy),
        "runs_by_notebook": dict(sorted(Counter(nb for nb, *_ in configs).items())),
        "runs_by_method": dict(
            sorted(Counter(c.method + (" (UPL)" if u else "") for _, c, _, u in configs).items())
        ),
        "runs_by_dataset": dict(sorted(Counter(c.dataset for _, c, _, _ in configs).items())),
        "runs_by_backbone": dict(sorted(Counter(c.backbone for _, c, _, _ in configs).items())),
        "hours": {k: round(v, 3) for k, v in hours.items()},
        "hours_by_notebook_excluding_encoding": by_notebook,
        "feature_encoding_hours": {k: round(v, 3) for k, v in sorted(encode_h.items())},
        "per_run_s": _examples(timings, configs),
        "assumptions": ASSUMPTIONS,
    }


def _examples(timings: dict, configs) -> dict:
    out = {}
    group = max((g for _, _, g, _ in configs), default=1)
    for bb, t in timings.items():
        for ds, runs in (("DTD", group), ("ImageNet", 1)):
            c = RunConfig(dataset=ds, backbone=bb)
            n_cls = dataset_sizes()[ds][0]
            how = "alone" if runs == 1 else f"in a group of {runs}"
            key = f"prompt {bb} {ds} ({n_cls} classes, 16 shots, 50 epochs), {how}"
            out[key] = round(_steps(c, n_cls) * step_s(t, n_cls, runs) / runs, 2)
    return out
