"""The run store: ``results/<experiment>/<run-id>/{config.json, metrics.json, done}``.

A run's folder appears whole: ``write_run`` writes config, metrics (and any extra files), then
``done``, into a temporary sibling ``.<run-id>.<pid>.<random>.tmp`` and renames it into place,
so a run that fails or is killed leaves no folder, and every folder with ``done`` is complete.
(``start_run``/``finish_run`` still write in place, ``done`` last, for callers that add files as
they go; a folder without ``done`` is an interrupted run and is redone.) Single files go to
``.<name>.<pid>.<random>.tmp`` and are moved into place with ``os.replace`` (atomic on POSIX and
Windows), so a killed process never leaves a half-written file under a real name.

Claims: a process trains a run only while it holds ``.claims/<run-id>.claim``, created with
O_EXCL (one process wins) and holding its pid, host and start time; it is removed once the run is
written or has failed. So two sweeps of one experiment never train a run twice: each leaves the
runs the other holds to it and waits for them. A claim is stale when its process is gone (same
host, no such pid): it is then taken over. A claim of another host is never judged stale (its pid
means nothing here); if that process died, remove the claim file named in the waiting message.

Clean-up (``clean``, when a run or sweep starts on an experiment): temporary files and folders
older than STALE_TMP_SECONDS were left by killed writers, since a write lasts seconds; their age
decides, not the pid in their name, which says nothing about other hosts sharing the store or
about reused pids. Claims of dead processes go too, and takeover guards older than STUCK_SECONDS.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ptnl.core import paths
from ptnl.core.files import atomic_write_bytes, atomic_write_json
from ptnl.train.config import RunConfig, identity_part

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
DONE_FILE = "done"
CLAIMS_DIR = ".claims"
NO_TRAIN_VAR = "PTNL_NO_TRAIN"
POLL_SECONDS = 1.0  # how often a process waiting for another's runs looks again
STALE_TMP_SECONDS = 15 * 60  # a temporary file or folder this old belongs to no live write
STUCK_SECONDS = 60  # a claim still empty, or a takeover guard, this old: its writer died mid-write
HOST = socket.gethostname()
_cleaned: dict[Path, float] = {}  # experiment folder -> when this process last cleaned it


def _tmp_name(name: str) -> str:
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def run_dir(config: RunConfig, experiment: str) -> Path:
    return paths.experiment_dir(experiment) / config.run_id


def is_done(config: RunConfig, experiment: str) -> bool:
    return (run_dir(config, experiment) / DONE_FILE).exists()


def load_metrics(config: RunConfig, experiment: str) -> dict | None:
    """The stored metrics of a finished run, or None if it has not finished."""
    d = run_dir(config, experiment)
    if not (d / DONE_FILE).exists():
        return None
    stored = json.loads((d / CONFIG_FILE).read_text())
    if identity_part(stored) != config.identity_dict():  # a hash collision, or a hand-edited folder
        raise ValueError(f"{d / CONFIG_FILE} does not match the config hashed to {config.run_id}; remove {d}")
    return json.loads((d / METRICS_FILE).read_text())


def write_run(
    config: RunConfig, experiment: str, metrics: dict, files: Mapping[str, bytes] | None = None
) -> Path:
    """Write a finished run's folder whole: ``files`` (extra name -> bytes), config, metrics, then
    ``done``, in a temporary sibling renamed into place. An older folder of the run is replaced."""
    d = run_dir(config, experiment)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.parent / _tmp_name(d.name)
    tmp.mkdir()
    try:
        for name, data in (files or {}).items():
            atomic_write_bytes(tmp / name, data)
        atomic_write_json(tmp / CONFIG_FILE, config.to_dict())
        atomic_write_json(tmp / METRICS_FILE, metrics)
        atomic_write_bytes(tmp / DONE_FILE, b"")
        old = None
        if d.exists():  # moved aside first: a folder cannot be renamed onto a non-empty one
            old = d.parent / _tmp_name(d.name)
            os.rename(d, old)
        os.rename(tmp, d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return d


def start_run(config: RunConfig, experiment: str) -> Path:
    """Create (or reset) the run's folder and write its config; clears a stale ``done``. For
    callers that write files into the folder as they train; ``write_run`` writes it whole."""
    d = run_dir(config, experiment)
    d.mkdir(parents=True, exist_ok=True)
    (d / DONE_FILE).unlink(missing_ok=True)
    atomic_write_json(d / CONFIG_FILE, config.to_dict())
    return d


def finish_run(config: RunConfig, experiment: str, metrics: dict) -> Path:
    """Complete a folder ``start_run`` made (metrics, then ``done``), or write a new one whole."""
    d = run_dir(config, experiment)
    if not (d / CONFIG_FILE).exists():
        return write_run(config, experiment, metrics)
    atomic_write_json(d / METRICS_FILE, metrics)
    atomic_write_bytes(d / DONE_FILE, b"")
    return d


# -- claims ---------------------------------------------------------------------------------------


def claim_path(config: RunConfig, experiment: str) -> Path:
    return paths.experiment_dir(experiment) / CLAIMS_DIR / f"{config.run_id}.claim"


def _owner(p: Path) -> dict | None:
    """The claim's record; {} while it is being written (or if its writer died doing so); None
    when there is no claim."""
    try:
        text = p.read_text()
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _age(p: Path) -> float:
    try:
        return time.time() - p.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _alive(pid) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (TypeError, ValueError, OverflowError):  # not a pid at all
        return False
    return True


def _mine(owner: dict) -> bool:
    return owner.get("host") == HOST and owner.get("pid") == os.getpid()


def _stale(p: Path, owner: dict) -> bool:
    if not owner:  # no record yet: its writer gets ample time to write it
        return _age(p) > STUCK_SECONDS
    return owner.get("host") == HOST and not _alive(owner.get("pid"))


def _remove_stale(p: Path, owner: dict) -> None:
    # Two processes may find the same dead claim: the guard (O_EXCL) lets one of them remove it,
    # and it checks under the guard that the claim is still that one, not a new claim taken since.
    guard = p.with_name(p.name + ".takeover")
    try:
        os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        if _age(guard) > STUCK_SECONDS:  # its taker died in the middle of a takeover
            guard.unlink(missing_ok=True)
        return
    try:
        now = _owner(p)
        if now is not None and now == owner and _stale(p, now):
            p.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


class TrainingOff(FileNotFoundError):
    """A run would be trained while ``$PTNL_NO_TRAIN`` says that every run must already be stored."""


def training_off() -> bool:
    """``$PTNL_NO_TRAIN`` set (nbval reads the shipped results this way): every run must be found."""
    return os.environ.get(NO_TRAIN_VAR, "").strip().lower() not in ("", "0", "false")


def claim(config: RunConfig, experiment: str) -> bool:
    """Take the run's claim: True if this process holds it now (it may have already), False if
    another live process does. A stale claim is taken over. Every run that is trained is claimed
    first, so with ``$PTNL_NO_TRAIN`` set this is where a missing run stops (``TrainingOff``)."""
    if training_off():
        raise TrainingOff(
            f"run {config.run_id} ({config.method}, {config.dataset}) of experiment {experiment!r} is not in "
            f"{paths.experiment_dir(experiment)} and {NO_TRAIN_VAR} is set, so nothing trains: if a change "
            "moved the numbers, regenerate the shipped results with `make ship`"
        )
    p = claim_path(config, experiment)
    p.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"pid": os.getpid(), "host": HOST, "started": time.time()})
    for _ in range(3):  # a stale claim removed, then another process may win the create
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(p)
            if owner is None:  # released in the meantime
                continue
            if owner and _mine(owner):
                return True
            if not _stale(p, owner):
                return False
            _remove_stale(p, owner)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(record)
        return True
    return False


def release(config: RunConfig, experiment: str) -> None:
    """Drop this process's claim on the run; a claim of another process is left alone."""
    p = claim_path(config, experiment)
    owner = _owner(p)
    if owner and _mine(owner):
        p.unlink(missing_ok=True)


