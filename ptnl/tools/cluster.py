"""The schedule's batches handed to a cluster engine: submitit's Slurm executor (or its local one).

The paper set (about 2,400 runs on RN50 and ViT-B/32) outgrows one GPU box. ``submit`` plans
every notebook's runs as ``ptnl.tools.schedule`` does (the batches each notebook's own sweep
forms, so the same numbers), deals them longest first over ``jobs`` array tasks, and submits the
array; each task trains its batches into the shared store under the store's claims, so a run two
tasks (or a task and a notebook) reach is trained once, and a resubmitted array skips every run
that is done. When the array has finished, ``make paper`` (``notebooks run``) executes the
notebooks on the filled store.

    python -m ptnl cluster --set paper --executor slurm --jobs 16 --slurm partition=gpu gpus_per_node=1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptnl.core import paths
from ptnl.tools import cells, notebooks, schedule

EXECUTORS = ("slurm", "local")


def shards(batches: list, jobs: int) -> list[list]:
    """``batches`` longest first, dealt round-robin over ``jobs`` shards (empty shards dropped)."""
    order = sorted(batches, key=lambda b: -b.seconds)
    return [s for s in (order[i::jobs] for i in range(jobs)) if s]


def train_shard(batches: list) -> int:
    """One array task: its batches, each under the store's claims. Returns the runs it saw."""
    for b in batches:
        schedule.train_batch(b)
    return sum(len(b.configs) for b in batches)


def submit(
    notebook_paths,
    param_set,
    overrides: dict | None = None,
    jobs: int = 8,
    executor: str = "slurm",
    folder: Path | None = None,
    parameters: dict | None = None,
    wait: bool = False,
):
    """Submit every pending run of the notebooks as one job array of at most ``jobs`` tasks;
    ``parameters``: the executor's (submitit's ``update_parameters``, e.g. ``slurm_partition``,
    ``gpus_per_node``, ``timeout_min``). Returns the jobs (``wait``: their results)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1 (array tasks), got {jobs}")
    import submitit

    todo = shards(schedule.batches(notebook_paths, param_set, overrides), jobs)
    if not todo:
        return []
    folder = Path(folder or paths.build_dir() / "submitit")
    ex = submitit.AutoExecutor(folder=folder, cluster=executor)
    ex.update_parameters(**(parameters or {}))
    out = ex.map_array(train_shard, todo)
    return [j.result() for j in out] if wait else out


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.description = __doc__.split("\n\n")[0]
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every companion notebook")
    ap.add_argument("--set", default="paper", help=notebooks.SET_HELP.format(default="paper"))
    notebooks.add_param_option(ap)
    notebooks.add_file_option(ap, notebooks.FILE_HELP)
    ap.add_argument("--executor", default="slurm", choices=EXECUTORS)
    ap.add_argument("--jobs", type=int, default=8, help="array tasks the batches are dealt over")
    ap.add_argument("--folder", type=Path, default=None, help="submitit's logs (default: build/submitit)")
    ap.add_argument(
        "--executor-parameter",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="submitit's update_parameters, e.g. slurm_partition=gpu gpus_per_node=1 timeout_min=600",
    )
    ap.add_argument("--wait", action="store_true", help="wait for every task and report its runs")


def command(ns: argparse.Namespace) -> int:
    try:
        set_files, overrides = notebooks.read_overrides(ns.param, ns.parameters_file)
        sets = [ns.set, *set_files] if set_files else ns.set
        params = {}
        for item in ns.executor_parameter:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ValueError(
                    f"executor parameters are NAME=VALUE (e.g. slurm_partition=gpu), got {item!r}"
                )
            params[name] = _value(value)
        nbs = ns.notebooks or cells.companion_notebooks()
        out = submit(nbs, sets, overrides, ns.jobs, ns.executor, ns.folder, params, ns.wait)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not out:
        print("nothing to train: every run of these notebooks is done")
    elif ns.wait:
        print(f"{len(out)} tasks trained {sum(out)} runs")
    else:
        print(
            f"submitted {len(out)} tasks ({', '.join(str(j.job_id) for j in out[:3])}{' ...' if len(out) > 3 else ''})"
        )
    return 0
