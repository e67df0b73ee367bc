"""The toy CLIPs: tiny open_clip models pretrained on the toy world (``ptnl.data.toy``).

``ptnl.models.clip.load_clip("toy-vit")`` builds an open_clip model from ``configs/toy-vit.json`` and
loads ``checkpoints/toy-vit.safetensors``; ``pretrained="step<k>"`` loads one of the toy lab's early
snapshots (``ptnl.models.toy.lab``).

- ``ptnl.models.toy.lab``         the toy lab's checkpoints (``checkpoints/lab/``)
- ``ptnl.tools.toy.pretrain``     ``python -m ptnl toy pretrain --backbone toy-vit`` regenerates a checkpoint
- ``ptnl.tools.toy.sanity``       ``python -m ptnl toy sanity`` prints zero-shot and linear-probe accuracy
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ptnl.core.paths import toy_checkpoint_dir

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class ToyBackbone:
    config: Path  # open_clip model-config JSON (its stem is the open_clip model name)
    checkpoint: Path  # fp16 safetensors state dict; <name>.json beside it records how it was trained


TOY_BACKBONES = {
    name: ToyBackbone(
        config=CONFIG_DIR / f"{name}.json", checkpoint=toy_checkpoint_dir() / f"{name}.safetensors"
    )
    for name in ("toy-vit", "toy-rn")
}
