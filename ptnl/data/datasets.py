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
cleans them (reference §3), whichever route they came by, so prompts are the same.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ptnl.core.paths import data_root
from ptnl.data.base import Dataset, ImageReadError, Split
from ptnl.data.sampling import SPLIT_STREAM, rng_stream
from ptnl.data.templates import TEMPLATES

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


# PIL's ways of saying "this file is not a readable image" (truncated, not an image, bad header).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


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
        except _DECODE_ERRORS as e:
            raise ImageReadError(
                f"{self.dataset} {self.split}: cannot read image {path}: {e}. Re-download it or remove it "
                "from the split"
            ) from e
        return img


def _split(image_root: Path, refs, labels, dataset: str, part: str) -> Split:
    return Split(tuple(refs), np.asarray(labels, dtype=np.int64), ImageFiles(str(image_root), dataset, part))


_PRESENT: dict[str, set[str]] = {}  # image folder -> refs found on disk by check_images in this process


def check_images(split: Split, refs=None) -> None:
    """Raise FileNotFoundError if an image of ``split`` (only ``refs`` of it, if given) is missing.

    One stat per ref not yet found in this process (~1-3 s per million on a local disk), so it can
    run right before encoding instead of a missing file surfacing minutes into it. A no-op for
    splits whose images are not files (toy, synthetic).
    """
    files = split.image_loader
    if not isinstance(files, ImageFiles):
        return
    present = _PRESENT.setdefault(files.root, set())
    todo = [r for r in dict.fromkeys(split.refs if refs is None else refs) if r not in present]
    missing = [r for r in todo if not os.path.isfile(files.path(r))]
    present.update(todo)
    present.difference_update(missing)
    if missing:
        shown = "\n  ".join(files.path(r) for r in missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{files.dataset} {files.split}: {len(missing)} of {len(todo)} images checked are missing under "
            f"{files.root}:\n  {shown}{more}\nRe-download the dataset, or check that its folder is laid "
            f"out as {COOP_DATASETS_MD} says."
        )


def _root(root) -> Path:
    return Path(root).expanduser().resolve() if root is not None else data_root()


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
    items, classnames = _read_split_file(spec, split_path)
    splits = {
        k: _split(image_root, [p for p, _, _ in rows], [y for _, y, _ in rows], spec.name, k)
        for k, rows in items.items()
    }
    _check_first_image(spec.name, image_root, splits)
    val = splits["val"] if len(splits["val"]) else None
    return Dataset(spec.name, classnames, TEMPLATES[spec.name], splits["train"], val, splits["test"],
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
    return Dataset(spec.name, classnames, TEMPLATES[spec.name], splits["train"], splits["val"], splits["test"],
                   "official-txt", str(data_dir / "images"))  # fmt: skip


def _listdir(path: Path, dirs: bool) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir() == dirs)


def _imagenet_names(names_file: Path, wnids: list[str], train_dir: Path) -> list[str]:
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
    wnids = _listdir(image_root / "train", dirs=True)
    names_file = root / spec.folder / "classnames.txt"
    if names_file.is_file():
        classnames = _imagenet_names(names_file, wnids, image_root / "train")
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
        splits[part] = _split(image_root, refs, labels, spec.name, "test" if part == "val" else part)
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
    splits = {k: _split(image_root, refs, labels, spec.name, k) for k, (refs, labels) in parts.items()}
    classnames = [clean_classname(spec.name, c) for c in classnames]
    return Dataset(spec.name, classnames, TEMPLATES[spec.name], splits["train"], splits.get("val"), splits["test"],
                   source, str(image_root))  # fmt: skip


# ----------------------------------------------------------------------------- entry point


def on_disk(name: str, root: str | Path | None = None) -> bool:
    """Whether ``load_dataset(name, root)`` (source="auto") will find files; cheap, reads no image list."""
    if isinstance(name, str) and name.lower().startswith("toy-"):
        return True  # rendered on demand
    spec = SPECS[resolve_name(name)]
    root = _root(root)
    if coop_available(spec, root):
        return True
    return spec.torchvision is not None and (root / TORCHVISION[spec.torchvision][0]).is_dir()


