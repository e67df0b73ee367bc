"""The real datasets: the paper's eight plus CoOp's other three, read into ``Dataset``s.

Two routes to the same files, picked by ``source``:

- ``"coop"``: CoOp's fixed splits (``split_zhou_<Name>.json``: train/val/test lists of
  ``[relative path, label, classname]``) over images laid out as CoOp's DATASETS.md lays them out,
  under ``ptnl.paths.data_root()``. FGVCAircraft has no JSON: CoOp (and we) read the official
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
cleans them (reference §3), whichever route they came by, so prompts are the same.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ptnl.data.base import Dataset, Split
from ptnl.data.sampling import SPLIT_STREAM, rng_stream
from ptnl.data.templates import TEMPLATES
from ptnl.paths import data_root

COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"
SOURCES = ("auto", "coop", "torchvision")
SPLIT_SEED = 0  # our own 50/20/30 splits are fixed: never the user's seed, like CoOp's JSONs
P_TRAIN, P_VAL = 0.5, 0.2

CALTECH_IGNORED = ("BACKGROUND_Google", "Faces_easy")
CALTECH_RENAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
EUROSAT_NAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@dataclass(frozen=True)
class Spec:
    name: str  # canonical, as the paper writes it; key of TEMPLATES
    folder: str  # CoOp's folder under data_root()
    split_file: str | None  # inside folder; None for FGVCAircraft and ImageNet
    image_dirs: tuple[str, ...]  # under data_root(): CoOp's first, then torchvision's
    images_from: str  # where the images come from
    split_from: str  # where the split file comes from
    torchvision: str | None  # torchvision.datasets class, or None
    aliases: tuple[str, ...] = ()


def _drive(file_id: str) -> str:
    return f"CoOp's Google Drive link https://drive.google.com/file/d/{file_id}"


SPECS = {
    s.name: s
    for s in [
        Spec("OxfordPets", "oxford_pets", "split_zhou_OxfordPets.json",
             ("oxford_pets/images", "oxford-iiit-pet/images"),
             "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz (and annotations.tar.gz)",
             _drive("1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"), "OxfordIIITPet", ("pets", "pet", "oxfordiiitpet")),
        Spec("Food101", "food-101", "split_zhou_Food101.json", ("food-101/images",),
             "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)",
             _drive("1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"), "Food101", ("food",)),
        Spec("DTD", "dtd", "split_zhou_DescribableTextures.json", ("dtd/images", "dtd/dtd/images"),
             "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
             _drive("1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"), "DTD", ("describabletextures", "textures")),
        Spec("UCF101", "ucf101", "split_zhou_UCF101.json", ("ucf101/UCF-101-midframes",),
             "UCF-101-midframes.zip, " + _drive("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),
             _drive("1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"), None, ("ucf",)),
        Spec("Flowers102", "oxford_flowers", "split_zhou_OxfordFlowers.json",
             ("oxford_flowers/jpg", "flowers-102/jpg"),
             "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
             _drive("1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"), "Flowers102",
             ("oxfordflowers", "flowers", "flower102", "oxfordflowers102")),
        Spec("FGVCAircraft", "fgvc_aircraft", None, ("fgvc_aircraft", "fgvc-aircraft-2013b/data"),
             "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
             "(keep its data/ folder, renamed fgvc_aircraft/)",
             "the official images_variant_{train,val,test}.txt and variants.txt in the same archive",
             "FGVCAircraft", ("aircraft", "fgvc")),
        Spec("Caltech101", "caltech-101", "split_zhou_Caltech101.json",
             ("caltech-101/101_ObjectCategories", "caltech101/101_ObjectCategories"),
             "101_ObjectCategories.tar.gz from https://data.caltech.edu/records/mzrjq-6wc02",
             _drive("1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"), "Caltech101", ("caltech",)),
        Spec("ImageNet", "imagenet", None, ("imagenet/images",),
             "https://image-net.org (ILSVRC2012 train and val, val sorted into class folders)",
             "classnames.txt, " + _drive("1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"), None,
             ("in1k", "ilsvrc2012", "imagenet1k")),
        Spec("EuroSAT", "eurosat", "split_zhou_EuroSAT.json", ("eurosat/2750",),
             "http://madm.dfki.de/files/sentinel/EuroSAT.zip",
             _drive("1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"), "EuroSAT", ()),
        Spec("StanfordCars", "stanford_cars", "split_zhou_StanfordCars.json", ("stanford_cars",),
             "Kaggle's copy of cars_train/, cars_test/, devkit/ (the Stanford URL is dead: pytorch/vision#7545)",
             _drive("1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"), "StanfordCars", ("cars", "stanfordcars196")),
        Spec("SUN397", "sun397", "split_zhou_SUN397.json", ("sun397/SUN397", "SUN397"),
             "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
             _drive("1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"), "SUN397", ("sun",)),
    ]
}  # fmt: skip
PAPER_DATASETS = (
    "OxfordPets",
    "Food101",
    "DTD",
    "UCF101",
    "Flowers102",
    "FGVCAircraft",
    "Caltech101",
    "ImageNet",
)
DATASETS = tuple(SPECS)

# torchvision route: class -> (the folder its download creates under data_root(), our split -> its split
# argument; None = one call without a split). We look for the folder before instantiating anything:
# torchvision's Caltech101 creates its root folder even with download=False.
TORCHVISION = {
    "OxfordIIITPet": ("oxford-iiit-pet", {"train": "trainval", "test": "test"}),
    "Food101": ("food-101/meta", {"train": "train", "test": "test"}),
    "DTD": ("dtd/dtd", {"train": "train", "val": "val", "test": "test"}),
    "Flowers102": ("flowers-102", {"train": "train", "val": "val", "test": "test"}),
    "FGVCAircraft": ("fgvc-aircraft-2013b", {"train": "train", "val": "val", "test": "test"}),
    "StanfordCars": ("stanford_cars/devkit", {"train": "train", "test": "test"}),
    "Caltech101": ("caltech101/101_ObjectCategories", {"all": None}),
    "EuroSAT": ("eurosat/2750", {"all": None}),
    "SUN397": ("SUN397", {"all": None}),
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES = {_key(alias): s.name for s in SPECS.values() for alias in (s.name, s.folder, *s.aliases)}
_ALIASES.update({_key(s.split_file[len("split_zhou_") : -5]): s.name for s in SPECS.values() if s.split_file})


def resolve_name(name: str) -> str:
    """The canonical dataset name for ``name`` (case-insensitive, aliases like "pets", "dtd")."""
    canonical = _ALIASES.get(_key(name)) if isinstance(name, str) else None
    if canonical is None:
        toy = ""
        try:  # the toy world is optional here (helper-owned); list its tasks when it is there
            from ptnl.toy import EXTRA_TASKS, TOY_TASKS

            toy = f"; toy tasks: {', '.join(TOY_TASKS + EXTRA_TASKS)}"
        except Exception:
            toy = "; toy tasks: names starting with 'toy-'"
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}{toy}")
    return canonical


def clean_classname(dataset: str, name: str) -> str:
    """A class name as CoOp's split files spell it (idempotent: already-clean names pass through)."""
    name = name.strip()
    if dataset == "OxfordPets":  # torchvision title-cases "american_bulldog" -> "American Bulldog"
        return name.lower().replace(" ", "_")
    if dataset == "Caltech101":
        return CALTECH_RENAMES.get(name, name)
    if dataset == "EuroSAT":
        return EUROSAT_NAMES.get(name, name)
    if dataset == "UCF101" and "_" not in name and " " not in name:
        parts = re.findall("[A-Z][^A-Z]*", name)  # "ApplyEyeMakeup" -> "Apply_Eye_Makeup"
        return "_".join(parts) if "".join(parts) == name else name
    if dataset == "StanfordCars":  # "Tesla Model S Sedan 2012" -> "2012 Tesla Model S Sedan"
        words = name.split(" ")
        if (
            len(words) > 1
            and re.fullmatch(r"(19|20)\d\d", words[-1])
            and not re.fullmatch(r"\d{4}", words[0])
        ):
            return " ".join([words[-1], *words[:-1]])
        return name
    if dataset == "SUN397" and "/" in name:  # "a/apartment_building/outdoor" -> "outdoor apartment_building"
        parts = [p for p in name.split("/") if p]
        if len(parts) > 1 and len(parts[0]) == 1:
            parts = parts[1:]
        return " ".join(reversed(parts))
    return name


