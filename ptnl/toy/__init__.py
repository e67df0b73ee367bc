"""The toy world: a procedurally generated image-caption world and tiny CLIPs pretrained on it.

It lets every notebook run end to end on a laptop through the same code path as real CLIP:
``ptnl.models.clip.load_clip("toy-vit")`` builds an open_clip model from ``configs/toy-vit.json`` and loads
``checkpoints/toy-vit.safetensors``; ``ptnl.data.load_dataset("toy-shapes")`` returns a `Dataset`.

- ``ptnl.toy.world``    rendering and captions
- ``ptnl.toy.tasks``    the downstream tasks (`load_task`; their names are `TOY_TASKS` here)
- ``ptnl.toy.pretrain`` ``python -m ptnl toy pretrain --backbone toy-vit`` regenerates a checkpoint
- ``ptnl.toy.sanity``   ``python -m ptnl toy sanity`` prints zero-shot and linear-probe accuracy
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

TOY_TASKS = ("toy-shapes", "toy-fine", "toy-textures", "toy-scatter")  # the toy set's four tasks
OBJECTS_CLASS_COUNTS = (8, 16, 32, 64)  # the toy lab's nested family toy-objects-<C> (notebook 09)
# a 64-class diagnostic task, in no notebook by default, and the lab's family (ptnl.toy.tasks)
EXTRA_TASKS = ("toy-objects", *(f"toy-objects-{n}" for n in OBJECTS_CLASS_COUNTS))
