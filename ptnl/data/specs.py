"""What the real datasets are: names, folders, where the files come from, and CoOp's class names.

``SPECS`` maps each canonical name (as the paper writes it; the key of ``TEMPLATES``) to a
``Spec``: CoOp's folder and split file under ``ptnl.core.paths.data_root()``, the image folders
tried in order (CoOp's layout first, then torchvision's download), where images and split come
from, and the torchvision class that can read the same images. ``resolve_name`` accepts aliases
("pets", "dtd", CoOp's folder and split-file names), case-insensitively. ``clean_classname``
spells a class name as CoOp's split files do, whichever route it came by, so prompts are the same
(CoOp's datasets/*.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ptnl.toy import EXTRA_TASKS, TOY_TASKS

COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"
SOURCES = ("auto", "coop", "torchvision")
# FGVCAircraft has no split file: the official archive's class list and per-split lists are its split.
FGVC_FILES = ("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")

CALTECH_IGNORED = ("BACKGROUND_Google", "Faces_easy")  # Caltech101 folders CoOp leaves out
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
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}; toy tasks: {', '.join(TOY_TASKS + EXTRA_TASKS)}"
        )
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