def load_dataset(name: str, root: str | Path | None = None, source: str = "auto") -> Dataset:
    """The dataset ``name`` (see the module docstring for ``source``); "toy-*" names go to ptnl.toy.

    ``root`` is the folder holding all datasets (default ``ptnl.core.paths.data_root()``, i.e.
    ``$PTNL_DATA`` or ``data/``); the toy world ignores it.
    """
    if isinstance(name, str) and name.lower().startswith("toy-"):
        from ptnl.toy import load_task  # lazy: the toy world pulls in its own generators

        return load_task(name)
    spec = SPECS[resolve_name(name)]
    if source not in SOURCES:
        raise ValueError(f"source={source!r}; use one of {SOURCES}")
    root = _root(root)
    if source == "coop" or (source == "auto" and (coop_available(spec, root) or spec.torchvision is None)):
        return _load_coop(spec, root)
    if source == "torchvision":
        return _load_torchvision(spec, root)
    # auto, no CoOp split on disk: torchvision if its download is there (then its errors, with
    # torchvision's own words, are the useful ones), else the error naming both routes.
    if (root / TORCHVISION[spec.torchvision][0]).is_dir():
        return _load_torchvision(spec, root)
    raise missing_error(spec, root)


# ----------------------------------------------------------------------------- identity and disk status

MISSING = "missing"  # identity() of a dataset that is not on disk
CORRUPT = "corrupt"  # identity() of one whose split or class-name file does not parse

