"""The real datasets: the paper's eight plus CoOp's other three, read into ``Dataset``s.

Two routes to the same files, picked by ``source``:

- ``"coop"``: CoOp's fixed splits (``split_zhou_<Name>.json``: train/val/test lists of
  ``[relative path, label, classname]``) over images laid out as CoOp's DATASETS.md lays them out,
  under ``ptnl.core.paths.data_root()``. FGVCAircraft has no JSON: CoOp (and we) read the official
  ``images_variant_{train,val,test}.txt``. ImageNet is class folders plus ``classnames.txt``.
  Where torchvision's download puts the same images elsewhere (``dtd/dtd/images``,
  ``oxford-iiit-pet/images``, ...), that folder is tried second, so a CoOp split file can be laid
  over a torchvision download.
- ``"torchvision"``: ``torchvision.datasets.<Class>(data_root(), ..., download=False)`` and its
  official split (not CoOp's: the numbers differ from the paper's). Datasets without an official
  split (Caltech101, EuroSAT, SUN397) get a fixed per-class 50/20/30 split, CoOp's proportions,
  made by us with seed 0 (``split_source="torchvision+ptnl-split"``). Datasets with no official
  val split (Pets, Food101, Cars) get ``val=None``; the paper evaluates the last epoch anyway.
  UCF101 (torchvision's is video) and ImageNet (manual download) have no torchvision route.
- ``"auto"`` (default): ``"coop"`` if its split file is there, else ``"torchvision"`` if that
  loads, else one error naming both routes' files and where they come from.

Every Dataset records the route in ``split_source``: "coop-split", "official-txt" (FGVC),
"imagenet-folders", "torchvision", "torchvision+ptnl-split". Class names are cleaned as CoOp
cleans them (its datasets/*.py), whichever route they came by, so prompts are the same.

``load_dataset`` is the one entry point: a dataset registered in memory under the name
(``ptnl.data.registry``) comes first, then "toy-*" names (``ptnl.data.toy.tasks.load_task``), then the
real noisy-label benchmarks (``ptnl.data.noisy_sets``: Food101N, CIFAR10N-*, CIFAR100N), then the
files above. ``on_disk`` says cheaply whether it would find them. ``get_dataset`` is what a run
reads: the same, loaded once per process (a sweep loads each dataset once).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from ptnl.core.paths import data_root
from ptnl.data.base import Dataset, ImageFiles, Split
from ptnl.data.noisy_sets import load_noisy_set, noisy_name, noisy_on_disk
from ptnl.data.registry import registered
from ptnl.data.sampling import split_per_class
from ptnl.data.specs import (
    CALTECH_IGNORED,
    COOP_DATASETS_MD,
    SOURCES,
    SPECS,
    TORCHVISION,
    Spec,
    clean_classname,
    resolve_name,
)
from ptnl.data.toy import tasks as toy_tasks


def _split(image_root: Path, refs, labels, dataset: str, part: str) -> Split:
    return Split(tuple(refs), np.asarray(labels, dtype=np.int64), ImageFiles(str(image_root), dataset, part))


def resolve_root(root) -> Path:
    """The folder holding all datasets: ``root`` resolved, or ``data_root()`` when it is None."""
    return Path(root).expanduser().resolve() if root is not None else data_root()


def first_existing(root: Path, candidates) -> Path | None:
    """The first of the folders ``candidates`` (relative to ``root``) that exists, or None."""
    return next((root / c for c in candidates if (root / c).is_dir()), None)


def _check_first_image(dataset: str, image_root: Path, splits: dict[str, Split | None]) -> None:
    # One stat per split, not per image: catches a wrong image folder without walking 1.28M files.
    for split_name, split in splits.items():
        if split is not None and len(split) and not (image_root / split.refs[0]).is_file():
            raise FileNotFoundError(
                f"{dataset}: the {split_name} split refers to {split.refs[0]!r}, which is not under the image "
                f"folder {image_root}. Is the image folder complete and laid out as {COOP_DATASETS_MD} says?"
            )


# ----------------------------------------------------------------------------- errors


def _torchvision_kwargs(spec: Spec, split: str | None) -> dict:
    kw = {} if split is None else {"split": split}
    if spec.torchvision == "DTD":
        kw["partition"] = 1
    if spec.torchvision == "FGVCAircraft":
        kw["annotation_level"] = "variant"
    return kw


def _torchvision_command(spec: Spec, root: Path) -> str | None:
    if spec.torchvision is None:
        return None
    calls = []
    for split in TORCHVISION[spec.torchvision][1].values():
        args = "".join(f", {k}={v!r}" for k, v in _torchvision_kwargs(spec, split).items())
        calls.append(f"torchvision.datasets.{spec.torchvision}({str(root)!r}{args}, download=True)")
    return 'python -c "import torchvision; ' + "; ".join(calls) + '"'


def missing_error(spec: Spec, root: Path, detail: str = "") -> FileNotFoundError:
    """The one error for a dataset that is not on disk: expected files, and where they come from."""
    lines = [f"{spec.name} is not on disk under {root}{' (' + detail + ')' if detail else ''}.", ""]
    lines.append(f"CoOp layout ({COOP_DATASETS_MD}):")
    if spec.name == "ImageNet":
        lines.append(f"  images: {root / spec.image_dirs[0]}/{{train,val}}/<wnid>/   from {spec.images_from}")
        lines.append(f"  names:  {root / spec.folder}/classnames.txt   from {spec.split_from}")
    else:
        lines.append(f"  images: {root / spec.image_dirs[0]}/   from {spec.images_from}")
    if spec.name == "FGVCAircraft":
        lines.append(f"  splits: {root / spec.folder}/images_variant_train.txt, ...   from {spec.split_from}")
    elif spec.split_file:
        lines.append(f"  split:  {root / spec.folder / spec.split_file}   from {spec.split_from}")
    cmd = _torchvision_command(spec, root)
    if spec.name == "StanfordCars":
        lines += [
            "",
            "torchvision reads the same layout (source='torchvision', its official train/test split) but cannot",
            "download it: its URL is dead (pytorch/vision#7545).",
        ]
    elif cmd:
        after = (
            "  (the CoOp route reads the same txt files from torchvision's folder)"
            if spec.name == "FGVCAircraft"
            else "  or add CoOp's split file above to use CoOp's split over those images."
        )
        lines += [
            "",
            "Or download with torchvision (its official split, recorded as split_source='torchvision'):",
            f"  {cmd}",
            f"  then load_dataset({spec.name!r}, source='torchvision'),",
            after,
        ]
    else:
        lines += ["", "torchvision cannot provide this dataset in the layout the paper uses."]
    lines += ["", "Point $PTNL_DATA at the folder holding the datasets if they live elsewhere."]
    return FileNotFoundError("\n".join(lines))


# ----------------------------------------------------------------------------- CoOp route


def coop_available(spec: Spec, root: Path) -> bool:
    """Whether CoOp's split file (or, for ImageNet/Aircraft, its folder layout) is on disk under ``root``."""
    if spec.name == "FGVCAircraft":
        return any((root / d / "images_variant_train.txt").is_file() for d in spec.image_dirs)
    if spec.name == "ImageNet":
        return (root / spec.image_dirs[0] / "train").is_dir()
    return (root / spec.folder / spec.split_file).is_file()


