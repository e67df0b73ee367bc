"""Downstream tasks in the toy world, loaded as the same `Dataset` the real datasets are.

Four tasks mirror the paper's variety: generic objects (Caltech101), fine-grained attribute
combinations (OxfordPets, Flowers102, FGVCAircraft), textures (DTD), and fields of small objects
(EuroSAT's land-cover tiles: the label is what covers the frame, so any crop still shows it). A
class fixes some attributes; every other attribute and every nuisance is drawn per image, as in
pretraining, and every task picture is shot with a downstream dataset's camera (`world.render`,
camera=True); pretraining pictures are not, though half of them pass through random web cameras
whose range covers it (`pretrain.web_camera`). Images are rendered on demand from their
ref ("toy-shapes/test/00042"), so a task costs nothing until a picture is asked for, and each
split draws from its own seed stream, disjoint from the pretraining stream (stream 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from ptnl.data.base import Dataset, Split
from ptnl.data.toy import (
    EXTRA_TASKS,
    OBJECTS_CLASS_COUNTS,
    TOY_TASKS,
)  # names listed once (ptnl.data.toy imports no world)
from ptnl.data.toy.world import (
    COLOURS,
    IMAGE_SIZE,
    PATTERNS,
    SHAPES,
    Attrs,
    image_rng,
    plural,
    render,
    sample_attrs,
)

N_TRAIN, N_VAL, N_TEST = 64, 16, 40  # images per class; train is the pool few-shot draws from
SPLITS = {
    "train": (0, N_TRAIN),
    "val": (1, N_VAL),
    "test": (2, N_TEST),
}  # split -> (stream offset, per class)


@dataclass(frozen=True)
class ToyTask:
    stream: int  # seed stream base; splits use stream + offset. Pretraining uses stream 0.
    template: str
    classes: tuple[tuple[str, Attrs], ...]  # (class name, the attributes the class fixes)

    @property
    def classnames(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.classes)


_FINE = tuple(
    (f"{c} {p} {s}", Attrs(shape=s, colour=c, pattern=p, count=1))
    for c in ("red", "orange")
    for p in ("striped", "dotted", "checkered")
    for s in ("circle", "hexagon")
)

TASKS: dict[str, ToyTask] = {
    # generic objects: which shape, whatever its colour, pattern and size
    "toy-shapes": ToyTask(100, "a photo of a {}.", tuple((s, Attrs(shape=s, count=1)) for s in SHAPES)),
    # fine-grained: colour x pattern x shape among near neighbours (red/orange, circle/hexagon)
    "toy-fine": ToyTask(200, "a close-up photo of a {}.", _FINE),
    # textures: full-frame swatches, DTD's template
    "toy-textures": ToyTask(
        300, "{} texture.", tuple((p, Attrs(kind="swatch", pattern=p)) for p in PATTERNS)
    ),
    # fields of small objects: which shape covers the frame, a label any crop keeps
    "toy-scatter": ToyTask(
        500, "a field of {}.", tuple((plural(s), Attrs(kind="scatter", shape=s)) for s in SHAPES)
    ),
    # A diagnostic task, not one of the toy set's four: generic objects with many classes (colour x
    # shape, 64), as the paper's datasets have 37-1000 where the four have 8-12. Prompt tuning on it
    # costs ~40x a toy-shapes run, so no notebook uses it by default (docs/log/toy-world-v2.md).
    "toy-objects": ToyTask(
        600,
        "a photo of a {}.",
        tuple((f"{c} {s}", Attrs(shape=s, colour=c, count=1)) for c in COLOURS for s in SHAPES),
    ),
}


def _objects_family() -> dict[str, ToyTask]:
    """The toy lab's task family ``toy-objects-<C>`` (C = 8, 16, 32, 64; notebook 09): generic
    objects named by colour and shape, one template, nested so that each task's classes are the
    first C of one fixed order. The order walks the 8 x 8 colour-shape grid diagonal by diagonal
    (diagonal k pairs colour i with shape i + k), so every task holds each colour and each shape
    C / 8 times: more classes means more, finer distinctions, never a different mix. Each task
    draws its own pictures (stream 800 + C)."""
    colours = tuple(COLOURS)
    order = [
        (colours[i], SHAPES[(i + k) % len(SHAPES)]) for k in range(len(SHAPES)) for i in range(len(colours))
    ]
    classes = tuple((f"{c} {s}", Attrs(shape=s, colour=c, count=1)) for c, s in order)
    return {
        f"toy-objects-{n}": ToyTask(800 + n, "a photo of a {}.", classes[:n]) for n in OBJECTS_CLASS_COUNTS
    }


TASKS.update(_objects_family())


def _task(name: str) -> ToyTask:
    if name not in TASKS:
        raise ValueError(f"unknown toy task {name!r}; choose one of {TOY_TASKS + EXTRA_TASKS}")
    return TASKS[name]


def task_attrs(ref: str) -> tuple[Attrs, np.random.Generator]:
    """The full attributes of the picture `ref`, and the generator positioned to render it."""
    try:
        name, split, idx = ref.split("/")
        offset, _ = SPLITS[split]
        i = int(idx)
    except (ValueError, KeyError) as e:
        raise ValueError(f"bad toy image ref {ref!r}; expected '<task>/<train|val|test>/<index>'") from e
    task = _task(name)
    rng = image_rng(task.stream + offset, i)
    return sample_attrs(rng, fixed=task.classes[i % len(task.classes)][1]), rng


@lru_cache(maxsize=8192)
def _render_ref(ref: str, camera: bool = True) -> bytes:
    attrs, rng = task_attrs(ref)
    return render(attrs, rng, camera=camera).tobytes()


def load_image(ref: str, camera: bool = True) -> Image.Image:
    """Render the toy picture `ref` (cached: a few thousand 12 KB images); ``camera=False``: the
    same objects without the downstream camera (a diagnostic, see `load_task`)."""
    return Image.frombytes("RGB", (IMAGE_SIZE, IMAGE_SIZE), _render_ref(ref, camera))


def _load_image_camera_off(ref: str) -> Image.Image:
    return load_image(ref, camera=False)


def _split(name: str, split: str, camera: bool = True) -> Split:
    n_cls = len(_task(name).classes)
    n = SPLITS[split][1] * n_cls
    # Labels cycle through the classes, so any prefix of a split is class-balanced.
    loader = load_image if camera else _load_image_camera_off
    return Split(tuple(f"{name}/{split}/{i:05d}" for i in range(n)), np.arange(n) % n_cls, loader)


def load_task(name: str, camera: bool = True) -> Dataset:
    """A toy task as a `Dataset` (split_source "toy"): train pool, val and a fixed test set.

    ``camera=False`` renders the same pictures (same objects, same nuisances) without the
    downstream camera, as pretraining pictures are shot: how much of a zero-shot shortfall is the
    camera shift (``python -m ptnl toy sanity``, docs/log/toy-world-v2.md). A diagnostic only: the
    dataset is named ``"<task> (camera off)"`` so no feature cache mixes it with the real task."""
    task = _task(name)
    return Dataset(
        name=name if camera else f"{name} (camera off)",
        classnames=task.classnames,
        template=task.template,
        train=_split(name, "train", camera),
        val=_split(name, "val", camera),
        test=_split(name, "test", camera),
        split_source="toy",
        root=None,
    )


def split_arrays(split: Split) -> np.ndarray:
    """All images of a split as uint8 [N, 64, 64, 3] (for tests and the sanity script)."""
    return np.stack([np.asarray(split.load_image(i)) for i in range(len(split))])
