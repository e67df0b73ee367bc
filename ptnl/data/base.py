"""The two types every dataset, real or toy, is read into.

A ``Split`` is N images with integer labels. Images are addressed by a ``ref`` (a path relative
to the dataset's image folder for real data, a stable id for the toy world) and materialised on
demand by the split's ``image_loader``, so a 1.28M-image ImageNet split costs a list of strings,
and the feature cache can key on refs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True, eq=False)
class Split:
    refs: tuple[str, ...]
    labels: np.ndarray  # int64, shape [N], values in [0, n_classes)
    image_loader: Callable[[str], Image.Image] = field(repr=False)

    def __post_init__(self):
        labels = np.asarray(self.labels, dtype=np.int64)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "refs", tuple(self.refs))
        if labels.ndim != 1 or len(labels) != len(self.refs):
            raise ValueError(f"a Split needs one label per ref: {len(self.refs)} refs, labels {labels.shape}")

    def __len__(self) -> int:
        return len(self.refs)

    def load_image(self, i: int) -> Image.Image:
        """The i-th image as an RGB PIL image."""
        return self.image_loader(self.refs[i]).convert("RGB")

    def subset(self, indices: Sequence[int] | np.ndarray) -> Split:
        idx = np.asarray(indices, dtype=np.int64)
        return Split(tuple(self.refs[i] for i in idx), self.labels[idx], self.image_loader)


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str  # the name it was loaded by, e.g. "OxfordPets" or "toy-shapes"
    classnames: tuple[str, ...]  # cleaned as CoOp cleans them, index = label
    template: str  # the hand-crafted prompt, with one "{}" for the class name
    train: Split
    val: Split | None
    test: Split
    split_source: str  # where the split came from: "coop-split", "torchvision", "toy", ...; recorded in runs
    root: str | None = None  # folder the images were read from (None for the toy world)

    def __post_init__(self):
        object.__setattr__(self, "classnames", tuple(self.classnames))
        if self.template.count("{}") != 1:
            raise ValueError(f"template {self.template!r} must contain exactly one '{{}}' for the class name")

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def prompts(self, template: str | None = None) -> list[str]:
        """One prompt per class, class names with underscores as spaces (as CoOp does)."""
        t = self.template if template is None else template
        return [t.format(c.replace("_", " ")) for c in self.classnames]