def load_coop(spec: Spec, root: Path) -> Dataset:
    if not coop_available(spec, root):
        raise missing_error(spec, root)
    if spec.name == "FGVCAircraft":
        return _load_fgvc(spec, root)
    if spec.name == "ImageNet":
        return _load_imagenet(spec, root)

    split_path = root / spec.folder / spec.split_file
    image_root = first_existing(root, spec.image_dirs)
    if image_root is None:
        raise missing_error(spec, root, detail=f"found {split_path.name} but no image folder")
    items, classnames = _read_split_file(spec, split_path)
    splits = {
        k: _split(image_root, [p for p, _, _ in rows], [y for _, y, _ in rows], spec.name, k)
        for k, rows in items.items()
    }
    _check_first_image(spec.name, image_root, splits)
    val = splits["val"] if len(splits["val"]) else None
    return Dataset(spec.name, classnames, spec.template, splits["train"], val, splits["test"],
                   "coop-split", str(image_root))  # fmt: skip


def _read_split_file(spec: Spec, split_path: Path) -> tuple[dict[str, list], list[str]]:
    """CoOp's split file: ``{part: [(path, label, classname), ...]}`` and the cleaned class names."""
    try:
        raw = json.loads(split_path.read_text())
        items = {k: [(str(p), int(y), str(c)) for p, y, c in raw[k]] for k in ("train", "val", "test")}
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(
            f"{split_path} is not a CoOp split file ({{'train'|'val'|'test': [[path, label, classname], ...]}}): {e!r}"
        ) from e

    names: dict[int, str] = {}
    for part, rows in items.items():
        for path, y, c in rows:
            if names.setdefault(y, c) != c:
                raise ValueError(
                    f"{split_path}: label {y} is called both {names[y]!r} and {c!r} ({part}: {path})"
                )
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{split_path}: labels must be 0..C-1, got {sorted(names)[:10]}...")
    return items, [clean_classname(spec.name, names[y]) for y in range(len(names))]


