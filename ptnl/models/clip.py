"""Frozen CLIP backbones through open_clip: loading, image features, text features, zero-shot.

``load_clip`` returns a ``CLIPBundle``: the open_clip model in eval mode with every weight
frozen, its test transform and tokenizer, and a ``weights_id`` that names the weights for cache
keys. Names:

- ``RN50`` and ``ViT-B-32`` (also spelled ``ViT-B/32``): the paper's two backbones. They always
  use open_clip's ``-quickgelu`` configs, because OpenAI trained them with QuickGELU and plain
  ``RN50`` in open_clip silently uses GELU: loading OpenAI weights into it gives wrong features
  with only a warning. ``pretrained="default"`` means, for these two, a file named after the
  backbone in ``weights/`` (``weights/RN50.pt``, ``weights/ViT-B-32.safetensors``, ...) if there
  is one, else the ``"openai"`` tag (``resolve_weights`` makes this choice for every caller).
- any other open_clip model name (``open_clip.list_models()``), with an explicit tag or file.
- the toy backbones of ``ptnl.toy.TOY_BACKBONES`` (an open_clip model-config JSON and a
  safetensors checkpoint each); ``pretrained="default"`` loads the shipped checkpoint.

``pretrained`` is an open_clip tag (downloaded to open_clip's cache as open_clip does), a path to
a local checkpoint (a state dict saved by torch, a ``.safetensors`` file, or OpenAI's original
TorchScript ``.pt``, converted once to safetensors under ``cache_dir()``), or ``None`` for
random weights (seeded, so "random" is still one fixed set of weights and a valid cache key).

Weights are kept in fp32. Lower precision is applied as autocast on the GPU (``precision`` is
"bf16" or "fp16"): the frozen towers then compute in half precision while anything trainable on
top (prompts, heads) keeps fp32 master weights. This departs from CoOp, which casts CLIP *and the
context vectors* to fp16 and updates fp16 values with plain SGD. On the CPU only fp32 is allowed.

The text side (``TextEncoder``) runs open_clip's own modules on prompt *embeddings*, truncated
after the last EOT of the batch: the text transformer is causal and the feature is read at the
EOT position, so tokens after it cannot change the result, and 77 positions shrink to ~10-30.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import warnings
import weakref
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from torch import nn

from ptnl.core.paths import cache_dir, weights_dir

# The paper's backbones -> the open_clip config that matches OpenAI's weights (QuickGELU).
OPENAI_CONFIGS = {"RN50": "RN50-quickgelu", "ViT-B-32": "ViT-B-32-quickgelu"}
PRECISIONS = ("fp32", "bf16", "fp16")
RANDOM_INIT_SEED = 0  # pretrained=None builds these weights, so "random" names one fixed model
# Keys OpenAI's TorchScript files carry besides the weights (open_clip drops them the same way).
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")
# Files a safetensors/zip/pickle checkpoint may be; anything else with a separator is a path too.
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
DOWNLOAD_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True, eq=False)
class CLIPBundle:
    model: nn.Module  # open_clip CLIP, eval mode, requires_grad=False everywhere
    preprocess: Any  # test transform: PIL image -> normalised tensor [3, image_size, image_size]
    tokenizer: Any  # open_clip tokenizer: list[str] -> LongTensor [N, context_length]
    name: str  # the canonical name asked for ("RN50", "ViT-B-32", "toy-vit", ...)
    weights_id: str  # "openai" (or another tag), "random", "file:<sha256[:16]>", "toy:<sha256[:16]>"
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    embed_dim: int
    context_length: int
    device: str = "cpu"
    precision: str = "fp32"


# ----------------------------------------------------------------------------- loading


def _toy_backbones() -> dict:
    # Imported lazily: the toy world is an optional, separately owned package, and `import ptnl.models.clip`
    # must not build it. Tests replace this function to register a fake toy backbone.
    try:
        from ptnl.toy import TOY_BACKBONES
    except ImportError:
        return {}
    return dict(TOY_BACKBONES)


def known_backbones() -> list[str]:
    """Every backbone name ``load_clip`` accepts: the paper's two, the toy CLIPs, open_clip's configs."""
    return [*OPENAI_CONFIGS, *_toy_backbones(), *open_clip.list_models()]


def canonical_name(name: str) -> str:
    """CoOp spells ``ViT-B/32``; open_clip spells ``ViT-B-32``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"backbone name must be a non-empty string, got {name!r}")
    return name.strip().replace("/", "-")


