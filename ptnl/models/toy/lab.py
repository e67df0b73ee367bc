"""The toy lab's extra checkpoints: the shipped pretraining recipe stopped early.

``python -m ptnl toy snapshots --backbone toy-rn --steps 6000 --threads 2 --save-at 500,1500
--stop-at 1500`` reruns toy-rn's shipped recipe (its 6000-step cosine schedule, seed, data and
thread count) and saves the weights after 500 and 1500 steps as
``checkpoints/lab/toy-rn-step<k>.safetensors``, each with its json (``ptnl.tools.toy.snapshots``).
A run names one as ``pretrained="step1500"``; ``"default"`` is the shipped, fully trained
checkpoint. Early checkpoints are weaker image-text embeddings of the same model: the lab's
lever on the paper's second factor (notebook 09).

Each snapshot gets its temperature by the shipped checkpoints' rule (``ptnl.tools.toy.calibrate``), so
the embedding's strength and the heads' temperature stay separate factors.

Shrunk to fit in git: only the token-embedding rows the toy world can reach are stored (the
tokens of the pretraining captions and of every toy task's prompts, ~100 of CLIP's 49408; the
text tower never sees another token in a toy run). ``expand_state`` puts them back into a
zero matrix of the full size when the file is read, so the model loads strictly as usual; a
token outside the kept rows reads a zero embedding (in the full checkpoint it is an untrained
row that weight decay shrank, never seen in pretraining).
"""

from __future__ import annotations

import re
from pathlib import Path

from ptnl.core.paths import toy_checkpoint_dir

LAB_DIR = "lab"  # under the toy checkpoint directory
ROWS_SUFFIX, VALUES_SUFFIX, SHAPE_SUFFIX = ".rows", ".values", ".full_shape"
_NAME = re.compile(r"^step(\d+)$")


def lab_checkpoint(backbone: str, name: str) -> Path:
    """The file behind ``pretrained=name`` ("step<k>") for a toy backbone (it may not exist)."""
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not a lab checkpoint name; use 'step<k>', e.g. 'step1500'")
    return toy_checkpoint_dir() / LAB_DIR / f"{backbone}-step{int(m.group(1))}.safetensors"


def existing_lab_checkpoint(backbone: str, name: str) -> Path:
    """``lab_checkpoint``, or a FileNotFoundError saying what is present and how to make it."""
    path = lab_checkpoint(backbone, name)
    if not path.is_file():
        have = ", ".join(lab_checkpoints(backbone)) or "none"
        raise FileNotFoundError(
            f"toy lab checkpoint {name!r} of {backbone} is missing ({path}; present: {have}); make it with "
            f"`python -m ptnl toy snapshots --backbone {backbone} --save-at <steps>` (ptnl.models.toy.lab)"
        )
    return path


def is_lab_name(name) -> bool:
    return isinstance(name, str) and _NAME.match(name) is not None


def lab_checkpoints(backbone: str) -> list[str]:
    """The lab checkpoint names present for ``backbone``, by step."""
    pattern = re.compile(rf"{re.escape(backbone)}-step(\d+)")
    found = sorted(
        int(m.group(1))
        for p in (toy_checkpoint_dir() / LAB_DIR).glob(f"{backbone}-step*.safetensors")
        if (m := pattern.fullmatch(p.stem))
    )
    return [f"step{k}" for k in found]


def shrink_state(state: dict, key: str, keep: list[int]) -> dict:
    """``state`` with the matrix ``key`` stored as its rows ``keep`` only (see ``expand_state``)."""
    import torch

    full = state[key]
    rows = torch.tensor(sorted(set(keep)), dtype=torch.int64)
    out = {k: v for k, v in state.items() if k != key}
    out[key + ROWS_SUFFIX] = rows
    out[key + VALUES_SUFFIX] = full[rows].contiguous()
    out[key + SHAPE_SUFFIX] = torch.tensor(list(full.shape), dtype=torch.int64)
    return out


def expand_state(state: dict) -> dict:
    """Undo ``shrink_state``: every shrunk matrix back at its full shape, zeros where not kept."""
    shrunk = [k[: -len(ROWS_SUFFIX)] for k in state if k.endswith(ROWS_SUFFIX)]
    if not shrunk:
        return state
    import torch

    out = dict(state)
    for key in shrunk:
        rows, values = out.pop(key + ROWS_SUFFIX), out.pop(key + VALUES_SUFFIX)
        shape = out.pop(key + SHAPE_SUFFIX).tolist()
        full = torch.zeros(shape, dtype=values.dtype)
        full[rows] = values
        out[key] = full
    return out