def _load_fgvc(spec: Spec, root: Path) -> Dataset:
    data_dir = next(root / d for d in spec.image_dirs if (root / d / "images_variant_train.txt").is_file())
    variants = data_dir / "variants.txt"
    if not variants.is_file():
        raise missing_error(spec, root, detail=f"no {variants}")
    classnames = [line.strip() for line in variants.read_text().splitlines() if line.strip()]
    index = {c: i for i, c in enumerate(classnames)}
    splits = {}
    for part in ("train", "val", "test"):
        path = data_dir / f"images_variant_{part}.txt"
        if not path.is_file():
            raise missing_error(spec, root, detail=f"no {path}")
        refs, labels = [], []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            image_id, _, variant = line.strip().partition(" ")  # "1025794 707-320"; variants may hold spaces
            if variant not in index:
                raise ValueError(f"{path}, line {n}: variant {variant!r} is not in {variants}")
            refs.append(f"{image_id}.jpg")
            labels.append(index[variant])
        splits[part] = _split(data_dir / "images", refs, labels, spec.name, part)
    _check_first_image(spec.name, data_dir / "images", splits)
    return Dataset(spec.name, classnames, spec.template, splits["train"], splits["val"], splits["test"],
                   "official-txt", str(data_dir / "images"))  # fmt: skip


def list_dir(path: Path, dirs: bool) -> list[str]:
    """The sorted names of the folders (``dirs=True``) or files in ``path``, hidden ones left out."""
    with os.scandir(path) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir() == dirs)


def imagenet_names(names_file: Path, wnids: list[str], train_dir: Path) -> list[str]:
    """The class names of ``wnids`` from CoOp's ``classnames.txt`` (lines "<wnid> <name>")."""
    wnid_to_name = {}
    for n, line in enumerate(names_file.read_text().splitlines(), start=1):
        if line.strip():
            wnid, _, name = line.strip().partition(" ")
            if not name:
                raise ValueError(f"{names_file}, line {n}: expected '<wnid> <class name>', got {line!r}")
            wnid_to_name[wnid] = name
    unknown = [w for w in wnids if w not in wnid_to_name]
    if unknown:
        raise ValueError(f"{names_file} has no name for class folder(s) {unknown[:5]} of {train_dir}")
    return [wnid_to_name[w] for w in wnids]