def check_precision(device: str | torch.device, precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    if torch.device(device).type == "cpu" and precision != "fp32":
        raise ValueError(
            f"precision {precision!r} needs a GPU; on the CPU use precision='fp32' "
            "(half-precision autocast on the CPU is slow and not what the paper ran)"
        )


def autocast(device: str | torch.device, precision: str):
    """The autocast context for a precision: a no-op for fp32, bf16/fp16 autocast on the GPU."""
    check_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype)


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


@contextlib.contextmanager
def _quiet_open_clip():
    # open_clip logs "No pretrained weights loaded ... initialized randomly" on every random build;
    # we load weights ourselves right after, so the message is wrong here.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _is_torchscript(path: Path) -> bool:
    # torch.save and torch.jit.save both write zip files; only TorchScript has code and constants.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def _converted_torchscript(path: Path, sha: str) -> Path:
    """OpenAI's .pt files are TorchScript archives: loading one runs its code. Do it once, keep
    the weights as safetensors under cache_dir(), and read those from then on."""
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
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif _is_torchscript(path):
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
    if all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in _NON_WEIGHT_KEYS}


def load_weights(model: nn.Module, path: str | Path, what: str) -> None:
    """Load a checkpoint file into ``model`` strictly, with an error that says what did not match."""
    state = read_state_dict(path)
    state = open_clip.convert.convert_state_dict(model, state)
    own = model.state_dict()
    if (
        "logit_scale" in state
        and "logit_scale" in own
        and state["logit_scale"].shape != own["logit_scale"].shape
    ):
        state["logit_scale"] = state["logit_scale"].reshape(own["logit_scale"].shape)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with other shapes (e.g. {k}: {tuple(state[k].shape)} in the file, "
                f"{tuple(own[k].shape)} in the model)"
            )
        raise ValueError(
            f"checkpoint {path} does not match {what}: "
            + "; ".join(parts)
            + ". Check that the file was saved from this architecture."
        )
    model.load_state_dict(state, strict=True)


def looks_like_path(s: str) -> bool:
    """Whether a ``pretrained`` value names a local file rather than an open_clip tag."""
    return os.sep in s or "/" in s or s.endswith(_CHECKPOINT_SUFFIXES) or Path(s).expanduser().exists()


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A local checkpoint as given, or else by that name in ``weights_dir()`` (where users drop files)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_absolute() and (weights_dir() / p).is_file():
        return weights_dir() / p
    raise FileNotFoundError(
        f"checkpoint file {path} does not exist (looked at {p.resolve()} and {weights_dir() / p})"
    )


def weights_file_by_name(name: str) -> Path | None:
    """``weights/<name>.<ext>`` for a backbone name (``RN50.pt``, ``ViT-B-32.safetensors``, ...):
    the file ``pretrained="default"`` picks before OpenAI's tag, so an offline user only drops the
    file there. More than one candidate is an error rather than a silent choice."""
    name = canonical_name(name)
    base = name[: -len("-quickgelu")] if name.endswith("-quickgelu") else name
    stems = dict.fromkeys([name, base, base.replace("-", "/").replace("/", "_")])
    hits = [weights_dir() / f"{s}{ext}" for s in stems for ext in _CHECKPOINT_SUFFIXES]
    hits = [h for h in hits if h.is_file()]
    if len(hits) > 1:
        raise ValueError(
            f"several weight files for {name} under {weights_dir()}: {', '.join(h.name for h in hits)}; "
            "keep one, or name the file with pretrained=<path>"
        )
    return hits[0] if hits else None


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


def _tag_cache_hint(tag_cfg: dict, cache: str | None) -> str:
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants

        repo = tag_cfg["hf_hub"].rstrip("/").split("/")
        repo = "/".join(repo[:2])
        return f"{cache or constants.HF_HUB_CACHE} (Hugging Face repo {repo})"
    return f"{cache or os.path.expanduser('~/.cache/clip')} (from {tag_cfg.get('url')})"


