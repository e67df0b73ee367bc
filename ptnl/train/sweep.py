"""Sweeps: a grid of RunConfigs, run one by one (or in batched groups) into the run store.

A sweep is resumable by construction: every finished run has its ``done`` marker, so rerunning
the same command skips them, and Ctrl-C or a killed process loses at most the run in flight.
Runs are claimed one by one in the store, so two processes sweeping the same grid split it
between them without training any run twice.

``shard=(i, n)`` keeps every n-th pending-or-done run starting at i (0-based), in grid order, so
n processes (or GPUs) given the same grid and shards 0/n ... (n-1)/n split it without talking
to each other. ``workers=n`` trains the batches in n processes of this machine
(``ptnl.train.workers``): the batches are the ones a one-process sweep forms, so the numbers do
not depend on it.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from ptnl.train import engine, store
from ptnl.train.config import RunConfig
from ptnl.train.engine import group_key, groupable
from ptnl.train.workers import check_workers, run_units


def unflatten(d: Mapping[str, Any]) -> dict[str, Any]:
    """``{"loss_params.q": 0.7}`` -> ``{"loss_params": {"q": 0.7}}`` (dotted keys from the CLI/YAML)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        head, _, rest = k.partition(".")
        if rest:
            out.setdefault(head, {})
            if not isinstance(out[head], dict):
                raise ValueError(f"key {k!r} sets a field of {head!r}, which is not a dict")
            out[head][rest] = v
        else:
            if isinstance(v, dict) and isinstance(out.get(head), dict):
                out[head] = {**out[head], **v}
            else:
                out[head] = v
    return out


def grid(
    base: Mapping[str, Any], axes: Mapping[str, Sequence] | Sequence[Mapping[str, Sequence]]
) -> list[RunConfig]:
    """Cartesian product of ``axes`` over ``base`` (a list of axes dicts = union of products).

    ``grid({"dataset": "toy-shapes"}, {"noise_rate": [0, 0.5], "seed": [1, 2]})`` -> 4 configs,
    the last axis varying fastest. Duplicates (same run id) are dropped, order kept.
    """
    blocks = [axes] if isinstance(axes, Mapping) else list(axes)
    out, seen = [], set()
    for block in blocks:
        keys = list(block)
        for k in keys:
            if isinstance(block[k], str | bytes) or not isinstance(block[k], Sequence):
                raise ValueError(f"grid axis {k!r} must be a list of values, got {block[k]!r}")
        for values in itertools.product(*(block[k] for k in keys)):
            cfg = RunConfig.from_dict(unflatten({**base, **dict(zip(keys, values))}))
            if cfg.run_id not in seen:
                seen.add(cfg.run_id)
                out.append(cfg)
    return out


def quiet(progress: bool = True) -> bool:
    """True when bars should be off: asked for, or TQDM_DISABLE set (tqdm itself only reads the
    variable once, when it is first imported)."""
    return not progress or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def parse_shard(text: str) -> tuple[int, int]:
    """ "i/n" -> (i, n), 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like 'i/n' with 0 <= i < n (e.g. '0/4'), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= i < n (shards are numbered 0..n-1)")
    return i, n


def take_shard(configs: Sequence[RunConfig], shard: tuple[int, int] | None) -> list[RunConfig]:
    if shard is None:
        return list(configs)
    i, n = shard
    return list(configs)[i::n]


def batches(configs: list[RunConfig], group_size: int) -> list[list[RunConfig]]:
    """The units a sweep trains: groupable runs with equal ``group_key`` ``group_size`` at a time,
    in order of their first run, every other run alone."""
    if group_size <= 1:
        return [[c] for c in configs]
    out, pending = [], {}
    for c in configs:
        if not groupable(c):
            out.append([c])
            continue
        bucket = pending.setdefault(group_key(c), [])
        bucket.append(c)
        if len(bucket) == group_size:
            out.append(pending.pop(group_key(c)))
    out.extend(pending.values())
    return out


def train_batch(batch: list[RunConfig], experiment: str, device=None) -> None:
    """Train the runs of one batch that no other process holds and that are not done yet (their
    claims are taken once, here; runs held elsewhere are left to the sweep's wait at the end)."""
    engine.claimed(
        batch,
        experiment,
        functools.partial(engine.train_configs, experiment=experiment, device=device),
        wait=False,
    )


def sweep(
    configs: Iterable[RunConfig],
    experiment: str,
    shard: tuple[int, int] | str | None = None,
    group_size: int = 1,
    device=None,
    progress: bool = True,
    workers: int = 1,
) -> list[dict]:
    """Run every config of this shard that is not done yet; returns all of the shard's metrics.

    ``group_size > 1`` trains groupable prompt-tuning runs (same backbone, dataset, method,
    shots, ... ; different seeds, noise, losses) ``group_size`` at a time in one batched text
    pass. The progress bar counts pending runs only, so its ETA is the time left.

    ``workers > 1`` trains the batches in that many processes, each at this process's thread
    count (``ptnl.train.workers``; the numbers are the same as with one). Each run is trained
    under its claim (``store``), so sweeps of one experiment may run side by side: runs another
    live process holds are skipped, then waited for at the end (and trained here if that
    process dies), so the metrics returned are complete.
    """
    if isinstance(shard, str):
        shard = parse_shard(shard)
    store.clean(experiment)
    mine = take_shard(list(configs), shard)
    pending = [c for c in mine if not store.is_done(c, experiment)]
    label = f"{experiment}" + (f" [{shard[0]}/{shard[1]}]" if shard else "")
    bar = tqdm(total=len(pending), desc=label, unit="run", disable=quiet(progress))
    counted = set()

    def tick(cs):
        new = [c.run_id for c in cs if c.run_id not in counted and store.is_done(c, experiment)]
        counted.update(new)
        bar.update(len(new))

    check_workers(workers)
    start = time.time()
    try:
        work = functools.partial(train_batch, experiment=experiment, device=device)
        run_units(work, batches(pending, group_size), workers, done=tick)
        tick(pending)
        # Runs other processes held: wait for them, and train any whose owner died (the one wait loop).
        left = [c for c in pending if c.run_id not in counted]
        if left:
            print(
                f"\nwaiting for {len(left)} run(s) that other processes are training, e.g. "
                f"{store.holder(left[0], experiment)}",
                file=sys.stderr,
                flush=True,
            )
            for batch in batches(left, group_size):
                engine.claimed(
                    batch,
                    experiment,
                    functools.partial(engine.train_configs, experiment=experiment, device=device),
                )
            tick(left)
    except KeyboardInterrupt:
        bar.close()
        n_done = sum(store.is_done(c, experiment) for c in mine)
        print(
            f"\ninterrupted after {time.time() - start:.0f}s: {n_done}/{len(mine)} runs of this shard are done; "
            "run the same command again to resume"
        )
        raise
    except BaseException:
        bar.close()  # so the error printed next starts a line of its own
        raise
    bar.close()
    return [store.load_metrics(c, experiment) for c in mine]