def _load_imagenet(spec: Spec, root: Path) -> Dataset:
    image_root = root / spec.image_dirs[0]
    wnids = list_dir(image_root / "train", dirs=True)
    names_file = root / spec.folder / "classnames.txt"
    if names_file.is_file():
        classnames = imagenet_names(names_file, wnids, image_root / "train")
    elif len(wnids) == 1000:
        # CoOp's classnames.txt is CLIP's curated list, which open_clip ships in the same (sorted wnid) order.
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        classnames = list(IMAGENET_CLASSNAMES)
    else:
        raise missing_error(
            spec, root, detail=f"no {names_file}, and {len(wnids)} class folders instead of 1000"
        )

    splits = {}
    for part in ("train", "val"):
        part_dir = image_root / part
        if not part_dir.is_dir():
            raise missing_error(spec, root, detail=f"no {part_dir}")
        folders = list_dir(part_dir, dirs=True)
        if folders != wnids:
            raise ValueError(
                f"{part_dir} must hold the same class folders as {image_root / 'train'} "
                f"({len(folders)} vs {len(wnids)}); sort the val images into <wnid>/ folders as CoOp's DATASETS.md says"
            )
        refs, labels = [], []
        for y, wnid in enumerate(wnids):
            files = list_dir(part_dir / wnid, dirs=False)
            refs += [f"{part}/{wnid}/{f}" for f in files]
            labels += [y] * len(files)
        splits[part] = _split(image_root, refs, labels, spec.name, "test" if part == "val" else part)
    # ImageNet: the official val set is the test set, as in CoOp; there is no separate val split.
    return Dataset(spec.name, classnames, spec.template, splits["train"], None, splits["val"],
                   "imagenet-folders", str(image_root))  # fmt: skip


# ----------------------------------------------------------------------------- torchvision route


def _rel(paths, image_root: Path) -> list[str]:
    return [Path(p).relative_to(image_root).as_posix() for p in paths]


def _load_torchvision(spec: Spec, root: Path) -> Dataset:
    if spec.torchvision is None:
        raise ValueError(
            f"{spec.name} has no torchvision route (torchvision's UCF101 is video, its ImageNet needs the "
            f"manual tars); use source='coop'.\n\n{missing_error(spec, root)}"
        )
    folder, split_args = TORCHVISION[spec.torchvision]
    if not (root / folder).is_dir():
        raise missing_error(spec, root, detail=f"no {root / folder}, where torchvision's download puts it")
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.torchvision)
    try:
        built = {
            k: cls(str(root), **_torchvision_kwargs(spec, v), download=False) for k, v in split_args.items()
        }
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise missing_error(spec, root, detail=f"torchvision.datasets.{spec.torchvision} says: {e}") from e

    any_ds = next(iter(built.values()))
    source = "torchvision"
    # torchvision keeps file lists in private attributes; torchvision is pinned (pyproject.toml).
    if spec.torchvision == "OxfordIIITPet":
        image_root, classnames = any_ds._images_folder, any_ds.classes
        parts = {k: (_rel(d._images, image_root), d._labels) for k, d in built.items()}
    elif spec.torchvision in ("Food101", "DTD", "Flowers102"):
        image_root, classnames = any_ds._images_folder, any_ds.classes
        parts = {k: (_rel(d._image_files, image_root), d._labels) for k, d in built.items()}
    elif spec.torchvision == "FGVCAircraft":
        image_root, classnames = Path(any_ds._data_path) / "data" / "images", any_ds.classes
        parts = {k: (_rel(d._image_files, image_root), d._labels) for k, d in built.items()}
    elif spec.torchvision == "StanfordCars":
        image_root, classnames = any_ds._base_folder, any_ds.classes  # refs "cars_train/00001.jpg", as CoOp's
        parts = {k: (_rel([p for p, _ in d._samples], image_root), [y for _, y in d._samples])
                 for k, d in built.items()}  # fmt: skip
    else:
        source = "torchvision+ptnl-split"
        if spec.torchvision == "Caltech101":
            image_root = Path(any_ds.root) / "101_ObjectCategories"
            keep = [i for i, c in enumerate(any_ds.categories) if c not in CALTECH_IGNORED]
            relabel = {old: new for new, old in enumerate(keep)}
            classnames = [any_ds.categories[i] for i in keep]
            pairs = [(f"{any_ds.categories[y]}/image_{k:04d}.jpg", relabel[y])
                     for k, y in zip(any_ds.index, any_ds.y) if y in relabel]  # fmt: skip
        elif spec.torchvision == "EuroSAT":
            image_root, classnames = Path(any_ds._data_folder), any_ds.classes
            pairs = [(Path(p).relative_to(image_root).as_posix(), y) for p, y in any_ds.samples]
        else:  # SUN397
            image_root, classnames = any_ds._data_dir, any_ds.classes
            pairs = list(zip(_rel(any_ds._image_files, image_root), any_ds._labels))
        parts = split_per_class([r for r, _ in pairs], [y for _, y in pairs], len(classnames))

    image_root = Path(image_root)
    splits = {k: _split(image_root, refs, labels, spec.name, k) for k, (refs, labels) in parts.items()}
    classnames = [clean_classname(spec.name, c) for c in classnames]
    return Dataset(spec.name, classnames, spec.template, splits["train"], splits.get("val"), splits["test"],
                   source, str(image_root))  # fmt: skip