def _open_image(image_root: str, ref: str) -> Image.Image:
    return Image.open(os.path.join(image_root, ref))


def _split(image_root: Path, refs, labels) -> Split:
    # partial of a module-level function: picklable, so DataLoader workers can load images.
    return Split(tuple(refs), np.asarray(labels, dtype=np.int64), partial(_open_image, str(image_root)))


def _first_existing(root: Path, candidates) -> Path | None:
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


def _load_coop(spec: Spec, root: Path) -> Dataset:
    if not coop_available(spec, root):
        raise missing_error(spec, root)
    if spec.name == "FGVCAircraft":
        return _load_fgvc(spec, root)
    if spec.name == "ImageNet":
        return _load_imagenet(spec, root)

    split_path = root / spec.folder / spec.split_file
    image_root = _first_existing(root, spec.image_dirs)
    if image_root is None:
        raise missing_error(spec, root, detail=f"found {split_path.name} but no image folder")
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
    classnames = [clean_classname(spec.name, names[y]) for y in range(len(names))]
    splits = {
        k: _split(image_root, [p for p, _, _ in rows], [y for _, y, _ in rows]) for k, rows in items.items()
    }
    _check_first_image(spec.name, image_root, splits)
    val = splits["val"] if len(splits["val"]) else None
    return Dataset(spec.name, classnames, TEMPLATES[spec.name], splits["train"], val, splits["test"],
                   "coop-split", str(image_root))  # fmt: skip


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
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            image_id, variant = line.strip().split(" ", 1)  # "1025794 707-320"; variants may hold spaces
            if variant not in index:
                raise ValueError(f"{path}: variant {variant!r} is not in {variants}")
            refs.append(f"{image_id}.jpg")
            labels.append(index[variant])
        splits[part] = _split(data_dir / "images", refs, labels)
    _check_first_image(spec.name, data_dir / "images", splits)
    return Dataset(spec.name, classnames, TEMPLATES[spec.name], splits["train"], splits["val"], splits["test"],
                   "official-txt", str(data_dir / "images"))  # fmt: skip