def cached_tag_file(tag_cfg: dict, cache: str | None) -> str | None:
    """The already-downloaded checkpoint of a tag, without touching the network."""
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        repo = repo.rstrip("/")
        names = (
            [filename]
            if filename
            else [open_clip.constants.HF_SAFE_WEIGHTS_NAME, open_clip.constants.HF_WEIGHTS_NAME]
        )
        for n in names:
            hit = try_to_load_from_cache(repo, n, cache_dir=cache)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    url = tag_cfg.get("url", "")
    if url:
        p = os.path.join(cache or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(p):
            return p
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _unreachable(tag_cfg: dict) -> str | None:
    """Why the tag's download host cannot be reached, or None. One DNS lookup and TCP connect
    with a short timeout: offline, the hub client would otherwise retry for about a minute."""
    import socket
    from urllib.parse import urlsplit

    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants

        url = constants.ENDPOINT
    else:
        url = tag_cfg.get("url", "")
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    try:
        socket.create_connection(
            (parts.hostname, parts.port or 443), timeout=DOWNLOAD_PROBE_TIMEOUT_S
        ).close()
    except OSError as e:
        return f"{parts.hostname} is not reachable ({type(e).__name__}: {e})"
    return None


class WeightsUnavailable(FileNotFoundError, RuntimeError):
    """Pretrained weights that are neither cached nor downloadable here (a FileNotFoundError, so the
    CLI reports it in one line; a RuntimeError for callers that caught the download failure)."""


def _download_tag(model_name: str, tag: str, tag_cfg: dict, cache: str | None) -> str:
    hit = cached_tag_file(tag_cfg, cache)
    if hit:
        return hit
    error = "HF_HUB_OFFLINE is set" if _offline() else _unreachable(tag_cfg)
    if error is None:
        try:
            path = open_clip.pretrained.download_pretrained(tag_cfg, cache_dir=cache)
            if path:
                return path
            error = "open_clip returned no file"
        except Exception as e:  # network down, DNS, HTTP errors: all mean "not available here"
            error = f"the download failed: {type(e).__name__}: {e}"
    stem = OPENAI_CONFIGS.get(model_name, model_name).replace("-quickgelu", "")
    raise WeightsUnavailable(
        f"cannot load the '{tag}' weights of {model_name}: they are not in the cache folder "
        f"{_tag_cache_hint(tag_cfg, cache)} and {error}. Offline, any of these works: "
        f"a local file with `python -m ptnl run --pretrained FILE`, `pretrained: FILE` in a params set "
        f"(or `-p pretrained FILE` / a {{backbone: FILE}} mapping for notebooks), "
        f"load_clip({model_name!r}, pretrained='/path/to/checkpoint'); or the file saved as "
        f"{weights_dir() / (stem + '.pt')} (or .safetensors), which is found by name; or, with the "
        "files already in a Hugging Face cache, HF_HOME pointing at it and HF_HUB_OFFLINE=1. "
        "Accepted files: a .pt/.pth/.bin state dict, a .safetensors file, or OpenAI's original .pt."
    )


def _build_random(build, *args, **kwargs):
    # Random init draws from the global RNG inside open_clip; fork it so the weights are the same
    # on every call and the caller's RNG stream is left untouched.
    with torch.random.fork_rng(devices=[]), _quiet_open_clip():
        torch.manual_seed(RANDOM_INIT_SEED)
        return build(*args, **kwargs)


def _model_from_config(cfg: dict) -> nn.Module:
    cfg = dict(cfg)
    for key in ("preprocess_cfg", "name", "description"):
        cfg.pop(key, None)
    custom_text = cfg.pop("custom_text", False)
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    return model_class(**cfg)


def _image_size(model: nn.Module) -> int:
    size = getattr(model.visual, "image_size", 224)
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"only square image sizes are supported, model has {size}")
        size = size[0]
    return int(size)


@dataclass(frozen=True)
class Weights:
    """Where ``load_clip(name, pretrained)`` takes its weights from (``resolve_weights``)."""

    kind: str  # "random", "toy" (a shipped toy checkpoint), "file" (a local file) or "tag" (open_clip)
    path: Path | None = None  # toy and file
    tag: str | None = None  # tag