# ----------------------------------------------------------------------------- entry point


def on_disk(name: str, root: str | Path | None = None) -> bool:
    """Whether ``load_dataset(name, root)`` (source="auto") will find files; cheap, reads no image list."""
    if isinstance(name, str) and registered(name) is not None:
        return True  # held in memory
    if isinstance(name, str) and name.lower().startswith("toy-"):
        return True  # rendered on demand
    if (noisy := noisy_name(name)) is not None:
        return noisy_on_disk(noisy, resolve_root(root))
    spec = SPECS[resolve_name(name)]
    root = resolve_root(root)
    if coop_available(spec, root):
        return True
    return spec.torchvision is not None and (root / TORCHVISION[spec.torchvision][0]).is_dir()


def load_dataset(name: str, root: str | Path | None = None, source: str = "auto") -> Dataset:
    """The dataset ``name`` (see the module docstring for ``source``): the one registered under
    ``name`` if there is one (``ptnl.data.register_dataset``), else "toy-*" names go to
    ``ptnl.data.toy.tasks``, noisy-label benchmarks to ``ptnl.data.noisy_sets`` (one layout each: only
    ``source="auto"``), and the others are read from disk.

    ``root`` is the folder holding all datasets (default ``ptnl.core.paths.data_root()``, i.e.
    ``$PTNL_DATA`` or ``data/``); registered datasets and the toy world ignore it, and ``source``.
    """
    if isinstance(name, str):
        held = registered(name)
        if held is not None:
            return held
    if isinstance(name, str) and name.lower().startswith("toy-"):
        return toy_tasks.load_task(name)
    if (noisy := noisy_name(name)) is not None:
        if source != "auto":
            raise ValueError(f"{noisy} has one layout (ptnl.data.noisy_sets), not source={source!r}")
        return load_noisy_set(noisy, resolve_root(root))
    spec = SPECS[resolve_name(name)]
    if source not in SOURCES:
        raise ValueError(f"source={source!r}; use one of {SOURCES}")
    root = resolve_root(root)
    if source == "coop" or (source == "auto" and (coop_available(spec, root) or spec.torchvision is None)):
        return load_coop(spec, root)
    if source == "torchvision":
        return _load_torchvision(spec, root)
    # auto, no CoOp split on disk: torchvision if its download is there (then its errors, with
    # torchvision's own words, are the useful ones), else the error naming both routes.
    if (root / TORCHVISION[spec.torchvision][0]).is_dir():
        return _load_torchvision(spec, root)
    raise missing_error(spec, root)


def get_dataset(name: str) -> Dataset:
    """The registered dataset ``name``, or the one ``load_dataset(name)`` reads (loaded once per process)."""
    held = registered(name)
    return held if held is not None else _load_once(name)


@functools.lru_cache(maxsize=4)
def _load_once(name: str) -> Dataset:
    return load_dataset(name)
