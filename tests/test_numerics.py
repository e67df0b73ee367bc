"""The pinned numeric path (ptnl.core.numerics): which variables it sets, when, and that importing
ptnl really puts torch on the AVX2 kernels."""

import os
import subprocess
import sys

import pytest

from ptnl.core import numerics

needs_avx2 = pytest.mark.skipif(not numerics.has_avx2(), reason="this CPU has no AVX2: no ISA to pin")


def _child_env(**extra):
    """This process's environment without any of the path's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED and k != numerics.PATH_VAR}
    return {**env, **extra}


def _run(code: str, env: dict) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_apply_sets_the_pinned_variables_over_whatever_was_there():
    env = {"OMP_NUM_THREADS": "8", "MKL_CBWR": "AUTO", "HOME": "/somewhere"}
    assert numerics.apply(env) == "pinned"
    assert env == {"HOME": "/somewhere", "MKL_CBWR": "AUTO", **numerics.pinned_env()}
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"


@pytest.mark.parametrize("value", ["pinned", ""])  # unset or empty: the default, pinned
def test_apply_pins_by_default(value):
    env = {numerics.PATH_VAR: value} if value else {}
    assert numerics.apply(env) == "pinned"
    assert all(env[k] == v for k, v in numerics.pinned_env().items())


def test_apply_leaves_the_environment_alone_when_native():
    env = {numerics.PATH_VAR: "native", "OMP_NUM_THREADS": "8"}
    assert numerics.apply(env) == "native"
    assert env == {numerics.PATH_VAR: "native", "OMP_NUM_THREADS": "8"}


def test_pinned_env_is_threads_only_without_avx2(monkeypatch):
    monkeypatch.setattr(numerics, "has_avx2", lambda: False)
    assert numerics.pinned_env() == numerics.THREADS
    env = {}
    numerics.apply(env)
    assert env == numerics.THREADS  # no switch naming an ISA the CPU lacks
    monkeypatch.setattr(numerics, "has_avx2", lambda: True)
    assert numerics.pinned_env() == numerics.PINNED == {**numerics.THREADS, **numerics.ISA}


@pytest.mark.parametrize("value", ["native ", "Native", "fast", "avx2", "1"])
def test_chosen_path_rejects_other_values_clearly(value):
    env = {numerics.PATH_VAR: value, "OMP_NUM_THREADS": "8"}
    with pytest.raises(ValueError, match=r"PTNL_NUMERIC_PATH must be 'pinned' or 'native'") as e:
        numerics.chosen_path(env)
    assert repr(value) in str(e.value)  # names what it got
    with pytest.raises(ValueError):
        numerics.apply(env)
    assert env["OMP_NUM_THREADS"] == "8"  # nothing set on the way


def test_chosen_path_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv(numerics.PATH_VAR, "native")
    assert numerics.chosen_path() == "native"
    monkeypatch.delenv(numerics.PATH_VAR)
    assert numerics.chosen_path() == "pinned"


def test_describe_records_the_path_cpu_and_every_switch(monkeypatch):
    monkeypatch.delenv(numerics.PATH_VAR, raising=False)
    d = numerics.describe()
    assert set(d) == {"path", "cpu", "machine", "aten_cpu_capability", "threads", *numerics.RECORDED}
    assert set(numerics.RECORDED) == set(numerics.PINNED)
    assert d["path"] == ("pinned" if numerics.has_avx2() else "threads-only")
    assert isinstance(d["cpu"], str) and d["cpu"] and isinstance(d["threads"], int) and d["threads"] >= 1
    assert all(d[k] == os.environ.get(k) for k in numerics.RECORDED)
    monkeypatch.setenv(numerics.PATH_VAR, "native")
    assert numerics.describe()["path"] == "native"
    monkeypatch.setenv(numerics.PATH_VAR, "pinned")
    monkeypatch.setattr(numerics, "has_avx2", lambda: False)
    assert numerics.describe()["path"] == "threads-only"


def test_main_prints_the_assignments(capsys):
    numerics.main()
    assert capsys.readouterr().out.split() == [f"{k}={v}" for k, v in numerics.pinned_env().items()]


@needs_avx2
def test_importing_ptnl_puts_torch_on_avx2_kernels_and_one_thread():
    code = (
        "import ptnl; import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())"
    )
    assert _run(code, _child_env()).split() == ["AVX2", "1"]
    assert _run(code, _child_env(**{numerics.PATH_VAR: "pinned"})).split() == ["AVX2", "1"]


@needs_avx2
def test_native_leaves_torch_its_own_kernels():
    plain = _run("import torch; print(torch.backends.cpu.get_cpu_capability())", _child_env())
    native = _run(
        "import ptnl; import torch; print(torch.backends.cpu.get_cpu_capability())",
        _child_env(**{numerics.PATH_VAR: "native"}),
    )
    assert native == plain


def test_a_bad_path_fails_the_import_with_the_message():
    res = subprocess.run(
        [sys.executable, "-c", "import ptnl"],
        capture_output=True,
        text=True,
        env=_child_env(**{numerics.PATH_VAR: "fast"}),
        timeout=300,
    )
    assert res.returncode != 0 and "PTNL_NUMERIC_PATH must be 'pinned' or 'native', got 'fast'" in res.stderr


# -- the speed benchmark's comparison of the paths (ptnl.tools.speed_numeric.numeric_path_cost) ----------


def test_speed_benchmark_gives_each_path_its_own_environment(monkeypatch, tmp_path):
    from ptnl.tools import speed_numeric

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as the parent's pinned import left it
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    native = speed_numeric.numeric_env("native", tmp_path)
    assert native[numerics.PATH_VAR] == "native" and not set(numerics.PINNED) & set(native)
    assert native["PTNL_CACHE"] == str(tmp_path)
    one = speed_numeric.numeric_env("native-1thread", tmp_path)
    assert {k: one.get(k) for k in numerics.PINNED} == {k: numerics.THREADS.get(k) for k in numerics.PINNED}
    assert speed_numeric.numeric_env("pinned", tmp_path)[numerics.PATH_VAR] == "pinned"


def test_speed_benchmark_reports_the_ratio_and_bit_identity(monkeypatch):
    from ptnl.tools import speed_numeric

    seconds = {"pinned": [3.0, 2.0], "native": [1.0, 4.0], "native-1thread": [2.5, 2.5]}
    acc = {"pinned": 0.5, "native": 0.5 + 2**-20, "native-1thread": 0.5}

    def worker(path, epochs):
        where = {"threads": 1, "aten_cpu_capability": "AVX2", "path": path, "cpu": "cpu x"}
        m = {"test_acc": acc[path], "train_loss": [1.0, 0.5]}
        return {"seconds": seconds[path].pop(0), "numeric_path": where, "metrics": m}

    monkeypatch.setattr(speed_numeric, "_numeric_worker", worker)
    res = speed_numeric.numeric_path_cost(epochs=2, repeats=2, log=False)
    p = res["paths"]
    assert p["pinned"]["best_s"] == 2.0 and res["pinned_over_native"] == pytest.approx(2.0)
    assert p["native-1thread"]["pinned_over_this"] == pytest.approx(0.8)
    assert p["native-1thread"]["identical_to_pinned"] and not p["native"]["identical_to_pinned"]
    assert p["native"]["max_abs_diff_vs_pinned"] == 2**-20 and all(r["repeatable"] for r in p.values())
    table = speed_numeric.numeric_markdown(res)
    assert (
        "takes 2.00x the native path's time" in table
        and "| native-1thread | 1 | AVX2 | 2.50 | 0.80x |" in table
    )
    assert "bit-identical" in table and "differ: max |diff| 9.5e-07" in table
