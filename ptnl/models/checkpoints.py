"""Checkpoint files: reading a state dict from any file a user may hold (torch's pickles,
safetensors, OpenAI's TorchScript, converted once under ``cache_dir()``), finding one by name in
``weights_dir()``, and naming a file by its tensors (``file_weights_id``), so the same weights as
.pt or .safetensors are one identity. Imports torch only when a file is read.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ptnl.core.paths import cache_dir, weights_dir
from ptnl.models.toy.lab import expand_state

if TYPE_CHECKING:
    import torch

# Keys OpenAI's TorchScript files carry besides the weights (open_clip drops them the same way).
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")
# Files a safetensors/zip/pickle checkpoint may be; anything else with a separator is a path too.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (memoised on path, size and mtime: checkpoints are hundreds of MB)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def is_torchscript(path: Path) -> bool:
    """Whether a checkpoint file is a TorchScript archive (OpenAI's original ``.pt`` format)."""
    # torch.save and torch.jit.save both write zip files; only TorchScript has code and constants.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def _converted_torchscript(path: Path, sha: str) -> Path:
    """OpenAI's .pt files are TorchScript archives: loading one runs its code. Do it once, keep
    the weights as safetensors under cache_dir(), and read those from then on."""
    import torch
    from safetensors.torch import save_file

    out = cache_dir() / "converted-weights" / f"{sha[:16]}.safetensors"
    if out.is_file():
        return out
    warnings.warn(
        f"{path} is a TorchScript archive (OpenAI's original format); loading it executes the code "
        f"stored in it. Only do this with files you trust. Converting it once to {out}.",
        UserWarning,
        stacklevel=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; we only read weights
        scripted = torch.jit.load(str(path), map_location="cpu")
    state = {k: v.detach().clone().contiguous() for k, v in scripted.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, out)  # atomic: a crash never leaves a half-written cache entry
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint file as a flat state dict on the CPU (safetensors, torch.save, or TorchScript)."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif is_torchscript(path):
            from safetensors.torch import load_file

            state = load_file(str(_converted_torchscript(path, file_sha256(path))), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # corrupt, truncated, or not a checkpoint at all
        raise ValueError(
            f"could not read checkpoint {path}: {type(e).__name__}: {e}. Pass a state dict saved with "
            "torch.save, a .safetensors file, or OpenAI's original .pt file."
        ) from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise ValueError(f"checkpoint {path} does not hold a state dict (a dict of tensors)")
    state = expand_state(state)  # a toy lab snapshot stores only the token rows it can reach
    if all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in _NON_WEIGHT_KEYS}


def looks_like_path(s: str) -> bool:
    """Whether a ``pretrained`` value names a local file rather than an open_clip tag."""
    return os.sep in s or "/" in s or s.endswith(CHECKPOINT_SUFFIXES) or Path(s).expanduser().exists()


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A local checkpoint as given, or else by that name in ``weights_dir()`` (where users drop files)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_absolute() and (weights_dir() / p).is_file():
        return weights_dir() / p
    places = dict.fromkeys([p.resolve(), *([] if p.is_absolute() else [(weights_dir() / p).resolve()])])
    raise FileNotFoundError(
        f"checkpoint file {path} does not exist (looked at {' and '.join(map(str, places))})"
    )


_TENSOR_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def tensors_sha256(path: str | Path) -> str:
    """Hex sha256 of the weights a checkpoint file holds, not of its bytes: the sorted keys, shapes
    and values as ``load_clip`` loads them (floats as float32), so the same weights saved as ``.pt``,
    ``.safetensors``, fp16 or fp32, or as OpenAI's TorchScript are one identity to the run store."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _TENSOR_SHA_CACHE:
        h = hashlib.sha256()
        for k, v in sorted(read_state_dict(p).items()):
            v = v.detach().float() if v.is_floating_point() else v.detach()
            h.update(f"{k}\x1f{v.dtype}\x1f{tuple(v.shape)}\x1e".encode())
            h.update(v.contiguous().cpu().numpy().tobytes())
        _TENSOR_SHA_CACHE[key] = h.hexdigest()
    return _TENSOR_SHA_CACHE[key]


def file_weights_id(path: str | Path) -> str:
    return f"file:{tensors_sha256(path)[:16]}"
