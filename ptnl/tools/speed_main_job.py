"""The toy set's main job in the speed benchmark (``python -m ptnl bench``, section ``main_job``):
what one schedule and less work per step save, as ratios against today's code paths measured in
the same run.

- ``schedule``: the main job's critical path over the workers, from the shipped runs' own
  per-method times (``ptnl.tools.plan``'s fit): the notebooks executed in turn, each sweeping its
  own batches (every notebook ends when its last batch does), against one schedule of every
  notebook's batches, longest first (``ptnl.tools.schedule``). Greedy list scheduling, as the
  workers take units.
- ``methods``: warm seconds per run of one representative toy config per method family, trained
  here, with the engine as it is against today's paths: every cache file read anew each run
  (``features.MEMO_BYTES = 0``) and the last text block run over every position
  (``text.LAST_BLOCK_AT_EOT = False``). Runs per core-minute both ways.
"""

from __future__ import annotations

import heapq
import time

from ptnl.models import text
from ptnl.sections.common import config
from ptnl.tools import notebooks, schedule
from ptnl.train import engine
from ptnl.train import features as F

# One config per family (toy-fine: the toy set's largest task in notebooks 02-08), its group the
# size the toy set trains it with; fewer epochs than the recipe (a ratio needs no more).
CASES = (
    ("prompt", "prompt", 8),
    ("cls_tuning", "cls_tuning", 8),
    ("classifier_r", "classifier_r", 1),
    ("tenc_ft", "tenc_ft", 1),
    ("linear_probe", "linear_probe", 1),
    ("nlprompt", "nlprompt", 1),
    ("visual_ft", "visual_ft", 1),
)
EPOCHS = 10
REPEATS = 2


def makespan(seconds: list[float], workers: int) -> float:
    """When the last of ``seconds`` (in the order given) ends, ``workers`` taking them in turn."""
    free = [0.0] * workers
    for s in seconds:
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free) if seconds else 0.0


def schedule_ratio(param_set: str = "toy", workers: int = 2) -> dict:
    bs = schedule.batches(notebooks.committed_notebooks(), param_set, pending=False)
    in_turn = 0.0
    for nb in dict.fromkeys(b.notebook for b in bs):
        in_turn += makespan([b.seconds for b in bs if b.notebook == nb], workers)
    one = makespan(sorted((b.seconds for b in bs), reverse=True), workers)
    work = sum(b.seconds for b in bs)
    return {
        "runs": sum(len(b.configs) for b in bs),
        "batches": len(bs),
        "work_s": work,
        "notebooks_in_turn_s": in_turn,
        "one_schedule_s": one,
        "ratio": in_turn / one if one else float("nan"),
        "bound_s": work / workers,
    }


def _time(configs, seeds) -> float:
    t = time.perf_counter()
    for s in seeds:
        group = [c.replace(seed=s * 100 + k) for k, c in enumerate(configs)]
        engine.train([engine.prepare(c) for c in group])
    return (time.perf_counter() - t) / (len(seeds) * len(configs))


def method_times() -> list[dict]:
    rows = []
    for name, method, group in CASES:
        rates = (0.0, 0.125, 0.25, 0.5) * 2
        configs = [
            config("toy-fine", "toy-rn", method, noise_rate=rates[k], epochs=EPOCHS, feature_mode="views")
            for k in range(group)
        ]
        _time(configs, [1])  # warm: the cache files exist, the backbone is loaded
        now = _time(configs, range(2, 2 + REPEATS))
        memo, eot = F.MEMO_BYTES, text.LAST_BLOCK_AT_EOT
        try:
            F.MEMO_BYTES, text.LAST_BLOCK_AT_EOT = 0, False
            today = _time(configs, range(2, 2 + REPEATS))
        finally:
            F.MEMO_BYTES, text.LAST_BLOCK_AT_EOT = memo, eot
        rows.append(
            {
                "method": name,
                "group": group,
                "epochs": EPOCHS,
                "s_per_run": now,
                "s_per_run_today": today,
                "ratio": today / now,
                "runs_per_core_min": 60 / now,
                "runs_per_core_min_today": 60 / today,
            }
        )
    return rows


def main_job() -> dict:
    return {"schedule": schedule_ratio(), "methods": method_times()}


def markdown(res: dict) -> str:
    s = res["schedule"]
    lines = [
        "### The toy set's main job",
        "",
        f"Critical path over 2 workers, estimated from the shipped runs' times ({s['runs']} runs, "
        f"{s['batches']} batches, {s['work_s']:.0f} s of work, bound {s['bound_s']:.0f} s): notebooks in "
        f"turn {s['notebooks_in_turn_s']:.0f} s, one schedule {s['one_schedule_s']:.0f} s, "
        f"**{s['ratio']:.2f}x**.",
        "",
        "| method | group | s/run | s/run today | today / now | runs per core-minute |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["methods"]:
        lines.append(
            f"| {r['method']} | {r['group']} | {r['s_per_run']:.3f} | {r['s_per_run_today']:.3f} | "
            f"{r['ratio']:.2f}x | {r['runs_per_core_min']:.0f} |"
        )
    return "\n".join(lines)