def _base(name: str) -> str:
    return name[: -len("-quickgelu")] if name.endswith("-quickgelu") else name


def resolve_weights(name: str, pretrained: str | os.PathLike | None = "default") -> Weights:
    """The one decision of which weights a (backbone, pretrained) pair means, shared by loading,
    the run id and ``make plan``. ``"default"``: a toy backbone's shipped checkpoint; for the
    others ``weights/<name>.pt`` (or another checkpoint suffix) if present, else OpenAI's tag.
    Raises FileNotFoundError for a named file that does not exist, ValueError for a bad value."""
    name = canonical_name(name)
    pretrained = os.fspath(pretrained) if isinstance(pretrained, os.PathLike) else pretrained
    if pretrained is None:
        return Weights("random")
    if not isinstance(pretrained, str) or not pretrained.strip():
        raise ValueError(f"pretrained must be 'default', a tag, a file path or None, got {pretrained!r}")
    toys = _toy_backbones()
    if name in toys:
        if pretrained == "default":
            return Weights("toy", path=Path(toys[name].checkpoint))
        if not looks_like_path(pretrained):
            raise ValueError(
                f"pretrained={pretrained!r} for toy backbone {name}: use 'default' (its shipped checkpoint), "
                "None (random weights) or a path to a checkpoint file"
            )
        return Weights("file", path=resolve_checkpoint(pretrained))
    if looks_like_path(pretrained):
        return Weights("file", path=resolve_checkpoint(pretrained))
    if pretrained == "default":
        by_name = weights_file_by_name(name)
        if by_name is not None:
            return Weights("file", path=by_name)
        if _base(name) not in OPENAI_CONFIGS:
            return Weights("tag", tag="default")  # load_clip says there is no default here
        return Weights("tag", tag="openai")
    return Weights("tag", tag=pretrained)


def weights_identity(name: str, pretrained: str | os.PathLike | None = "default") -> str:
    """The ``weights_id`` that ``load_clip(name, pretrained)`` would report, without building the
    model: "toy:<sha>" for a shipped toy checkpoint, "file:<sha of the tensors>" for a local file,
    "random" for None, else the open_clip tag. Run ids include it, so regenerating a checkpoint
    (same config, new weights) can never reuse the old checkpoint's results, while converting a
    file (.pt to .safetensors) keeps them."""
    try:
        w = resolve_weights(name, pretrained)
    except FileNotFoundError:
        return f"file-missing:{pretrained}"  # load_clip will say what is missing
    if w.kind == "random":
        return "random"
    if w.kind == "toy":
        return f"toy:{file_sha256(w.path)[:16]}" if w.path.is_file() else "toy:missing"
    if w.kind == "file":
        return file_weights_id(w.path)
    return w.tag


def weights_available(name: str, pretrained: str | os.PathLike | None = "default") -> bool:
    """Whether ``load_clip(name, pretrained)`` can load without a download (for ``make plan``)."""
    try:
        w = resolve_weights(name, pretrained)
    except (FileNotFoundError, ValueError):
        return False
    if w.kind in ("toy", "file"):
        return w.path.is_file()
    if w.kind == "random":
        return True
    config = OPENAI_CONFIGS.get(_base(canonical_name(name)), canonical_name(name))
    tag_cfg = open_clip.get_pretrained_cfg(config, w.tag) or open_clip.get_pretrained_cfg(
        canonical_name(name), w.tag
    )
    return bool(tag_cfg) and cached_tag_file(tag_cfg, None) is not None


