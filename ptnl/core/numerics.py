"""The pinned numeric path: one fixed set of CPU kernels for every x86-64 CPU with AVX2 (Intel or
AMD, with or without AVX-512 or AMX), so that the same run gives the same bits on each. Measured so
on an AMD EPYC with AVX-512 (the whole toy set, docs/log/reproducible-v1.md); not yet on an Intel CPU.

Float results depend on which kernels the libraries pick for the CPU at hand: ATen's vectorised
elementwise ops (softmax, exp, reductions) come in default/AVX2/AVX-512 builds, MKL's GEMM and
oneDNN's convolutions dispatch on the instruction set, OpenBLAS (numpy, scikit-learn) on the core
type, and every one of them reduces in another order with more threads. Each library has its own
switch that fixes the path; ``PINNED`` sets all of them, and one thread. The switches are read
when a library first runs, so they must be in the environment before torch or numpy computes
anything: ``apply()`` runs when ``ptnl`` is imported (``ptnl/__init__``), and child processes
(workers, notebook kernels, papermill) inherit the environment it set.

``PTNL_NUMERIC_PATH=native`` leaves the environment as it is: each library picks its own kernels
(faster on some CPUs, other bits). ``describe()`` is what every run records in its metrics, so a
reader can tell where and how a number was made.

On CPUs without AVX2 (and on ARM) there is no such path to pin: the switches would name an
instruction set the CPU lacks, so only the thread count is fixed and the path is recorded as
"threads-only". Numbers made there agree with the shipped ones to float rounding, not to the bit.
"""

from __future__ import annotations

import os
import platform
from functools import cache

PATH_VAR = "PTNL_NUMERIC_PATH"  # "pinned" (the default) or "native"
PATHS = ("pinned", "native")

THREADS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}
# x86-64 with AVX2: the kernels every such CPU of the last decade has.
ISA = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: AVX2 code path
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (convolutions): no AVX-512 or AMX kernels
    "OPENBLAS_CORETYPE": "Haswell",  # OpenBLAS (numpy, scikit-learn): its AVX2 kernels
}
PINNED = {**THREADS, **ISA}
RECORDED = tuple(PINNED)  # the switches every run records, whatever path set them


def chosen_path(environ=None) -> str:
    env = os.environ if environ is None else environ
    value = env.get(PATH_VAR, "pinned") or "pinned"
    if value not in PATHS:
        raise ValueError(f"{PATH_VAR} must be 'pinned' or 'native', got {value!r}")
    return value


@cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_avx2() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64") and "avx2" in cpu_flags()


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pinned_env() -> dict[str, str]:
    """The variables the pinned path sets on this machine (only the threads where there is no AVX2)."""
    return dict(PINNED) if has_avx2() else dict(THREADS)


def apply(environ=None) -> str:
    """Set the pinned path's variables in ``environ`` (default ``os.environ``), overriding what
    was there, unless ``PTNL_NUMERIC_PATH=native``. Returns the path chosen."""
    env = os.environ if environ is None else environ
    path = chosen_path(env)
    if path == "pinned":
        env.update(pinned_env())
    return path


def describe() -> dict:
    """Where and how this process computes: the path, the CPU, and the kernels in force. Goes
    into every run's metrics (``numeric_path``); provenance, never compared between machines."""
    import torch

    path = chosen_path()
    if path == "pinned" and not has_avx2():
        path = "threads-only"
    return {
        "path": path,
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        **{k: os.environ.get(k) for k in RECORDED},
    }


def main() -> None:
    """``python -m ptnl.core.numerics``: the pinned path's variables as shell assignments."""
    print(" ".join(f"{k}={v}" for k, v in pinned_env().items()))


if __name__ == "__main__":
    main()
