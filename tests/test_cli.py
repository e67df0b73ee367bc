"""``python -m ptnl``: help text, Ctrl-C, progress bars (the sweep commands' logic is in test_sweep)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ptnl.core import paths
from ptnl.train import store


@pytest.mark.parametrize("cmd", [[], ["run"], ["sweep"], ["collect"], ["ratio"]])
def test_help_shows_no_python_internals(cmd, capsys):
    from ptnl.tools.cli import main

    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and "usage:" in text
    assert "object at" not in text and "_MISSING_TYPE" not in text and "<dataclasses" not in text
    if cmd == ["run"]:
        assert "--dataset DATASET     required" in text and '(default: "RN50")' in text
        assert "(default: 50)" in text and "(default: null)" in text and "(default: false)" in text


def test_run_without_dataset_is_a_usage_error(capsys):
    from ptnl.tools.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", "--experiment", "x"])
    assert e.value.code == 2 and "--dataset" in capsys.readouterr().err


def test_ctrl_c_prints_the_resume_line_and_exits_130(fresh_store, monkeypatch, capsys):
    from ptnl.tools.cli import main
    from ptnl.train import engine

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    def cli(argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            pytest.fail("KeyboardInterrupt escaped main (a traceback on the command line)")

    monkeypatch.setattr(engine, "train_configs", interrupted)  # what `run` and `sweep` train through
    assert cli(["run", "--experiment", "cc", "--dataset", "DTD"]) == 130
    out = capsys.readouterr().out
    assert "interrupted after" in out and "0/1 runs done; run the same command again to resume" in out
    assert cli(["sweep", "--experiment", "cc", "--base", "dataset=DTD", "--set", "seed=1,2"]) == 130
    out = capsys.readouterr().out
    assert "0/2 runs of this shard are done; run the same command again to resume" in out


def test_cli_run_passes_progress_unless_tqdm_disable(fresh_store, monkeypatch, capsys):
    from ptnl.tools.cli import main
    from ptnl.train import engine

    seen = []
    monkeypatch.setattr(
        engine, "run", lambda cfg, exp, device=None, progress=False: seen.append(progress) or {}
    )
    argv = ["run", "--experiment", "p", "--dataset", "DTD"]
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert main(argv) == 0
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert main(argv) == 0
    assert seen == [True, False]


def _ptnl_run(tmp_path, *extra, quiet):
    env = {**os.environ, "PTNL_RESULTS": str(tmp_path / "results"), "OMP_NUM_THREADS": "1"}
    env.pop("TQDM_DISABLE", None)
    if quiet:
        env["TQDM_DISABLE"] = "1"
    argv = ["--experiment", "cli", "--dataset", "toy-shapes", "--backbone", "toy-rn", "--pretrained", "null"]
    argv += ["--shots", "1", "--feature-mode", "center", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "ptnl", "run", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`make test &`) inherits SIGINT ignored, and so would
        # the child: give it the default disposition, as a terminal's Ctrl-C finds it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
def test_real_run_shows_progress_and_ctrl_c_leaves_nothing(tmp_path, monkeypatch):
    proc = _ptnl_run(tmp_path, "--epochs", "100000", quiet=False)
    err, deadline = b"", time.time() + 120
    os.set_blocking(proc.stderr.fileno(), False)
    while b"epoch" not in err:  # the engine's epoch bar (tqdm writes \r, not lines)
        assert proc.poll() is None and time.time() < deadline, err.decode()
        err += os.read(proc.stderr.fileno(), 65536) if _readable(proc.stderr) else b""
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=60)
    err = err.decode() + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "run the same command again to resume" in out
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "results"))
    assert len(store.collect("cli")) == 0
    assert [p.name for p in paths.experiment_dir("cli").iterdir() if p.name[0] != "."] == []


def _readable(f):
    import select

    return bool(select.select([f], [], [], 0)[0])


@pytest.mark.slow
def test_real_run_is_quiet_with_tqdm_disable(tmp_path):
    proc = _ptnl_run(tmp_path, "--epochs", "2", quiet=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "epoch" not in err and "%|" not in err and json.loads(out)["n_train"] > 0


def test_an_error_during_a_sweep_starts_a_line_of_its_own(fresh_store, monkeypatch, capsys):
    """The sweep's bar is closed before the error is printed: `error:` never runs on from it."""
    from ptnl.tools.cli import main
    from ptnl.train import engine

    def broken(*a, **k):
        raise ValueError("the data is broken")

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(engine, "train_configs", broken)
    assert main(["sweep", "--experiment", "bar", "--base", "dataset=toy-shapes", "--set", "seed=1"]) == 2
    err = capsys.readouterr().err
    assert "0/1" in err and "\nerror: the data is broken" in err


@pytest.mark.parametrize(
    "key, flag", [("device", "--device cpu"), ("experiment", "--experiment"), ("workers", "--workers")]
)
def test_sweep_options_given_as_fields_point_to_their_flags(fresh_store, capsys, key, flag):
    from ptnl.tools.cli import main

    argv = ["sweep", "--experiment", "x", "--base", "dataset=toy-shapes", "--base", f"{key}=cpu"]
    assert main([*argv, "--set", "seed=1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{key!r} is not a RunConfig field" in err and f"use {flag}" in err