def load_clip(
    name: str,
    pretrained: str | os.PathLike | None = "default",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    cache_dir: str | None = None,
) -> CLIPBundle:
    """Load a frozen CLIP (see the module docstring for names and ``pretrained``).

    ``cache_dir`` is open_clip's download cache (None = open_clip's default, the Hugging Face
    cache). The returned model is in eval mode (open_clip 3.3 returns train mode, which would let
    RN50's BatchNorm update its statistics) and has requires_grad=False on every parameter.
    """
    name = canonical_name(name)
    device = str(torch.device(device))
    check_precision(device, precision)
    toys = _toy_backbones()
    preprocess_cfg: dict[str, Any] = {}
    if name.startswith("toy-") and name not in toys:
        raise ValueError(
            f"unknown toy backbone {name!r}; known toy backbones: {sorted(toys) or 'none (ptnl.toy is not available)'}"
        )
    if name not in toys and name not in OPENAI_CONFIGS and name not in set(open_clip.list_models()):
        raise ValueError(
            f"unknown backbone {name!r}: use 'RN50' or 'ViT-B-32' (the paper's), a toy backbone "
            f"({sorted(toys) or 'ptnl.toy not available'}), or any name in open_clip.list_models()"
        )
    w = resolve_weights(name, pretrained)

    if name in toys:
        spec = toys[name]
        cfg = json.loads(Path(spec.config).read_text())
        preprocess_cfg = dict(cfg.get("preprocess_cfg", {}))
        model = _build_random(_model_from_config, cfg)
        tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
        embed_dim = int(cfg["embed_dim"])
        if w.kind == "toy":
            if not w.path.is_file():
                raise FileNotFoundError(
                    f"toy checkpoint {w.path} is missing; build it with `python -m ptnl.toy.pretrain`, "
                    f"or pass pretrained=None for random weights"
                )
            load_weights(model, w.path, f"toy backbone {name}")
            weights_id = f"toy:{file_sha256(w.path)[:16]}"
        elif w.kind == "random":
            weights_id = "random"
        else:
            load_weights(model, w.path, f"toy backbone {name}")
            weights_id = file_weights_id(w.path)
    else:
        base = _base(name)
        if w.kind == "tag" and w.tag == "default":
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ValueError(
                f"{name} has no default weights here: pass pretrained=<tag> (one of {tags}), a path "
                f"to a checkpoint file (or save it as {weights_dir() / (name + '.pt')}), or None for "
                "random weights"
            )
        config = name
        tag_cfg: dict = {}
        checkpoint: str | Path | None = None
        force_quick_gelu = False
        if w.kind == "random":
            weights_id = "random"
            config = OPENAI_CONFIGS.get(base, name)  # same architecture as with OpenAI's weights
        elif w.kind == "file":
            checkpoint = w.path
            # A local file for the paper's backbones holds OpenAI weights: QuickGELU, never GELU.
            # So does any OpenAI TorchScript file, whatever the architecture.
            config = OPENAI_CONFIGS.get(base, name)
            force_quick_gelu = _is_torchscript(checkpoint)
            weights_id = file_weights_id(checkpoint)
        else:
            tag_cfg = open_clip.get_pretrained_cfg(name, w.tag) or open_clip.get_pretrained_cfg(
                OPENAI_CONFIGS.get(base, name), w.tag
            )
            if not tag_cfg:
                tags = sorted(
                    set(open_clip.list_pretrained_tags_by_model(name))
                    | set(open_clip.list_pretrained_tags_by_model(OPENAI_CONFIGS.get(base, name)))
                )
                raise ValueError(
                    f"pretrained={w.tag!r} is neither a tag of {name} (tags: {tags}) nor an existing "
                    "checkpoint file"
                )
            if tag_cfg.get("quick_gelu", False):
                config = OPENAI_CONFIGS.get(base, name)
                force_quick_gelu = True
            weights_id = w.tag
            checkpoint = _download_tag(name, w.tag, tag_cfg, cache_dir)
        model = _build_random(
            open_clip.create_model,
            config,
            pretrained=None,
            precision="fp32",
            device="cpu",
            force_quick_gelu=force_quick_gelu,
        )
        if checkpoint is not None:
            load_weights(model, checkpoint, f"open_clip model {config}")
        preprocess_cfg = merge_preprocess_dict(getattr(model.visual, "preprocess_cfg", {}), tag_cfg)
        tokenizer = open_clip.get_tokenizer(config)
        embed_dim = int(open_clip.get_model_config(config)["embed_dim"])

    model = model.to(device).eval().requires_grad_(False)
    if _is_conv_tower(model.visual):
        # NHWC convolutions: measured 1.25x faster RN50 image encoding on CPU (oneDNN), and the
        # layout cuDNN's tensor cores want; the same numbers up to float rounding (~1e-8).
        # Encoding itself runs inference_tower(visual); this layout is for what copies the tower
        # to train it (visual fine-tuning of a toy ResNet).
        model.visual.to(memory_format=torch.channels_last)
    image_size = _image_size(model)
    pp = PreprocessCfg(**{**merge_preprocess_dict(PreprocessCfg(), preprocess_cfg), "size": image_size})
    vocab = getattr(tokenizer, "vocab_size", None)
    model_vocab = getattr(model, "vocab_size", None)
    if vocab is not None and model_vocab is not None and vocab > model_vocab:
        raise ValueError(f"{name}: the tokenizer has {vocab} tokens but the text tower only {model_vocab}")
    return CLIPBundle(
        model=model,
        preprocess=image_transform_v2(pp, is_train=False),
        tokenizer=tokenizer,
        name=name,
        weights_id=weights_id,
        image_size=image_size,
        mean=tuple(float(m) for m in pp.mean),
        std=tuple(float(s) for s in pp.std),
        embed_dim=embed_dim,
        context_length=int(model.context_length),
        device=device,
        precision=precision,
    )


