"""The toy lab's checkpoints: toy-rn's shipped pretraining recipe, saved early (``ptnl.models.toy.lab``).

    python -m ptnl toy snapshots --backbone toy-rn --steps 6000 --threads 2 --save-at 500,1500 --stop-at 1500

runs the recipe of ``python -m ptnl toy pretrain`` (same flags, same seed, data and schedule: the
cosine runs over ``--steps``) and saves the weights after each ``--save-at`` step, stopping at
``--stop-at``; no final checkpoint is written. Each snapshot is then finished
(``finish_snapshot``): its temperature set by the shipped rule, its token embedding shrunk to the
rows a toy run can reach, written atomically beside a json that records how it was made. Until a
snapshot is finished its weights wait under a name no run resolves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ptnl.models.toy.lab import LAB_DIR, shrink_state
from ptnl.tools.toy.calibrate import (
    TARGET_ZERO_SHOT_ECE,
    TEMPERATURE_RULE,
    calibrated_temperature,
    zero_shot_cosines,
)
from ptnl.tools.toy.pretrain import (
    DEFAULTS,
    STEPS,
    _world_hash,
    build_model,
    pretrain_data,
    save_checkpoint,
    sha256_file,
    train,
)
from ptnl.tools.toy.pretrain import add_arguments as add_pretrain_arguments
from ptnl.tools.toy.sanity import load_toy_model, zero_shot_table


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags of ``python -m ptnl toy snapshots``: pretrain's, and where to save and stop."""
    add_pretrain_arguments(ap)
    ap.description = __doc__
    ap.add_argument(
        "--save-at",
        type=_steps_list,
        required=True,
        help="comma-separated step counts to save snapshots at (<out-dir>/lab/<backbone>-step<k>.safetensors)",
    )
    ap.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="stop after this many steps of the --steps schedule (default: the last --save-at)",
    )


def command(args: argparse.Namespace) -> int:
    """Train to ``--stop-at`` and finish every snapshot."""
    if args.recalibrate:
        raise ValueError(
            "--recalibrate belongs to `toy pretrain`; a snapshot is calibrated when it is finished"
        )
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        _snapshots(args)
    finally:
        torch.set_num_threads(previous)
    return 0


def _steps_list(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected step counts like 500,1500,3000, got {text!r}") from None
    if not steps or steps[0] < 1:
        raise argparse.ArgumentTypeError(f"step counts must be >= 1, got {text!r}")
    return steps


def reachable_tokens(tokenizer, pretrain_tokens: np.ndarray) -> list[int]:
    """Every token id a toy run can feed the text tower: the pretraining captions', every toy
    task's prompts (its template and CLIP's ensemble), CoOp's context placeholder, SOT/EOT."""
    from ptnl.data.templates import SIMPLE_TEMPLATES
    from ptnl.data.toy.tasks import TASKS
    from ptnl.models.prompts import PLACEHOLDER

    texts = [PLACEHOLDER]
    for task in TASKS.values():
        for template in (task.template, *SIMPLE_TEMPLATES):
            texts += [template.format(name) for name in task.classnames]
    ids = set(np.unique(pretrain_tokens).tolist()) | set(np.unique(tokenizer(texts).numpy()).tolist())
    return sorted(ids)


def _snapshots(args):
    """The toy lab's checkpoints (``ptnl.models.toy.lab``): the shipped recipe, saved after each of
    ``--save-at`` steps and stopped at ``--stop-at``; each snapshot calibrated and shrunk."""
    hp = {k: getattr(args, k) for k in DEFAULTS}
    hp["steps"] = hp["steps"] or STEPS[args.backbone]
    stop = args.stop_at or args.save_at[-1]
    if not args.save_at[-1] <= stop <= hp["steps"]:
        raise ValueError(
            f"--save-at {args.save_at} and --stop-at {stop} must lie within the {hp['steps']}-step schedule"
        )
    out = args.out_dir / LAB_DIR

    def on_step(k, model):
        if k in args.save_at:  # the fp32 weights as trained, rounded to fp16 as the shipped ones
            save_checkpoint(model, raw_snapshot(out, args.backbone, k))

    train(args.backbone, **hp, stop_at=stop, on_step=on_step)
    command = (
        f"python -m ptnl toy snapshots --backbone {args.backbone} --steps {hp['steps']} --threads {args.threads}"
        f" --save-at {','.join(map(str, args.save_at))} --stop-at {stop}"
    )
    training = {**hp, "threads": args.threads, "stopped_at": stop}
    keep = _keep(args.backbone, training)  # the same rows for every snapshot: read the captions once
    for k in args.save_at:
        finish_snapshot(args.backbone, out, k, training, command, evaluate=not args.no_eval, keep=keep)


def _keep(backbone: str, training: dict) -> list[int]:
    model, tokenizer = build_model(backbone, 0)
    _, tokens = pretrain_data(
        training["n_images"], tokenizer, model.context_length, training["web_camera_rate"]
    )
    return reachable_tokens(tokenizer, tokens)


def raw_snapshot(out: Path, backbone: str, step: int) -> Path:
    """Where a snapshot's weights wait as trained: a name no run resolves (``lab_checkpoints``)."""
    return out / f".{backbone}-step{step}.as-trained.safetensors"


def finish_snapshot(
    backbone: str,
    out: Path,
    step: int,
    training: dict,
    command: str,
    evaluate: bool = True,
    keep: list[int] | None = None,
) -> dict:
    """Turn the as-trained snapshot ``raw_snapshot(out, backbone, step)`` into the lab checkpoint
    ``<out>/<backbone>-step<step>.safetensors`` and its json: temperature by the shipped rule,
    token-embedding rows shrunk to ``keep`` (default: those a toy run can reach), written
    atomically; the raw file is then removed. Returns the json record."""
    import open_clip
    from safetensors.torch import load_file, save_file

    raw, ckpt = raw_snapshot(out, backbone, step), out / f"{backbone}-step{step}.safetensors"
    model, preprocess, tokenizer = load_toy_model(backbone, raw)
    learned = float(model.logit_scale.detach().exp())
    calibration = calibrated_temperature(
        zero_shot_cosines(model, preprocess, tokenizer), TARGET_ZERO_SHOT_ECE[backbone]
    )
    keep = _keep(backbone, training) if keep is None else keep
    sd = load_file(str(raw))
    sd["logit_scale"] = torch.tensor(math.log(calibration["shipped"])).to(sd["logit_scale"].dtype)
    tmp = ckpt.with_suffix(f".tmp{os.getpid()}")
    save_file(shrink_state(sd, "token_embedding.weight", keep), str(tmp))
    os.replace(tmp, ckpt)  # atomic: a reader sees no snapshot or the finished one
    record = {
        "backbone": backbone,
        "step": step,
        "schedule_steps": training["steps"],
        "sha256": sha256_file(ckpt),
        "sha256_as_trained": sha256_file(raw),
        "world_sha256": _world_hash(),
        "command": command,
        "training": training,
        "token_embedding_rows_kept": len(keep),
        "temperature": {"learned": round(learned, 2), **calibration, "rule": TEMPERATURE_RULE},
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__, "numpy": np.__version__},
    }
    if evaluate:
        record["zero_shot_test_acc"] = zero_shot_table(backbone, checkpoint=ckpt)
    ckpt.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    raw.unlink()
    print(json.dumps({k: record.get(k) for k in ("backbone", "step", "sha256", "zero_shot_test_acc")}))
    return record