def holder(config: RunConfig, experiment: str) -> str:
    """Who holds the run's claim, for messages."""
    p = claim_path(config, experiment)
    owner = _owner(p)
    if not owner:
        return str(p)
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {since} ({p})"


def clean(experiment: str) -> None:
    """Remove what killed processes left in ``experiment``: temporary files and folders older than
    STALE_TMP_SECONDS, and claims of dead processes. At most once a minute per process: every run
    of a sweep asks."""
    root = paths.experiment_dir(experiment)
    now = time.time()
    if not root.is_dir() or now - _cleaned.get(root, 0.0) < 60:
        return
    _cleaned[root] = now
    # A finished folder holds no temporary file: all of them are renamed or removed before ``done``.
    unfinished = (
        d for d in root.iterdir() if d.name[0] != "." and d.is_dir() and not (d / DONE_FILE).exists()
    )
    for folder in [root, *unfinished]:
        for p in folder.glob(".*.tmp"):
            try:
                if now - p.lstat().st_mtime <= STALE_TMP_SECONDS:
                    continue
            except FileNotFoundError:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    for p in (root / CLAIMS_DIR).glob("*.takeover"):  # left by a taker that died mid-takeover
        if _age(p) > STUCK_SECONDS:
            p.unlink(missing_ok=True)
    for p in (root / CLAIMS_DIR).glob("*.claim"):
        owner = _owner(p)
        if owner is not None and _stale(p, owner):
            _remove_stale(p, owner)


