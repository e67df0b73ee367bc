"""Command line: the same runs and sweeps as the notebooks, for scripting on clusters, and every
tool of the package.

    python -m ptnl run   --experiment demo --dataset toy-shapes --backbone toy-vit --noise-rate 0.5
    python -m ptnl sweep --experiment sec42 --grid grids/sec42.yaml --shard 0/4
    python -m ptnl sweep --experiment demo --base dataset=toy-shapes --base backbone=toy-vit \\
                         --set noise_rate=0,0.25,0.5 --set seed=1,2,3,4 --group 4
    python -m ptnl collect sec42 --csv sec42.csv
    python -m ptnl ratio diag-seeds --seeds 1,2,3 --where epochs=50

A grid YAML file looks like

    experiment: sec42            # optional; --experiment overrides it
    base: {dataset: toy-shapes, backbone: toy-vit, epochs: 50}
    grid:                        # cartesian product; a list of such mappings = union of products
      noise_rate: [0.0, 0.125, 0.25, 0.5]
      seed: [1, 2, 3, 4]

Sweeps resume where they stopped (Ctrl-C exits with 130), and two sweeps of one experiment, on
one machine or several sharing results/, split its runs between them without training one twice.

``--set key=v1,v2`` adds (or replaces) an axis and ``--base key=v`` a fixed field; values are
read as YAML scalars (``0.5``, ``true``, ``null``), dotted keys reach into dicts (``loss_params.q=0.7``).

``noise export --out FILE`` writes a config's noise manifest (``ptnl.data.manifest``): the very
training set and labels, which ``--noise-kind manifest --noise-file FILE`` trains on again.

The other subcommands: ``plan`` (what a parameter set's notebooks will run), ``notebooks run|refs|params``
(``ptnl.tools.notebooks``), ``bench`` (the speed and memory benchmark, ``ptnl.tools.speed``), ``gpu-check``
(``ptnl.tools.gpucheck``), ``fidelity`` (``ptnl.tools.fidelity``) and ``toy pretrain|sanity``
(``ptnl.tools.toy.pretrain``, ``ptnl.tools.toy.sanity``, ``ptnl.tools.toy.snapshots``). Each of those modules declares its own flags
(``add_arguments(parser)``) and runs them (``command(args)``, the exit status).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import pandas as pd
import yaml

from ptnl.data.noise import CONFUSION_FROM
from ptnl.data.specs import DATASETS
from ptnl.report import stats, tables
from ptnl.tools import cluster, docs, fidelity, gpucheck, notebooks, schedule, shipped, speed
from ptnl.tools.plan import plan
from ptnl.tools.toy import pretrain, sanity, snapshots
from ptnl.train import engine
from ptnl.train.config import (
    CLASS_TOKEN_POSITIONS,
    FEATURE_MODES,
    LOSSES,
    NOISE_KINDS,
    PRECISIONS,
    RunConfig,
)
from ptnl.train.methods import RUN_METHODS
from ptnl.train.store import collect, is_done
from ptnl.train.sweep import grid, parse_shard, quiet, sweep, take_shard, unflatten

# The tool subcommands (name, module, help); each module has add_arguments(parser) and command(args).
TOOLS = (
    (
        "notebooks",
        schedule,
        "execute the notebooks (run: every notebook's runs trained first, in one schedule), or in place "
        "against the shipped results (refs); write their parameters cells (params)",
    ),
    (
        "cluster",
        cluster,
        "hand every notebook's pending runs to a cluster engine (submitit: Slurm, or local)",
    ),
    ("shipped", shipped, "compare a store with the shipped toy results (compare), or replace them (update)"),
    ("docs", docs, "write docs/results.md and the README's claims table from the committed notebooks"),
    ("bench", speed, "speed and memory benchmark against a plain CoOp step (build/bench.json)"),
    ("gpu-check", gpucheck, "GPU readiness with random RN50/ViT-B/32 weights (build/gpucheck.json)"),
    ("fidelity", fidelity, "how much a CLIP looks like OpenAI's where prompt tuning under noise cares"),
)
TOY_TOOLS = (
    ("pretrain", pretrain, "pretrain a toy CLIP on the toy world and write its checkpoint"),
    ("snapshots", snapshots, "the toy lab's checkpoints: the pretraining recipe saved early (notebook 09)"),
    ("sanity", sanity, "zero-shot and linear-probe accuracy of the toy CLIPs"),
)


def _scalar(text: str):
    return yaml.safe_load(text) if text.strip() else ""


def _pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v


# Help for the config flags: what a field takes, where a plain default says too little.
FIELD_HELP = {
    "dataset": "a CoOp dataset (" + ", ".join(DATASETS) + ") or a toy-* dataset",
    "pretrained": '"default", "openai", a checkpoint file, or null for random weights',
    "loss_params": "JSON, e.g. '{\"q\": 0.7}'",
    "ctx_init": "a hand-crafted context to start from, or null for a random one",
    "n_views": "views mode: augmented views per image; null = one per epoch",
    "method": "one of " + ", ".join(RUN_METHODS),
    "loss": "one of " + ", ".join(LOSSES),
    "noise_kind": "one of " + ", ".join(NOISE_KINDS),
    "confusion_from": "confusion noise only: one of " + ", ".join(CONFUSION_FROM),
    "noise_file": "noise_kind manifest: the CSV to read the training set and labels from",
    "feature_mode": "one of " + ", ".join(FEATURE_MODES),
    "class_token_position": "one of " + ", ".join(CLASS_TOKEN_POSITIONS),
    "precision": "one of " + ", ".join(PRECISIONS),
    "grad_ratio": "also record the per-epoch noisy/clean gradient-norm ratio",
}


def _field_help(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return f"required: {FIELD_HELP[f.name]}" if f.name in FIELD_HELP else "required"
    shown = f"default: {json.dumps(default, default=str)}"  # as it is typed: null, true, "RN50", {}
    text = f"{FIELD_HELP[f.name]} ({shown})" if f.name in FIELD_HELP else f"({shown})"
    return text.replace("%", "%%")  # argparse formats help strings with %


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        # Unset flags fall back to RunConfig's defaults.
        kw = dict(default=argparse.SUPPRESS, help=_field_help(f), required=required)
        if f.name == "loss_params":
            p.add_argument(flag, type=json.loads, **kw)
        elif f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            p.add_argument(flag, type=_scalar, **kw)


def _config_from_args(ns: argparse.Namespace) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    d = {k: v for k, v in vars(ns).items() if k in names}
    for k in ("dataset", "backbone", "pretrained", "ctx_init"):
        if k in d and d[k] is not None and not isinstance(d[k], str):
            d[k] = str(d[k])  # "--backbone RN50" is a string even if YAML reads it otherwise
    return RunConfig.from_dict(d)


# Options of the sweep itself, not of a run: given as --base/--set keys, they point to their flag.
SWEEP_OPTIONS = {"device": "--device", "experiment": "--experiment", "workers": "--workers",
                 "group": "--group", "group_size": "--group", "shard": "--shard"}  # fmt: skip


def _check_not_options(fields: dict, how: str) -> None:
    for key, value in fields.items():
        if key in SWEEP_OPTIONS:
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            raise ValueError(
                f"{how} {key}={shown}: {key!r} is not a RunConfig field but an option of the sweep; "
                f"use {SWEEP_OPTIONS[key]} {shown}"
            )


def _grid_from_args(ns: argparse.Namespace):
    base, axes, experiment = {}, {}, None
    if ns.grid:
        with open(ns.grid) as f:
            spec = yaml.safe_load(f) or {}
        unknown = set(spec) - {"experiment", "base", "grid"}
        if unknown:
            raise ValueError(
                f"{ns.grid}: unknown top-level keys {sorted(unknown)}; use experiment, base, grid"
            )
        experiment = spec.get("experiment")
        base = dict(spec.get("base") or {})
        axes = spec.get("grid") or {}
    for k, v in ns.base or []:
        base[k] = _scalar(v)
    if ns.set:
        if not isinstance(axes, dict):
            raise ValueError("--set cannot be combined with a grid file whose 'grid' is a list of blocks")
        axes = dict(axes)
        for k, v in ns.set:
            axes[k] = [_scalar(x) for x in v.split(",")]
    _check_not_options(base, "--base")
    _check_not_options(axes if isinstance(axes, dict) else {}, "--set")
    return grid(unflatten(base), axes or {}), ns.experiment or experiment


def _ratio_report(ns: argparse.Namespace) -> str:
    """Per-dataset drops and their ratio (``tables.drop_ratio_table``), the mean ratio's seed
    interval, and, where the experiment has zero-shot runs of the same backbone, clean
    ``--variant`` minus zero-shot with its seed interval. ``--where`` and ``--seeds`` filter the
    trained runs; zero-shot runs are the fixed baseline."""
    df = collect(ns.experiment)
    if df.empty:
        raise ValueError(f"experiment {ns.experiment!r} has no finished runs")
    zs, trained = df[df["method"] == "zeroshot"], df[df["method"] != "zeroshot"]
    for key, value in ns.where or []:
        if key not in trained.columns:
            raise ValueError(f"--where {key}=...: {key!r} is not a field of {ns.experiment!r}'s runs")
        trained = trained[trained[key] == _scalar(value)]
    if ns.seeds:
        trained = trained[trained["seed"].isin([int(s) for s in ns.seeds.split(",")])]
    if trained.empty:
        raise ValueError("no trained runs left after --where/--seeds")
    kw = dict(variant=ns.variant, reference=ns.reference)
    lines = [
        tables.show_table(tables.drop_ratio_table(tables.summarize(trained), **kw)),
        stats.show_interval(stats.drop_ratio_interval(trained, **kw)),
    ]
    zs = zs[zs["backbone"].isin(trained["backbone"].unique())]
    if not zs.empty:
        gap = stats.gap_interval(pd.concat([trained, zs], ignore_index=True), variant=ns.variant)
        lines.append(f"clean {ns.variant} - zero-shot: " + stats.show_interval(gap))
    return "\n".join(lines)


def _run(ns: argparse.Namespace) -> None:
    cfg = _config_from_args(ns)
    start = time.time()
    try:
        metrics = engine.run(cfg, ns.experiment, device=ns.device, progress=not quiet())
    except KeyboardInterrupt:
        print(
            f"\ninterrupted after {time.time() - start:.0f}s: {int(is_done(cfg, ns.experiment))}/1 "
            "runs done; run the same command again to resume"
        )
        raise
    print(json.dumps({"run_id": cfg.run_id, **metrics}, indent=2, default=str))


def _sweep(ns: argparse.Namespace) -> None:
    configs, experiment = _grid_from_args(ns)
    if not experiment:
        raise ValueError("name the experiment: --experiment NAME or 'experiment:' in the grid file")
    if not configs:
        raise ValueError("the grid is empty: give --grid FILE and/or --set key=v1,v2")
    shard = parse_shard(ns.shard) if ns.shard else None
    if ns.dry_run:
        for c in take_shard(configs, shard):
            print(c.run_id, c.canonical_json())
        return
    sweep(configs, experiment, shard=shard, group_size=ns.group, device=ns.device, workers=ns.workers)


def _noise_export(ns: argparse.Namespace) -> None:
    cfg = _config_from_args(ns)
    path = engine.export_manifest(cfg, ns.out, device=ns.device)
    print(f"wrote the noise manifest of run {cfg.run_id} to {path}")


def _collect(ns: argparse.Namespace) -> None:
    df = collect(ns.experiment)
    if ns.csv:
        df.to_csv(ns.csv, index=False)
        print(f"wrote {len(df)} runs to {ns.csv}")
    else:
        print(df.to_string(max_colwidth=40))


def _ratio(ns: argparse.Namespace) -> None:
    print(_ratio_report(ns))


def _store_command(fn):
    """A run-store subcommand as ``command(args) -> int``: bad input is one ``error:`` line and
    exit 2, Ctrl-C exit 130 (the resume line is printed; no traceback)."""

    def command(ns: argparse.Namespace) -> int:
        try:
            fn(ns)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        return 0

    return command


def _plan(ns: argparse.Namespace) -> int:
    try:
        set_files, overrides = notebooks.read_overrides(ns.param, ns.parameters_file)
        notebooks.check_names(overrides, notebooks.declared_anywhere(), "override", "any notebook")
        plan([ns.set, *set_files] if set_files else ns.set, overrides)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _add_tool(sub, name: str, module, help: str) -> None:
    p = sub.add_parser(name, help=help)
    module.add_arguments(p)
    # a tool's own usage errors (a bad combination of flags) print this parser's usage, exit 2
    p.set_defaults(command=module.command, usage_error=p.error)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ptnl", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p_run = sub.add_parser("run", help="train and evaluate one config (skipped if already done)")
    p_run.add_argument("--experiment", required=True, help="results/<experiment>/ folder")
    p_run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    _add_config_flags(p_run)
    p_run.set_defaults(command=_store_command(_run))

    p_sw = sub.add_parser("sweep", help="run a grid of configs (resumable, shardable)")
    p_sw.add_argument(
        "--experiment", default=None, help="results/<experiment>/ (or 'experiment:' in the grid file)"
    )
    p_sw.add_argument("--grid", default=None, help="YAML file with base: and grid:")
    p_sw.add_argument("--base", action="append", type=_pair, metavar="KEY=V", help="fixed field (repeatable)")
    p_sw.add_argument(
        "--set", action="append", type=_pair, metavar="KEY=V1,V2", help="grid axis (repeatable)"
    )
    p_sw.add_argument("--shard", default=None, help="i/n: run every n-th config starting at i (0-based)")
    p_sw.add_argument(
        "--group", type=int, default=1, help="train up to this many prompt runs in one batched pass"
    )
    p_sw.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p_sw.add_argument(
        "--workers", type=int, default=1, help="processes training batches side by side (same numbers)"
    )
    p_sw.add_argument("--dry-run", action="store_true", help="list the runs only")
    p_sw.set_defaults(command=_store_command(_sweep))

    p_no = sub.add_parser("noise", help="a run's noisy training set as a file another code base reads")
    noise_sub = p_no.add_subparsers(dest="noise_cmd", required=True)
    p_ex = noise_sub.add_parser(
        "export", help="write a config's noise manifest (sample_id,image_path,true_label,given_label)"
    )
    p_ex.add_argument("--out", required=True, help="the CSV file to write")
    p_ex.add_argument("--device", default=None, help="cpu, cuda (confusion noise reads zero-shot CLIP)")
    _add_config_flags(p_ex)
    p_ex.set_defaults(command=_store_command(_noise_export))

    p_co = sub.add_parser("collect", help="print (or save) one table of an experiment's finished runs")
    p_co.add_argument("experiment")
    p_co.add_argument("--csv", default=None, help="write the table to this CSV file")
    p_co.set_defaults(command=_store_command(_collect))

    p_ra = sub.add_parser(
        "ratio", help="the core claim on an experiment's runs: drops, their ratio, seed intervals"
    )
    p_ra.add_argument("experiment")
    p_ra.add_argument(
        "--where", action="append", type=_pair, metavar="KEY=V", help="keep trained runs with KEY == V"
    )
    p_ra.add_argument("--seeds", default=None, help="comma-separated seeds to keep, e.g. 1,2,3")
    p_ra.add_argument("--variant", default="prompt", help="the method whose drop is compared")
    p_ra.add_argument("--reference", default="classifier_r", help="the method it is compared with")
    p_ra.set_defaults(command=_store_command(_ratio))

    p_pl = sub.add_parser(
        "plan",
        help="print what a parameter set's notebooks will run, what is done, what is missing on disk",
        description="Print what the notebooks of a parameter set will run.",
    )
    p_pl.add_argument("--set", default="paper", help=notebooks.SET_HELP.format(default="paper"))
    notebooks.add_param_option(p_pl)
    notebooks.add_file_option(p_pl, notebooks.FILE_HELP)
    p_pl.set_defaults(command=_plan)

    for name, module, help in TOOLS:
        _add_tool(sub, name, module, help)
    toy = sub.add_parser("toy", help="the toy CLIPs: pretrain one, or check the shipped ones")
    toy_sub = toy.add_subparsers(dest="toy_cmd", required=True)
    for name, module, help in TOY_TOOLS:
        _add_tool(toy_sub, name, module, help)
    return ap


def main(argv=None) -> int:
    ns = parser().parse_args(argv)
    return ns.command(ns)


def terminate(signum, frame):
    # SIGTERM (a cluster's time limit, kill) unwinds like Ctrl-C, so claims are released.
    raise KeyboardInterrupt
