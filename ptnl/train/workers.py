"""Training units of work side by side in worker processes, each at the parent's thread count.

A sweep's batches (and UPL's member groups) are formed in the parent, in the same order and with
the same members as a one-process sweep forms them; ``workers`` processes then take them in that
order as each one frees up. A unit trains exactly as it would in the parent (same group, same
seed streams, same thread count), so the numbers do not depend on ``workers``: it only changes
how many cores are busy. Runs are still claimed one by one in the store, so processes started by
hand beside these never train a run twice.

Workers are started with ``spawn`` (a fresh interpreter, never a fork of a process that may hold
threads or a CUDA context) and ended when the units are done; a worker that dies stops the whole
map with an error, and Ctrl-C cancels the units not yet started (runs already written stay).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch


def check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(
            f"workers must be an integer >= 1 (processes training side by side), got {workers!r}"
        )
    return workers


def _init(threads: int) -> None:
    torch.set_num_threads(threads)


def run_units(
    work: Callable,
    units: Sequence,
    workers: int = 1,
    done: Callable[[object], None] | None = None,
) -> None:
    """``work(unit)`` for every unit, in order: here if ``workers`` is 1 (or there is at most one
    unit), else in ``workers`` spawned processes. ``work`` must be a module-level function (it is
    pickled by name) and units picklable. ``done(unit)`` is called here as each unit finishes."""
    workers = check_workers(workers)
    units = list(units)
    if workers == 1 or len(units) <= 1:
        for u in units:
            work(u)
            if done is not None:
                done(u)
        return
    threads = torch.get_num_threads()
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        min(workers, len(units)), mp_context=ctx, initializer=_init, initargs=(threads,)
    )
    pending = {}
    queue = iter(units)
    try:
        for u in _take(queue, min(workers, len(units))):
            pending[pool.submit(work, u)] = u
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                u = pending.pop(f)
                f.result()  # a unit's error (or a dead worker) stops the map here
                if done is not None:
                    done(u)
                for nxt in _take(queue, 1):  # submitted one at a time: units start in order
                    pending[pool.submit(work, nxt)] = nxt
    except BrokenProcessPool:
        pool.shutdown(wait=True, cancel_futures=True)
        raise RuntimeError(
            "a worker process died (killed, out of memory, or it could not start: a script that trains "
            "with workers > 1 needs its top-level code under `if __name__ == '__main__':`, as "
            "multiprocessing's spawn requires); finished runs are stored, run the same call again"
        ) from None
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _take(it: Iterable, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out
