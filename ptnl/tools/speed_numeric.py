"""The pinned numeric path's cost (``make bench``'s numeric-path table): one whole toy run per
path, each in its own subprocess with an empty feature cache, timed over alternating rounds, and
its metrics compared bit for bit with the pinned path's (``ptnl.core.numerics``).

In ``make bench`` (section ``numeric_path`` of the JSON; off with
``--no-numeric-path`` and under ``--smoke``): one whole toy run (``NUMERIC_CASE``: prompt tuning
on toy-shapes with toy-rn's shipped checkpoint, 50% noise, views mode) trained from an empty feature
cache in its own subprocess once per path of ``NUMERIC_PATHS``: ``pinned`` (``ptnl.core.numerics``,
the default), ``native`` (each library's own kernels and thread count: the switches removed from
the environment) and ``native-1thread`` (own kernels, one thread: what the kernels alone cost). The
paths alternate over ``--numeric-repeats`` rounds and each one's best time counts (the one least
disturbed by other load); reported: the pinned path's time over each other's, and whether their
metrics are bit-identical to the pinned path's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ptnl.core import numerics
from ptnl.tools.shipped import PROVENANCE
from ptnl.train.config import RunConfig

NUMERIC_CASE = {
    "dataset": "toy-shapes",
    "backbone": "toy-rn",
    "method": "prompt",
    "noise_rate": 0.5,
    "shots": 16,
    "feature_mode": "views",
    "seed": 1,
}
NUMERIC_EPOCHS = 10
NUMERIC_REPEATS = 3
NUMERIC_PATHS = ("pinned", "native", "native-1thread")


def numeric_env(path: str, cache: str | Path) -> dict[str, str]:
    """The environment of a ``path`` worker: this one without any of the pinned path's switches
    (so ``native`` is each library's default), then the path's own, and an empty feature cache."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED}
    env.update(PTNL_CACHE=str(cache), TQDM_DISABLE="1")
    env[numerics.PATH_VAR] = "pinned" if path == "pinned" else "native"
    if path == "native-1thread":
        env.update(numerics.THREADS)
    return env


def measure_numeric(epochs: int) -> dict:
    """Train and evaluate ``NUMERIC_CASE`` for ``epochs`` on the CPU, in this process (whose
    numeric path was set when ``ptnl`` was imported): its time, path and metrics."""
    from ptnl.train.engine import train_and_evaluate

    m = train_and_evaluate(RunConfig(**NUMERIC_CASE, epochs=epochs), "cpu")
    return {
        "seconds": m["seconds"],
        "numeric_path": m["numeric_path"],
        "metrics": {k: v for k, v in m.items() if k not in PROVENANCE},
    }


def _numeric_worker(path: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ptnl-speed-numeric-") as cache:
        cmd = [sys.executable, "-m", "ptnl", "bench", "--numeric-worker", str(epochs)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=numeric_env(path, cache))
    if res.returncode != 0:
        raise RuntimeError(f"numeric-path worker {path} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _max_abs_diff(a, b) -> float:
    """Largest |a - b| over the numbers (and lists of numbers) two metrics dicts share."""
    diffs = [0.0]
    for k in a.keys() & b.keys():
        x, y = a[k], b[k]
        if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            with contextlib.suppress(TypeError, ValueError):
                diffs.append(float(np.max(np.abs(np.subtract(x, y)))) if x else 0.0)
        elif isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
            diffs.append(abs(float(x) - float(y)))
    return max(diffs)


def numeric_path_cost(epochs: int = NUMERIC_EPOCHS, repeats: int = NUMERIC_REPEATS, log=True) -> dict:
    """Time ``NUMERIC_CASE`` on every path of ``NUMERIC_PATHS``, ``repeats`` rounds in alternating
    order, and compare: the pinned path's best time over each path's, and whether the metrics are
    bit-identical to the pinned path's (and the pinned path's to itself across rounds)."""
    got = {p: [] for p in NUMERIC_PATHS}
    for i in range(repeats):
        for path in NUMERIC_PATHS if i % 2 == 0 else NUMERIC_PATHS[::-1]:
            got[path].append(w := _numeric_worker(path, epochs))
            if log:
                print(f"  numeric path {path:15s} {w['seconds']:.2f} s/run", file=sys.stderr)
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    pinned = got["pinned"][0]["metrics"]
    out = {"case": {**NUMERIC_CASE, "epochs": epochs}, "repeats": repeats, "paths": {}}
    for path, ws in got.items():
        best = min(w["seconds"] for w in ws)
        where = ws[0]["numeric_path"]
        out["paths"][path] = {
            "seconds": [w["seconds"] for w in ws],
            "best_s": best,
            "threads": where["threads"],
            "aten_cpu_capability": where["aten_cpu_capability"],
            "path": where["path"],
            "repeatable": all(same(w["metrics"], ws[0]["metrics"]) for w in ws),
            "identical_to_pinned": same(ws[0]["metrics"], pinned),
            "max_abs_diff_vs_pinned": _max_abs_diff(ws[0]["metrics"], pinned),
            "test_acc": ws[0]["metrics"].get("test_acc"),
        }
    for r in out["paths"].values():
        r["pinned_over_this"] = out["paths"]["pinned"]["best_s"] / r["best_s"]
    out["cpu"] = got["pinned"][0]["numeric_path"]["cpu"]
    out["pinned_over_native"] = out["paths"]["native"]["pinned_over_this"]  # the cost of pinning
    return out


def numeric_markdown(res: dict) -> str:
    c = res["case"]
    lines = [
        f"Numeric path: one {c['method']} run, {c['backbone']} on {c['dataset']}, {c['noise_rate']:g} noise, "
        f"{c['epochs']} epochs, on {res['cpu']}; best of {res['repeats']}, each in its own process. "
        f"The pinned path takes {res['pinned_over_native']:.2f}x the native path's time.",
        "",
        "| path | threads | ATen kernels | s/run (best) | pinned / this | metrics vs pinned |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in res["paths"].items():
        if name == "pinned":
            verdict = "the reference" + ("" if r["repeatable"] else "; NOT repeatable")
        elif r["identical_to_pinned"]:
            verdict = "bit-identical"
        else:
            verdict = (
                f"differ: max |diff| {r['max_abs_diff_vs_pinned']:.1e}; test acc {r['test_acc']:.4f} "
                f"(pinned {res['paths']['pinned']['test_acc']:.4f})"
            )
        lines.append(
            f"| {name} | {r['threads']} | {r['aten_cpu_capability']} | {r['best_s']:.2f} "
            f"| {r['pinned_over_this']:.2f}x | {verdict} |"
        )
    return "\n".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``python -m ptnl bench``'s options for the numeric path's cost."""
    ap.add_argument(
        "--no-numeric-path",
        dest="numeric_path",
        action="store_false",
        help="skip the numeric path's cost (a toy run per path; on by default, off with --smoke)",
    )
    ap.add_argument("--numeric-epochs", type=int, default=NUMERIC_EPOCHS, help="epochs of that toy run")
    ap.add_argument("--numeric-repeats", type=int, default=NUMERIC_REPEATS, help="rounds over the paths")
    ap.add_argument("--numeric-worker", metavar="EPOCHS", type=int, help=argparse.SUPPRESS)