def _listdir(path: Path, dirs: bool) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir() == dirs)


def _load_imagenet(spec: Spec, root: Path) -> Dataset:
    image_root = root / spec.image_dirs[0]
    wnids = _listdir(image_root / "train", dirs=True)
    names_file = root / spec.folder / "classnames.txt"
    if names_file.is_file():
        wnid_to_name = {}
        for line in names_file.read_text().splitlines():
            if line.strip():
                wnid, name = line.strip().split(" ", 1)
                wnid_to_name[wnid] = name
        unknown = [w for w in wnids if w not in wnid_to_name]
        if unknown:
            raise ValueError(
                f"{names_file} has no name for class folder(s) {unknown[:5]} of {image_root / 'train'}"
            )
        classnames = [wnid_to_name[w] for w in wnids]
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
        folders = _listdir(part_dir, dirs=True)
        if folders != wnids:
            raise ValueError(
                f"{part_dir} must hold the same class folders as {image_root / 'train'} "
                f"({len(folders)} vs {len(wnids)}); sort the val images into <wnid>/ folders as CoOp's DATASETS.md says"
            )
        refs, labels = [], []
        for y, wnid in enumerate(wnids):
            files = _listdir(part_dir / wnid, dirs=False)
            refs += [f"{part}/{wnid}/{f}" for f in files]
            labels += [y] * len(files)
        splits[part] = _split(image_root, refs, labels)
    # ImageNet: the official val set is the test set, as in CoOp; there is no separate val split.
    return Dataset(spec.name, classnames, TEMPLATES[spec.name], splits["train"], None, splits["val"],
                   "imagenet-folders", str(image_root))  # fmt: skip