# ----------------------------------------------------------------------------- image features


def encode_images(bundle: CLIPBundle, images: torch.Tensor, precision: str | None = None) -> torch.Tensor:
    """Frozen image-tower features [B, E] (float32, not normalised) of preprocessed images [B,3,H,W]."""
    precision = precision or bundle.precision
    model = bundle.model
    if model.training:  # someone called .train(): RN50's BatchNorm must keep its running statistics
        model.eval()
    images = images.to(bundle.device, non_blocking=True)
    visual = inference_tower(model.visual)
    if images.dim() == 4 and _is_conv_tower(model.visual):
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast(bundle.device, precision):
        features = visual(images)  # what open_clip's encode_image(normalize=False) computes
    return features.float()


def _is_conv_tower(visual: nn.Module) -> bool:
    return isinstance(visual, open_clip.modified_resnet.ModifiedResNet)


_INFERENCE_TOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_tower(visual: nn.Module) -> nn.Module:
    """The frozen image tower as ``encode_images`` runs it: ``visual`` itself, or for a
    ModifiedResNet (RN50) a copy with every eval-mode BatchNorm folded into the convolution before
    it, in NHWC layout (measured 1.25x faster on CPU than BN as separate passes; the same features
    up to float rounding, ~1e-7 relative). Built once per tower; the tower is frozen, so a change
    to its weights afterwards is not seen (build a new bundle instead)."""
    if not _is_conv_tower(visual):
        return visual
    folded = _INFERENCE_TOWERS.get(visual)
    if folded is None:
        folded = _INFERENCE_TOWERS[visual] = fold_batchnorm(visual)
    return folded


def fold_batchnorm(visual: nn.Module) -> nn.Module:
    """A copy of a ModifiedResNet in eval mode with each BatchNorm2d that directly follows a Conv2d
    (in registration order, which is forward order in open_clip's ModifiedResNet) folded into it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not _is_conv_tower(visual):
        raise ValueError(f"fold_batchnorm is for open_clip's ModifiedResNet, got {type(visual).__name__}")
    out = copy.deepcopy(visual).eval()
    for parent in out.modules():
        names = list(parent._modules)
        for prev, name in zip(names, names[1:]):
            conv, bn = parent._modules[prev], parent._modules[name]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[prev] = fuse_conv_bn_eval(conv, bn)
                parent._modules[name] = nn.Identity()
    return out.to(memory_format=torch.channels_last).requires_grad_(False)


# ----------------------------------------------------------------------------- text features


def text_tower(model: nn.Module) -> nn.Module:
    """The module holding the CLIP text transformer's parts, with the checks prompt learning needs."""
    if isinstance(model, open_clip.CLIP):
        tower, pool = model, model.text_pool_type
    elif isinstance(getattr(model, "text", None), open_clip.transformer.TextTransformer):
        tower, pool = model.text, model.text.pool_type
        if tower.cls_emb is not None:
            raise ValueError("text towers with a CLS embedding are not supported (the EOT feature is used)")
    else:
        raise ValueError(
            f"{type(model).__name__} has no CLIP text transformer (HF text towers are not supported)"
        )
    if pool != "argmax" or getattr(tower, "attn_mask", None) is None:
        raise ValueError(
            "prompt learning needs a causal text transformer pooled at the EOT token "
            f"(pool_type='argmax'), got pool_type={pool!r}"
        )
    return tower


