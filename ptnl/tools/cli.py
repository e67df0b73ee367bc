"""Command line: the same runs and sweeps as the notebooks, for scripting on clusters.

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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import yaml

from ptnl.train.config import (
    CLASS_TOKEN_POSITIONS,
    CONFUSION_FROM,
    FEATURE_MODES,
    LOSSES,
    METHODS,
    NOISE_KINDS,
    PRECISIONS,
    REAL_DATASETS,
    RunConfig,
)
from ptnl.train.sweep import grid, parse_shard, quiet, sweep, unflatten


def _scalar(text: str):
    return yaml.safe_load(text) if text.strip() else ""


def _pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v


# Help for the config flags: what a field takes, where a plain default says too little.
FIELD_HELP = {
    "dataset": "a CoOp dataset (" + ", ".join(REAL_DATASETS) + ") or a toy-* dataset",
    "pretrained": '"default", "openai", a checkpoint file, or null for random weights',
    "loss_params": "JSON, e.g. '{\"q\": 0.7}'",
    "ctx_init": "a hand-crafted context to start from, or null for a random one",
    "n_views": "views mode: augmented views per image; null = one per epoch",
    "method": "one of " + ", ".join(METHODS),
    "loss": "one of " + ", ".join(LOSSES),
    "noise_kind": "one of " + ", ".join(NOISE_KINDS),
    "confusion_from": "confusion noise only: one of " + ", ".join(CONFUSION_FROM),
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
    return grid(unflatten(base), axes or {}), ns.experiment or experiment


def _ratio_report(ns: argparse.Namespace) -> str:
    """Per-dataset drops and their ratio (``claims.drop_ratio_table``), the mean ratio's seed
    interval, and, where the experiment has zero-shot runs of the same backbone, clean
    ``--variant`` minus zero-shot with its seed interval. ``--where`` and ``--seeds`` filter the
    trained runs; zero-shot runs are the fixed baseline."""
    import pandas as pd

    from ptnl.core.store import collect
    from ptnl.report import claims

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
        claims.show_table(claims.drop_ratio_table(claims.summarize(trained), **kw)),
        claims.show_interval(claims.drop_ratio_interval(trained, **kw)),
    ]
    zs = zs[zs["backbone"].isin(trained["backbone"].unique())]
    if not zs.empty:
        gap = claims.gap_interval(pd.concat([trained, zs], ignore_index=True), variant=ns.variant)
        lines.append(f"clean {ns.variant} - zero-shot: " + claims.show_interval(gap))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptnl", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p_run = sub.add_parser("run", help="train and evaluate one config (skipped if already done)")
    p_run.add_argument("--experiment", required=True, help="results/<experiment>/ folder")
    p_run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    _add_config_flags(p_run)

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
    p_sw.add_argument("--dry-run", action="store_true", help="list the runs only")

    p_co = sub.add_parser("collect", help="print (or save) one table of an experiment's finished runs")
    p_co.add_argument("experiment")
    p_co.add_argument("--csv", default=None, help="write the table to this CSV file")

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

    ns = ap.parse_args(argv)
    try:
        if ns.cmd == "run":
            from ptnl.train import engine

            cfg = _config_from_args(ns)
            start = time.time()
            try:
                metrics = engine.run(cfg, ns.experiment, device=ns.device, progress=not quiet())
            except KeyboardInterrupt:
                from ptnl.core.store import is_done

                print(
                    f"\ninterrupted after {time.time() - start:.0f}s: {int(is_done(cfg, ns.experiment))}/1 "
                    "runs done; run the same command again to resume"
                )
                raise
            print(json.dumps({"run_id": cfg.run_id, **metrics}, indent=2, default=str))
        elif ns.cmd == "sweep":
            configs, experiment = _grid_from_args(ns)
            if not experiment:
                raise ValueError("name the experiment: --experiment NAME or 'experiment:' in the grid file")
            if not configs:
                raise ValueError("the grid is empty: give --grid FILE and/or --set key=v1,v2")
            shard = parse_shard(ns.shard) if ns.shard else None
            if ns.dry_run:
                from ptnl.train.sweep import take_shard

                for c in take_shard(configs, shard):
                    print(c.run_id, c.canonical_json())
                return 0
            sweep(configs, experiment, shard=shard, group_size=ns.group, device=ns.device)
        elif ns.cmd == "ratio":
            print(_ratio_report(ns))
        else:
            from ptnl.core.store import collect

            df = collect(ns.experiment)
            if ns.csv:
                df.to_csv(ns.csv, index=False)
                print(f"wrote {len(df)} runs to {ns.csv}")
            else:
                print(df.to_string(max_colwidth=40))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the resume line is printed; no traceback
        return 130
    return 0


def terminate(signum, frame):
    # SIGTERM (a cluster's time limit, kill) unwinds like Ctrl-C, so claims are released.
    raise KeyboardInterrupt
