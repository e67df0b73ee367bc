"""Which weights a backbone name and ``pretrained`` value mean, and the identity of those weights.

``resolve_weights(name, pretrained)`` is the one decision, shared by ``load_clip``, the run id
(``weights_identity``) and ``make plan`` (``weights_available``). Names:

- ``RN50`` and ``ViT-B-32`` (also spelled ``ViT-B/32``): the paper's two backbones. They always
  use open_clip's ``-quickgelu`` configs, because OpenAI trained them with QuickGELU and plain
  ``RN50`` in open_clip silently uses GELU: loading OpenAI weights into it gives wrong features
  with only a warning. ``pretrained="default"`` means, for these two, a file named after the
  backbone in ``weights/`` (``weights/RN50.pt``, ``weights/ViT-B-32.safetensors``, ...) if there
  is one, else the ``"openai"`` tag.
- any other open_clip model name (``open_clip.list_models()``), with an explicit tag or file.
- the toy backbones of ``ptnl.models.toy.TOY_BACKBONES`` (a model-config JSON and a safetensors checkpoint
  each): ``"default"`` is the shipped checkpoint, ``"step<k>"`` a toy lab snapshot (``ptnl.models.toy.lab``).

``pretrained`` is an open_clip tag (downloaded to open_clip's cache as open_clip does), a path to
a local checkpoint (a state dict saved by torch, a ``.safetensors`` file, or OpenAI's original
TorchScript ``.pt``, converted once to safetensors under ``cache_dir()``), or ``None`` for
random weights (seeded, so "random" is still one fixed set of weights and a valid cache key).

Importing this module imports neither torch nor open_clip, so a run id can be computed without them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ptnl.core.paths import weights_dir
from ptnl.models.checkpoints import (
    CHECKPOINT_SUFFIXES,
    file_sha256,
    file_weights_id,
    looks_like_path,
    resolve_checkpoint,
)
from ptnl.models.toy import TOY_BACKBONES
from ptnl.models.toy.lab import existing_lab_checkpoint, is_lab_name

if TYPE_CHECKING:
    pass

# The paper's backbones -> the open_clip config that matches OpenAI's weights (QuickGELU).
OPENAI_CONFIGS = {"RN50": "RN50-quickgelu", "ViT-B-32": "ViT-B-32-quickgelu"}
DOWNLOAD_PROBE_TIMEOUT_S = 3.0


# ----------------------------------------------------------------------------- names


def known_backbones() -> list[str]:
    """Every backbone name ``load_clip`` accepts: the paper's two, the toy CLIPs, open_clip's configs."""
    import open_clip

    return [*OPENAI_CONFIGS, *TOY_BACKBONES, *open_clip.list_models()]


def canonical_name(name: str) -> str:
    """CoOp spells ``ViT-B/32``; open_clip spells ``ViT-B-32``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"backbone name must be a non-empty string, got {name!r}")
    return name.strip().replace("/", "-")


def _base(name: str) -> str:
    return name[: -len("-quickgelu")] if name.endswith("-quickgelu") else name


def openai_config(name: str) -> str:
    """The open_clip config a canonical name is built from: the QuickGELU one for the paper's
    backbones (with or without the ``-quickgelu`` suffix), else the name itself."""
    return OPENAI_CONFIGS.get(_base(name), name)


def weights_file_by_name(name: str) -> Path | None:
    """``weights/<name>.<ext>`` for a backbone name (``RN50.pt``, ``ViT-B-32.safetensors``, ...):
    the file ``pretrained="default"`` picks before OpenAI's tag, so an offline user only drops the
    file there. More than one candidate is an error rather than a silent choice."""
    name = canonical_name(name)
    base = _base(name)
    stems = dict.fromkeys([name, base, base.replace("-", "/").replace("/", "_")])
    hits = [weights_dir() / f"{s}{ext}" for s in stems for ext in CHECKPOINT_SUFFIXES]
    hits = [h for h in hits if h.is_file()]
    if len(hits) > 1:
        raise ValueError(
            f"several weight files for {name} under {weights_dir()}: {', '.join(h.name for h in hits)}; "
            "keep one, or name the file with pretrained=<path>"
        )
    return hits[0] if hits else None


