"""One schedule for every run of a parameter set's notebooks, before any notebook executes.

Executed one after another, each notebook sweeps its own runs, so every notebook ends with a tail
where one worker waits for the other. Here every notebook's runs are planned first, formed into
the batches its own sweep would form (the same runs trained together, in the same groups: so the
numbers are the same as the notebooks' own sweeps give), and trained longest first over the
workers into the store; the notebooks then execute on the filled store with nothing left to train.

A run two notebooks share is planned once, in the batch of the first notebook that asks for it,
exactly as executing the notebooks in order would train it. Batches are ordered by their
estimated time (``ptnl.tools.plan``'s per-method fit to the shipped runs' own times; unknown
methods count as long), so the long ones start first and the short ones fill the tail.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ptnl.tools import cells, notebooks, plan
from ptnl.train import store, sweep
from ptnl.train.config import RunConfig
from ptnl.train.workers import check_workers, run_units

UNKNOWN_SECONDS = 60.0  # a batch of a method the shipped runs never timed: scheduled early


@dataclass(frozen=True)
class Batch:
    notebook: str
    experiment: str
    device: str | None
    configs: tuple[RunConfig, ...]
    seconds: float  # estimated


def batches(notebook_paths, param_set, overrides: dict | None = None, pending: bool = True) -> list[Batch]:
    """Every pending run of the notebooks (``pending=False``: every run, as from an empty store),
    in the batches their sweeps form, in notebook order."""
    model = plan.cost_model()
    seen, out = set(), []
    for nb in notebook_paths:
        nb = Path(nb).resolve()
        section = notebooks.section_of(nb)
        if section is None:
            continue  # not a companion notebook: it trains what it trains when it runs
        params = plan.notebook_params(nb, param_set)
        declared = notebooks.notebook_parameters(nb)
        params.update({k: v for k, v in (overrides or {}).items() if k in declared})
        experiment = params.get("experiment", "default")
        todo = []
        for c in section.build(params):
            key = (experiment, c.run_id)
            if key not in seen and not (pending and store.is_done(c, experiment)):
                seen.add(key)
                todo.append(c)
        for group in sweep.batches(todo, section.sweep_group_size(params)):
            est = plan.estimate_seconds(group, model)
            seconds = est["total"] + UNKNOWN_SECONDS * (len(group) - est["runs"])
            out.append(Batch(nb.stem, experiment, params.get("device"), tuple(group), seconds))
    return out


def train_batch(batch: Batch) -> None:
    """Train one batch's runs that are not done, each under its claim (``sweep.train_batch``)."""
    sweep.train_batch(list(batch.configs), batch.experiment, device=batch.device)


def train(notebook_paths, param_set, overrides: dict | None = None, workers: int = 1) -> dict:
    """Train every pending run of the notebooks, longest batch first, in ``workers`` processes.
    Returns what it did: runs, batches, seconds."""
    check_workers(workers)
    todo = sorted(batches(notebook_paths, param_set, overrides), key=lambda b: -b.seconds)
    n = sum(len(b.configs) for b in todo)
    t0 = time.perf_counter()
    bar = tqdm(total=n, desc="every notebook's runs", unit="run", disable=sweep.quiet(True))
    try:
        run_units(train_batch, todo, workers, done=lambda b: bar.update(len(b.configs)))
    finally:
        bar.close()
    missing = [c for b in todo for c in b.configs if not store.is_done(c, b.experiment)]
    for b in todo:  # held by another process: wait for it (or train it here if it died)
        left = [c for c in b.configs if not store.is_done(c, b.experiment)]
        if left:
            sweep.sweep(left, b.experiment, group_size=len(left), device=b.device, progress=False)
    if missing:
        print(f"{len(missing)} run(s) were trained by another process", file=sys.stderr)
    return {"runs": n, "batches": len(todo), "seconds": time.perf_counter() - t0}


# -- python -m ptnl notebooks ---------------------------------------------------------------------


def add_arguments(ap) -> None:
    """``python -m ptnl notebooks``: ``ptnl.tools.notebooks``'s subcommands, ``run`` scheduling
    every notebook's runs first (``--no-schedule``: each notebook sweeps its own, in turn)."""
    notebooks.add_arguments(ap)["run"].add_argument(
        "--no-schedule",
        dest="schedule",
        action="store_false",
        help="train each notebook's runs as it executes, not every notebook's runs first",
    )


def command(args) -> int:
    """``python -m ptnl notebooks``: ``params`` writes the cells (``ptnl.tools.cells``); ``run``
    trains every notebook's runs first, then executes them (``ptnl.tools.notebooks``), and says
    how the wall time divides."""
    if args.notebooks_cmd == "params":
        return cells.params_command(args.notebooks, args.check)
    if args.notebooks_cmd != "run" or not args.schedule or _no_train():
        return notebooks.command(args)
    trained = {}

    def train_first(paths_, sets, overrides):
        t0 = time.perf_counter()
        workers = max(int(plan.notebook_params(nb.resolve(), sets).get("workers", 1)) for nb in paths_)
        done = train(paths_, sets, overrides, workers)
        trained["s"] = time.perf_counter() - t0
        print(
            f"trained {done['runs']} runs in {done['batches']} batches on {workers} workers: {trained['s']:.0f} s"
        )

    t0 = time.perf_counter()
    status = notebooks.command(args, before_run=train_first)
    total = time.perf_counter() - t0
    if "s" in trained and total > 0:
        executed = total - trained["s"]
        print(
            f"wall time {int(total // 60)} min {total % 60:.0f} s: training every notebook's runs {trained['s']:.0f} s "
            f"({100 * trained['s'] / total:.0f} %), executing the notebooks {executed:.0f} s ({100 * executed / total:.0f} %)"
        )
    return status


def _no_train() -> bool:
    import os

    return bool(os.environ.get("PTNL_NO_TRAIN"))
