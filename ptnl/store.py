"""The run store: ``results/<experiment>/<run-id>/{config.json, metrics.json, done}``.

``done`` is written last, after both JSON files are in place, so its presence means the run is
complete; a folder without it is an interrupted run and is redone. Every file is written to a
temporary name in the same folder and moved into place with ``os.replace`` (atomic on POSIX and
Windows), so a killed process never leaves a half-written file under a real name.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ptnl import paths
from ptnl.config import RunConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
DONE_FILE = "done"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n").encode())


def _jsonable(x):
    # numpy scalars and tensors sneak into metrics; NaN becomes null so the file stays strict JSON.
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


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
    if stored != config.to_dict():  # a hash collision, or a hand-edited folder
        raise ValueError(f"{d / CONFIG_FILE} does not match the config hashed to {config.run_id}; remove {d}")
    return json.loads((d / METRICS_FILE).read_text())


def start_run(config: RunConfig, experiment: str) -> Path:
    """Create (or reset) the run's folder and write its config; clears a stale ``done``."""
    d = run_dir(config, experiment)
    d.mkdir(parents=True, exist_ok=True)
    (d / DONE_FILE).unlink(missing_ok=True)
    atomic_write_json(d / CONFIG_FILE, config.to_dict())
    return d


def finish_run(config: RunConfig, experiment: str, metrics: dict) -> Path:
    d = run_dir(config, experiment)
    if not (d / CONFIG_FILE).exists():
        start_run(config, experiment)
    atomic_write_json(d / METRICS_FILE, metrics)
    atomic_write_bytes(d / DONE_FILE, b"")
    return d


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
        have = sorted(p.name for p in paths.results_dir().glob("*") if p.is_dir())
        raise FileNotFoundError(
            f"no experiment {experiment!r} under {paths.results_dir()} (found: {have or 'none'})"
        )
    rows = []
    for d in sorted(root.iterdir()):
        if not (d / DONE_FILE).exists():
            continue
        row = {"run_id": d.name}
        _flatten("", json.loads((d / CONFIG_FILE).read_text()), row)
        metrics = {}
        _flatten("", json.loads((d / METRICS_FILE).read_text()), metrics)
        for k, v in metrics.items():  # a metric never overwrites the config field of the same name
            row[f"metrics.{k}" if k in row else k] = v
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["run_id", *(f for f in RunConfig.__dataclass_fields__)])
    return pd.DataFrame(rows)
