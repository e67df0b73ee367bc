"""The two types every dataset, real or toy, is read into, and the image loader of real ones.

A ``Split`` is N images with integer labels. Images are addressed by a ``ref`` (a path relative
to the dataset's image folder for real data, a stable id for the toy world) and materialised on
demand by the split's ``image_loader``, so a 1.28M-image ImageNet split costs a list of strings,
and the feature cache can key on refs. A real split's loader is an ``ImageFiles``: ``root/ref``.

``Dataset.fingerprint()`` hashes what a run's numbers depend on (see its docstring); run ids
include it through ``ptnl.data.identity``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


class ImageReadError(OSError, ValueError):
    """An image file that cannot be decoded. An OSError, as PIL's own errors are, and a ValueError,
    so that the CLI's ``except (ValueError, FileNotFoundError)`` reports it in one line."""


# PIL's ways of saying "this file is not a readable image" (truncated, not an image, bad header).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageFiles:
    """The image loader of a real split: ``root/ref``, decoded in full, errors naming the file.

    A plain dataclass so it pickles (DataLoader workers under spawn), and so ``check_images`` can
    find the files behind a split.
    """

    root: str
    dataset: str
    split: str

    def path(self, ref: str) -> str:
        return os.path.join(self.root, ref)

    def __call__(self, ref: str) -> Image.Image:
        path = self.path(ref)
        try:
            with open(path, "rb") as f:
                img = Image.open(f)
                img.load()  # PIL decodes lazily: a truncated file only fails here
        except DECODE_ERRORS as e:
            raise ImageReadError(
                f"{self.dataset} {self.split}: cannot read image {path}: {e}. Re-download it or remove it "
                "from the split"
            ) from e
        return img


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
    # The ground truth of each train image where known, -1 where not (int64 [len(train)]), for data
    # whose train labels are noisy as shipped (ptnl.data.noisy_sets); train.labels is what training
    # sees. None: no ground truth apart from train.labels (every other dataset).
    train_true_labels: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "classnames", tuple(self.classnames))
        if self.template.count("{}") != 1:
            raise ValueError(f"template {self.template!r} must contain exactly one '{{}}' for the class name")
        if self.train_true_labels is not None:
            true = np.asarray(self.train_true_labels)
            if true.ndim != 1 or len(true) != len(self.train) or not np.issubdtype(true.dtype, np.integer):
                raise ValueError(
                    f"{self.name}: train_true_labels must be integers, one per train image "
                    f"({len(self.train)}), got {true.dtype} {true.shape}"
                )
            if len(true) and (true.min() < -1 or true.max() >= len(self.classnames)):
                raise ValueError(
                    f"{self.name}: train_true_labels must be -1 (unknown) or in [0, {len(self.classnames)}), "
                    f"got values in [{true.min()}, {true.max()}]"
                )
            object.__setattr__(self, "train_true_labels", true.astype(np.int64))

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def prompts(self, template: str | None = None) -> list[str]:
        """One prompt per class, class names with underscores as spaces (as CoOp does)."""
        t = self.template if template is None else template
        return [t.format(c.replace("_", " ")) for c in self.classnames]

    def fingerprint(self) -> str:
        """``"<split_source>:<16 hex digits>"``: a sha256 of the name, split source, template, class
        names (cleaned) and, for train, val and test in turn, the ordered refs and labels; then the
        train images' true labels, if the dataset has them (``train_true_labels``).

        Exact for everything but the pixels, which ``ptnl.data.disk.content_identity`` adds for
        run ids (per-file digests cached by stat). The image folder is left out, so moving the
        data elsewhere keeps the fingerprint. Computed once per Dataset (it is immutable).
        """
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            h = hashlib.sha256()

            def put(b: bytes) -> None:  # length-prefixed: no two sequences of fields hash alike
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)

            for text in ("ptnl-dataset-1", self.name, self.split_source, self.template):
                put(text.encode())
            put(json.dumps(list(self.classnames)).encode())
            for part in ("train", "val", "test"):
                sp = getattr(self, part)
                put(f"{part}:{'none' if sp is None else len(sp)}".encode())
                if sp is not None:
                    put("\0".join(sp.refs).encode())  # a path never holds a NUL
                    put(sp.labels.astype("<i8").tobytes())
            # Only when there are true labels, so every other dataset keeps the fingerprint (and the
            # run ids) it had before the field existed.
            if self.train_true_labels is not None:
                put(b"train_true_labels")
                put(self.train_true_labels.astype("<i8").tobytes())
            cached = f"{self.split_source}:{h.hexdigest()[:16]}"
            self.__dict__["_fingerprint"] = cached  # frozen dataclass: bypass __setattr__
        return cached
