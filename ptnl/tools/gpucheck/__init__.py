"""GPU readiness check: ``python -m ptnl gpu-check`` (``make gpu-check``), one JSON file out.

Runs the real code path on CUDA for RN50 and ViT-B/32 with random weights (nothing is
downloaded; no dataset is read) in about five minutes on one H200, and writes
``build/gpucheck.json`` (``--out``). Parts, in this order:

- ``training`` (required): a few prompt-tuning steps through ``ptnl.train.engine`` per backbone, with
  ``precision="auto"`` (bf16 autocast on the GPU) and ``"coop-fp16"`` (CoOp's fp16 parameters and
  SGD): loss finite, seconds per step, peak GPU memory, and ``stalled_updates`` for coop-fp16.
- ``agreement`` (required): one step of ptnl's ``exact`` mode against the plain CoOp step the
  tests use (``ptnl.tools.speed.CoOpReference``: full 77-token text pass, no truncation, no shared
  prefix), fp32 with TF32 off: max |difference| of the logits, the loss and the context update.
- ``step_times`` (optional): per-step times at two class counts, alone and in a group, and the
  other costs the projection needs (grad-ratio steps, linear heads, TEnc-FT, image encoding,
  JPEG decoding and augmentation, the linear probe, feature-cache reads).
- ``paper_grid`` (optional): the paper grid's runs counted with the sections' run grids (params/paper.yaml)
  and a projected wall time from those measurements, with its assumptions.
- ``bench`` (optional): ``ptnl.tools.speed``'s rows on the GPU (views, exact, group16 against their
  references), in this process.

Optional parts are skipped, and the skip recorded, once ``--budget-s`` is nearly spent. The JSON
is rewritten after every part, so a run cut short still leaves what it measured. Exit status 1 if
a check failed. ``--dry`` (automatic without CUDA) runs the same code on the CPU with tiny
open_clip configs and very few steps (the test suite runs it).

Modules: ``common`` (sizes, tolerances, the datasets' sizes from their specs, the dry mode's
backbones, the environment), ``probe`` (the required training and agreement checks), ``costs``
(the timings the projection needs, and the bench rows), ``project`` (the paper grid's
projection), ``report`` (the driver and its summary).
"""

from ptnl.tools.gpucheck.common import (
    BACKBONES,
    BUDGET_S,
    DRY_BACKBONES,
    DRY_SIZES,
    GPU_SIZES,
    LOGITS_ATOL,
    LOSS_ATOL,
    PARAM_SET,
    TINY_RN_CONFIG,
    UPDATE_RTOL,
    Sizes,
    dataset_sizes,
    environment,
    register_dry_backbones,
)
from ptnl.tools.gpucheck.costs import check_bench, measure_step_times
from ptnl.tools.gpucheck.probe import check_agreement, check_training, strict_fp32, train_probe
from ptnl.tools.gpucheck.project import grid_runs, project_grid, step_s
from ptnl.tools.gpucheck.report import add_arguments, command, run_check, summary

__all__ = [
    "BACKBONES",
    "BUDGET_S",
    "DRY_BACKBONES",
    "DRY_SIZES",
    "GPU_SIZES",
    "LOGITS_ATOL",
    "LOSS_ATOL",
    "PARAM_SET",
    "Sizes",
    "TINY_RN_CONFIG",
    "UPDATE_RTOL",
    "add_arguments",
    "check_agreement",
    "check_bench",
    "check_training",
    "command",
    "dataset_sizes",
    "environment",
    "grid_runs",
    "measure_step_times",
    "project_grid",
    "register_dry_backbones",
    "run_check",
    "step_s",
    "strict_fp32",
    "summary",
    "train_probe",
]