class TextEncoder(nn.Module):
    """CLIP's text tower run from token embeddings, truncated after the last EOT of the batch.

    ``forward(embeddings [N, L, D], eot [N]) -> features [N, E]``. The submodules are open_clip's
    own (shared with the model, not copied): ``copy.deepcopy(TextEncoder(model))`` gives an
    independent copy to fine-tune (TEnc-FT).

    ``shared_prefix=P`` says that positions ``0..P-1`` are the same for every row (CoOp's unified
    context at the end: [SOS][ctx]). Their hidden states, keys and values are computed once, with
    batch 1, and the other positions attend to them; the causal mask makes this the same
    computation. With ``groups=R`` the rows are R runs' prompts stacked run after run, each run
    with its own prefix (grouped prompt tuning): the prefix is computed once per run.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        tower = text_tower(model)
        self.transformer = tower.transformer
        self.positional_embedding = tower.positional_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)
        if not getattr(self.transformer, "batch_first", True):
            raise ValueError("open_clip text transformer must be batch-first (open_clip >= 2.23)")

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[0])

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def forward(
        self, embeddings: torch.Tensor, eot: torch.Tensor, shared_prefix: int = 0, groups: int = 1
    ) -> torch.Tensor:
        n, length, _ = embeddings.shape
        if n % groups:
            raise ValueError(f"{n} prompts cannot be split into {groups} equal groups")
        eot = eot.to(embeddings.device)
        L = int(eot.max()) + 1  # causal: nothing after the last EOT of the batch reaches any EOT
        if L > self.context_length or length < L:
            raise ValueError(
                f"EOT at position {L - 1} but {length} embeddings / context {self.context_length}"
            )
        x = embeddings[:, :L] + self.positional_embedding[:L].to(embeddings.dtype)
        if 0 < shared_prefix < int(eot.min()) and self._blocks_are_plain():
            x = self._run_shared_prefix(x, shared_prefix, groups)
        else:
            x = self.transformer(x, attn_mask=self.attn_mask[:L, :L])
        x = self.ln_final(x)
        x = x[torch.arange(n, device=x.device), eot]
        return self._project(x)

    def _blocks_are_plain(self) -> bool:
        # The shared-prefix path re-runs open_clip's ResidualAttentionBlock step by step with its
        # own attention; custom blocks (qk-norm, scaled cosine attention, ...) and attention
        # modules other than a packed nn.MultiheadAttention fall back to the plain path.
        return all(
            type(b) is open_clip.transformer.ResidualAttentionBlock
            and not hasattr(b, "ln_1_kv")
            and type(b.attn) is nn.MultiheadAttention
            and b.attn.batch_first
            and b.attn._qkv_same_embed_dim
            and b.attn.bias_k is None
            and not (b.training and b.attn.dropout > 0)
            for b in self.transformer.resblocks
        ) and not getattr(self.transformer, "grad_checkpointing", False)

    def _run_shared_prefix(self, x: torch.Tensor, P: int, groups: int = 1) -> torch.Tensor:
        n, L, d = x.shape
        c = n // groups
        mask = self.attn_mask[:L, :L].to(x.dtype)
        # rows of a group are equal on the prefix: keep one per group
        prefix, rest = x.view(groups, c, L, d)[:, 0, :P], x[:, P:]
        for blk in self.transformer.resblocks:
            ap, ar = _prefix_attention(blk.attn, blk.ln_1(prefix), blk.ln_1(rest), mask)
            prefix = prefix + blk.ls_1(ap)
            rest = rest + blk.ls_1(ar)
            prefix = prefix + blk.ls_2(blk.mlp(blk.ln_2(prefix)))
            rest = rest + blk.ls_2(blk.mlp(blk.ln_2(rest)))
        return torch.cat([_per_row(prefix, c), rest], dim=1)


def _per_row(t: torch.Tensor, c: int) -> torch.Tensor:
    """[G, ...] -> [G*c, ...], each group's entry repeated for its c rows (a view when G = 1)."""
    if t.shape[0] == 1:
        return t.expand(c, *t.shape[1:])
    return t.repeat_interleave(c, dim=0)