# ----------------------------------------------------------------------------- torchvision route


def _split_per_class(refs: list[str], labels: list[int], n_classes: int):
    """A fixed per-class 50/20/30 split (CoOp's proportions for datasets without one), seed 0."""
    order = sorted(range(len(refs)), key=lambda i: refs[i])  # file order must not matter
    refs = [refs[i] for i in order]
    labels = np.asarray(labels, dtype=np.int64)[order]
    parts = {"train": [], "val": [], "test": []}
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        members = members[rng_stream(SPLIT_SEED, SPLIT_STREAM, c).permutation(len(members))]
        n_train = int(np.floor(len(members) * P_TRAIN + 0.5))
        n_val = int(np.floor(len(members) * P_VAL + 0.5))
        parts["train"] += members[:n_train].tolist()
        parts["val"] += members[n_train : n_train + n_val].tolist()
        parts["test"] += members[n_train + n_val :].tolist()
    return {k: ([refs[i] for i in sorted(v)], labels[sorted(v)]) for k, v in parts.items()}


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
        parts = _split_per_class([r for r, _ in pairs], [y for _, y in pairs], len(classnames))

    image_root = Path(image_root)
    splits = {k: _split(image_root, refs, labels) for k, (refs, labels) in parts.items()}
    classnames = [clean_classname(spec.name, c) for c in classnames]
    return Dataset(spec.name, classnames, TEMPLATES[spec.name], splits["train"], splits.get("val"), splits["test"],
                   source, str(image_root))  # fmt: skip


# ----------------------------------------------------------------------------- entry point


def on_disk(name: str, root: str | Path | None = None) -> bool:
    """Whether ``load_dataset(name, root)`` (source="auto") will find files; cheap, reads no image list."""
    if isinstance(name, str) and name.lower().startswith("toy-"):
        return True  # rendered on demand
    spec = SPECS[resolve_name(name)]
    root = Path(root).expanduser().resolve() if root is not None else data_root()
    if coop_available(spec, root):
        return True
    return spec.torchvision is not None and (root / TORCHVISION[spec.torchvision][0]).is_dir()


def load_dataset(name: str, root: str | Path | None = None, source: str = "auto") -> Dataset:
    """The dataset ``name`` (see the module docstring for ``source``); "toy-*" names go to ptnl.toy.

    ``root`` is the folder holding all datasets (default ``ptnl.paths.data_root()``, i.e.
    ``$PTNL_DATA`` or ``data/``); the toy world ignores it.
    """
    if isinstance(name, str) and name.lower().startswith("toy-"):
        from ptnl.toy import load_task  # lazy: the toy world pulls in its own generators

        return load_task(name)
    spec = SPECS[resolve_name(name)]
    if source not in SOURCES:
        raise ValueError(f"source={source!r}; use one of {SOURCES}")
    root = Path(root).expanduser().resolve() if root is not None else data_root()
    if source == "coop" or (source == "auto" and (coop_available(spec, root) or spec.torchvision is None)):
        return _load_coop(spec, root)
    if source == "torchvision":
        return _load_torchvision(spec, root)
    # auto, no CoOp split on disk: torchvision if its download is there (then its errors, with
    # torchvision's own words, are the useful ones), else the error naming both routes.
    if (root / TORCHVISION[spec.torchvision][0]).is_dir():
        return _load_torchvision(spec, root)
    raise missing_error(spec, root)