FGVC_FILES = ("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")
# What torchvision's classes read their split and class names from, under data_root() (besides
# the folder in TORCHVISION; for Caltech101 and EuroSAT that folder's listing is the split).
TORCHVISION_FILES = {
    "OxfordIIITPet": ("oxford-iiit-pet/annotations/trainval.txt", "oxford-iiit-pet/annotations/test.txt"),
    "Food101": ("food-101/meta/train.json", "food-101/meta/test.json"),
    "DTD": tuple(f"dtd/dtd/labels/{p}1.txt" for p in ("train", "val", "test")),
    "Flowers102": ("flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
    "FGVCAircraft": tuple(f"fgvc-aircraft-2013b/data/{f}" for f in FGVC_FILES),
    "StanfordCars": (
        "stanford_cars/devkit/cars_meta.mat",
        "stanford_cars/devkit/cars_train_annos.mat",
        "stanford_cars/cars_test_annos_withlabels.mat",
    ),
    "Caltech101": (),
    "EuroSAT": (),
    "SUN397": ("SUN397/ClassName.txt",),
}


def _watched(spec: Spec) -> list[str]:
    """Paths under the data root whose stat changes when what ``load_dataset(auto)`` reads changes."""
    watched = list(spec.image_dirs)
    if spec.split_file:
        watched.append(f"{spec.folder}/{spec.split_file}")
    if spec.name == "FGVCAircraft":
        watched += [f"{d}/{f}" for d in spec.image_dirs for f in (*FGVC_FILES, "images")]
    if spec.name == "ImageNet":
        watched += [f"{spec.folder}/classnames.txt", *(f"{spec.image_dirs[0]}/{p}" for p in ("train", "val"))]
    if spec.torchvision:
        watched += [TORCHVISION[spec.torchvision][0], *TORCHVISION_FILES[spec.torchvision]]
    return watched


def _stat(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


_IDENTITIES: dict[tuple[str, str], tuple[tuple, str]] = {}  # (dataset, root) -> (stat key, identity)
_TOY_IDENTITIES: dict[str, str] = {}  # toy tasks are code: fixed for the life of a process


def identity(name: str, root: str | Path | None = None) -> str:
    """A short stable string for the data a run on ``name`` reads: ``Dataset.fingerprint()`` of
    ``load_dataset(name, root)`` (``"<split_source>:<16 hex>"``), ``MISSING`` if it is not on disk,
    ``CORRUPT`` if its split or class-name file does not parse. Never raises for those, so run ids
    can be computed for a plan before the data is there; loading then gives the full error.

    Memoised per process, keyed by the (size, mtime_ns, inode) of every file and folder that picks
    the route or holds the split (``_watched``): editing a split file, or adding CoOp's over a
    torchvision download, is seen at the next call. Images added to or removed from class
    folders (ImageNet, the torchvision route's listed folders) within one process are not; the
    next process lists them again.
    """
    if isinstance(name, str) and name.lower().startswith("toy-"):
        if name not in _TOY_IDENTITIES:
            try:
                _TOY_IDENTITIES[name] = load_dataset(name).fingerprint()
            except ValueError:  # no such toy task: loading it says so, with the names that exist
                return MISSING
        return _TOY_IDENTITIES[name]
    spec = SPECS[resolve_name(name)]
    root = _root(root)
    memo_key, disk_key = (spec.name, str(root)), tuple(_stat(root / p) for p in _watched(spec))
    hit = _IDENTITIES.get(memo_key)
    if hit is not None and hit[0] == disk_key:
        return hit[1]
    try:
        ident = load_dataset(spec.name, root).fingerprint()
    except FileNotFoundError:
        ident = MISSING
    except ValueError:
        ident = CORRUPT
    _IDENTITIES[memo_key] = (disk_key, ident)
    return ident


class DiskStatus(NamedTuple):
    state: str  # "ok", "missing", "corrupt" or "no-split"
    message: str  # one line, for `make plan`


def disk_status(name: str, root: str | Path | None = None) -> DiskStatus:
    """Whether ``load_dataset(name, root)`` would work, judged cheaply enough for `make plan`.

    Split files are parsed (CoOp's JSON, FGVC's txt files, ImageNet's classnames.txt) and the
    first image of each split is stat'ed, as loading does; image folders are not listed (ImageNet:
    only train/'s class folders). The torchvision route is judged by its folder, as
    ``load_dataset``'s "auto" choice is: its own files are read only when it loads.
    """
    if isinstance(name, str) and name.lower().startswith("toy-"):
        return DiskStatus("ok", f"{name}: toy task, rendered on demand")
    spec = SPECS[resolve_name(name)]
    root = _root(root)
    if spec.name == "ImageNet":
        return _imagenet_status(spec, root)
    if coop_available(spec, root):
        try:
            ds = _load_coop(spec, root)
        except FileNotFoundError as e:
            return DiskStatus("missing", str(e).splitlines()[0])
        except ValueError as e:
            return DiskStatus("corrupt", f"{spec.name}: {e}")
        return DiskStatus(
            "ok", f"{spec.name}: {ds.split_source} ({_split_path(spec, root)}), images in {ds.root}"
        )
    if spec.torchvision is not None and (root / TORCHVISION[spec.torchvision][0]).is_dir():
        folder = root / TORCHVISION[spec.torchvision][0]
        return DiskStatus(
            "ok", f"{spec.name}: torchvision layout in {folder} (its official split, not CoOp's)"
        )
    images = _first_existing(root, spec.image_dirs)
    if images is not None:
        return DiskStatus(
            "no-split",
            f"images found under {images} but the split file {_split_path(spec, root)} is missing "
            f"(get it from {spec.split_from})",
        )
    return DiskStatus(
        "missing",
        f"{spec.name} is not on disk under {root}; load_dataset({spec.name!r}) says which files it needs "
        "and where they come from",
    )


def _split_path(spec: Spec, root: Path) -> Path:
    if spec.name == "FGVCAircraft":  # the official txt files, in whichever data folder holds them
        data_dir = next((root / d for d in spec.image_dirs if (root / d / FGVC_FILES[1]).is_file()), None)
        return (data_dir or root / spec.image_dirs[0]) / FGVC_FILES[1]
    return root / spec.folder / spec.split_file


def _imagenet_status(spec: Spec, root: Path) -> DiskStatus:
    image_root = root / spec.image_dirs[0]
    names_file = root / spec.folder / "classnames.txt"
    train, val = image_root / "train", image_root / "val"
    if not train.is_dir() and not val.is_dir():
        return DiskStatus(
            "missing",
            f"ImageNet is not on disk under {root} (no {image_root}/{{train,val}}/); load_dataset('ImageNet') "
            "says which files it needs and where they come from",
        )
    if not (train.is_dir() and val.is_dir()):
        absent = val if train.is_dir() else train
        return DiskStatus(
            "missing", f"ImageNet: no {absent} (class folders <wnid>/, as CoOp's DATASETS.md says)"
        )
    wnids = _listdir(train, dirs=True)  # 1000 names: the class folders, not the images
    if names_file.is_file():
        try:
            _imagenet_names(names_file, wnids, train)
        except ValueError as e:
            return DiskStatus("corrupt", f"ImageNet: {e}")
        return DiskStatus("ok", f"ImageNet: imagenet-folders ({names_file}), images in {image_root}")
    if len(wnids) == 1000:
        return DiskStatus(
            "ok",
            f"ImageNet: imagenet-folders, images in {image_root} (no {names_file}: open_clip's class names, "
            "CLIP's list, in the same order)",
        )
    return DiskStatus(
        "no-split",
        f"images found under {image_root} but the class-name file {names_file} is missing "
        f"(get it from {spec.split_from})",
    )