# -- reading an experiment ------------------------------------------------------------------------


def _flatten(prefix: str, d: dict, out: dict) -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(key + ".", v, out)
        else:
            out[key] = v


def collect(experiment: str) -> pd.DataFrame:
    """All finished runs of ``experiment``, one row each: ``run_id``, the config fields (dicts
    flattened to ``loss_params.q``), then the metrics (per-epoch lists stay lists; a metric whose
    name is also a config field comes as ``metrics.<name>``)."""
    root = paths.experiment_dir(experiment)
    if not root.is_dir():
        have = sorted(p.name for p in paths.results_dir().glob("*") if p.is_dir() and p.name[0] != ".")
        raise FileNotFoundError(
            f"no experiment {experiment!r} under {paths.results_dir()} (found: {have or 'none'})"
        )
    rows = [
        _row(d.name, json.loads((d / CONFIG_FILE).read_text()), json.loads((d / METRICS_FILE).read_text()))
        for d in sorted(root.iterdir())
        if not d.name.startswith(".") and (d / DONE_FILE).exists()  # not claims, temporary folders
    ]
    if not rows:
        return pd.DataFrame(columns=["run_id", *(f for f in RunConfig.__dataclass_fields__)])
    return pd.DataFrame(rows)


def rows(configs, experiment: str, metrics=None) -> pd.DataFrame:
    """``collect``'s rows for ``configs`` only, each run once, in run-id order: from ``metrics``
    (what a sweep returned, in config order) where given, else read from their folders; runs not
    done are left out."""
    out = {}
    for i, c in enumerate(configs):
        if c.run_id in out:
            continue
        m = metrics[i] if metrics is not None else load_metrics(c, experiment)
        if m is not None:
            out[c.run_id] = _row(c.run_id, c.to_dict(), m)
    if not out:
        return pd.DataFrame(columns=["run_id", *(f for f in RunConfig.__dataclass_fields__)])
    return pd.DataFrame([out[k] for k in sorted(out)])


def _row(run_id: str, config: dict, metrics: dict) -> dict:
    row = {"run_id": run_id}
    _flatten("", config, row)
    flat = {}
    _flatten("", metrics, flat)
    for k, v in flat.items():  # a metric never overwrites the config field of the same name
        row[f"metrics.{k}" if k in row else k] = v
    return row