# ----------------------------------------------------------------------------- open_clip tags


def tag_config(name: str, tag: str) -> dict:
    """open_clip's pretrained config of ``tag`` for a canonical backbone name ({} if it has none),
    looked up under the name and under its QuickGELU config."""
    import open_clip

    return open_clip.get_pretrained_cfg(name, tag) or open_clip.get_pretrained_cfg(openai_config(name), tag)


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
        import open_clip
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


def unreachable(tag_cfg: dict) -> str | None:
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


def download_tag(model_name: str, tag: str, tag_cfg: dict, cache: str | None) -> str:
    """The checkpoint file of an open_clip tag: from the cache, else downloaded; WeightsUnavailable
    (naming every offline route) when neither works."""
    hit = cached_tag_file(tag_cfg, cache)
    if hit:
        return hit
    error = "HF_HUB_OFFLINE is set" if _offline() else unreachable(tag_cfg)
    if error is None:
        import open_clip

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


# ----------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Weights:
    """Where ``load_clip(name, pretrained)`` takes its weights from (``resolve_weights``)."""

    kind: str  # "random", "toy" (a shipped toy checkpoint), "file" (a local file) or "tag" (open_clip)
    path: Path | None = None  # toy and file
    tag: str | None = None  # tag
    model: str | None = None  # tag: the open_clip model the tag belongs to

    @property
    def weights_id(self) -> str:
        """The name of these weights in cache keys and run ids (see ``weights_identity``)."""
        if self.kind == "random":
            return "random"
        if self.kind == "toy":
            return f"toy:{file_sha256(self.path)[:16]}" if self.path.is_file() else "toy:missing"
        if self.kind == "file":
            return file_weights_id(self.path)
        # A tag whose file is in the cache is named by its tensors, as the same file passed by path
        # is; before the download, by the tag (it names one published file).
        tag_cfg = tag_config(self.model, self.tag) if self.model else {}
        cached = cached_tag_file(tag_cfg, None) if tag_cfg else None
        return file_weights_id(cached) if cached else self.tag


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
    if name in TOY_BACKBONES:
        if pretrained == "default":
            return Weights("toy", path=Path(TOY_BACKBONES[name].checkpoint))
        if is_lab_name(pretrained):  # the toy lab's early snapshots of the shipped recipe
            return Weights("toy", path=existing_lab_checkpoint(name, pretrained))
        if not looks_like_path(pretrained):
            raise ValueError(
                f"pretrained={pretrained!r} for toy backbone {name}: use 'default' (its shipped checkpoint), "
                "'step<k>' (a toy lab snapshot), None (random weights) or a path to a checkpoint file"
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
        return Weights("tag", tag="openai", model=name)
    return Weights("tag", tag=pretrained, model=name)


def weights_identity(name: str, pretrained: str | os.PathLike | None = "default") -> str:
    """The ``weights_id`` that ``load_clip(name, pretrained)`` would report, without building the
    model: "toy:<sha>" for a shipped toy checkpoint, "file:<sha of the tensors>" for a local file,
    "random" for None, an open_clip tag by its cached file's tensors (the tag itself before it is
    downloaded). Run ids include it instead of ``pretrained``, so regenerating a checkpoint
    (same config, new weights) can never reuse the old checkpoint's results, while converting a
    file (.pt to .safetensors), moving it, or naming it by path instead of "default", keeps them."""
    try:
        w = resolve_weights(name, pretrained)
    except FileNotFoundError:
        return f"file-missing:{pretrained}"  # load_clip will say what is missing
    return w.weights_id


def local_weights_identity(path: str | os.PathLike) -> str:
    """``file:<sha of the tensors>`` of a state-dict file (``file-missing:<path>`` if there is none)."""
    try:
        return file_weights_id(resolve_checkpoint(path))
    except FileNotFoundError:
        return f"file-missing:{os.fspath(path)}"


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
    tag_cfg = tag_config(canonical_name(name), w.tag)
    return bool(tag_cfg) and cached_tag_file(tag_cfg, None) is not None