def _prefix_attention(attn: nn.MultiheadAttention, hp: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor):
    """nn.MultiheadAttention (batch-first, packed in-projection) of shared prefixes ``hp`` [G, P, D]
    and the rows' own positions ``hr`` [G*c, R, D] (group after group) that attend to their group's
    prefix, with the prefix's queries, keys and values projected once per group instead of once per
    row: with 16 context tokens and a few name tokens that projection was about a third of the text
    tower's work. ``mask``: additive [P+R, P+R]."""
    P, h = hp.shape[1], attn.num_heads
    c = hr.shape[0] // hp.shape[0]

    def heads(t):  # [B, T, D] -> [B, h, T, D/h]
        return t.unflatten(-1, (h, -1)).transpose(1, 2)

    qp, kp, vp = F.linear(hp, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    qr, kr, vr = F.linear(hr, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    kp, vp = heads(kp), heads(vp)
    out_p = F.scaled_dot_product_attention(heads(qp), kp, vp, attn_mask=mask[:P, :P])
    k = torch.cat([_per_row(kp, c), heads(kr)], dim=2)
    v = torch.cat([_per_row(vp, c), heads(vr)], dim=2)
    out_r = F.scaled_dot_product_attention(heads(qr), k, v, attn_mask=mask[P:, :])

    def merge(t):  # [B, h, T, D/h] -> [B, T, D], then the output projection
        return attn.out_proj(t.transpose(1, 2).flatten(2))

    return merge(out_p), merge(out_r)


def check_prompt_lengths(bundle: CLIPBundle, texts: Sequence[str]) -> None:
    tok = bundle.tokenizer
    if not hasattr(tok, "encode"):
        return
    for t in texts:
        n = len(tok.encode(t)) + 2  # + SOS + EOT
        if n > bundle.context_length:
            raise ValueError(
                f"prompt {t!r} is {n} tokens, more than the context length {bundle.context_length}; "
                "shorten the template or the class name"
            )


def encode_text(
    bundle: CLIPBundle, texts: Sequence[str], precision: str | None = None, batch_size: int = 256
) -> torch.Tensor:
    """Frozen text-tower features [N, E] (float32, not normalised) of hand-crafted prompt strings."""
    if isinstance(texts, str):
        raise ValueError("encode_text takes a list of strings, not one string")
    texts = list(texts)
    if not texts:
        raise ValueError("encode_text needs at least one prompt")
    check_prompt_lengths(bundle, texts)
    precision = precision or bundle.precision
    encoder = TextEncoder(bundle.model)
    out = []
    with torch.no_grad(), autocast(bundle.device, precision):
        for i in range(0, len(texts), batch_size):
            tokens = bundle.tokenizer(texts[i : i + batch_size]).to(bundle.device)
            eot = tokens.argmax(dim=-1)  # CLIP's EOT has the largest id
            L = int(eot.max()) + 1
            out.append(encoder(bundle.model.token_embedding(tokens[:, :L]), eot).float())
    return torch.cat(out)


def zero_shot_classifier(
    bundle: CLIPBundle,
    classnames: Sequence[str],
    templates: str | Sequence[str],
    precision: str | None = None,
) -> torch.Tensor:
    """Unit-norm class embeddings [C, E] for a template (one "{}") or a template ensemble.

    An ensemble averages the unit-norm features over templates and normalises again (CLIP's and
    CoOp's ZeroshotCLIP2 recipe). Underscores in class names become spaces, as in CoOp.
    """
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates:
        raise ValueError("zero_shot_classifier needs at least one template")
    for t in templates:
        if t.count("{}") != 1:
            raise ValueError(f"template {t!r} must contain exactly one '{{}}' for the class name")
    names = [c.replace("_", " ") for c in classnames]
    if not names:
        raise ValueError("zero_shot_classifier needs at least one class name")
    per_template = [
        F.normalize(encode_text(bundle, [t.format(c) for c in names], precision), dim=-1) for t in templates
    ]
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)
