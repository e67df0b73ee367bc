"""What the real datasets are: names, folders, where the files come from, their prompt template,
the files their split is read from, their sizes, and CoOp's class names.

A dataset is declared once, here. ``SPECS`` maps each canonical name (as the paper writes it) to a
``Spec``: CoOp's folder and split file under ``ptnl.core.paths.data_root()``, the image folders
tried in order (CoOp's layout first, then torchvision's download), where images and split come
from, the torchvision class that can read the same images, its hand-crafted prompt ``template``
(``ptnl.data.templates``), the other ``files`` its split and class names are read from (what
``ptnl.data.disk`` watches) and its ``sizes`` (what ``ptnl.tools.gpucheck`` projects GPU time
with). Every other module reads these from the spec, at call time: a spec added to ``SPECS`` at
run time is a dataset like the others (``dataset_names``, ``resolve_name``). ``NOISY_SPECS``
declares the real noisy-label benchmarks the same way (``ptnl.data.noisy_sets`` reads them).
``resolve_name`` accepts aliases ("pets", "dtd", CoOp's folder and split-file names),
case-insensitively. ``clean_classname`` spells a class name as CoOp's split files do, whichever
route it came by, so prompts are the same (CoOp's datasets/*.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass

from ptnl.data.toy import EXTRA_TASKS, TOY_TASKS

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
    name: str  # canonical, as the paper writes it
    folder: str  # CoOp's folder under data_root()
    split_file: str | None  # inside folder; None for FGVCAircraft and ImageNet
    image_dirs: tuple[str, ...]  # under data_root(): CoOp's first, then torchvision's
    images_from: str  # where the images come from
    split_from: str  # where the split file comes from
    torchvision: str | None  # torchvision.datasets class, or None
    aliases: tuple[str, ...] = ()
    _: KW_ONLY
    # The hand-crafted prompt, "{}" for the class name: CoOp's CUSTOM_TEMPLATES (identical in CoOp's
    # zsclip.py, UPL and PTNL); a dataset's prompts, and its part of CoOp's ensemble.
    template: str
    # (classes, train, test) of CoOp's dataset table (Zhou et al., IJCV 2022), class counts as CoOp's
    # dataset code builds them: what the GPU check projects the paper grid's time with.
    sizes: tuple[int, int, int]
    # Other files under data_root() its split and class names are read from, besides split_file:
    # torchvision's (besides its folder in TORCHVISION; for Caltech101 and EuroSAT that folder's
    # listing is the split). ptnl.data.disk watches them: a change is seen by identity().
    files: tuple[str, ...] = ()


def _drive(file_id: str) -> str:
    return f"CoOp's Google Drive link https://drive.google.com/file/d/{file_id}"


SPECS = {
    s.name: s
    for s in [
        Spec("OxfordPets", "oxford_pets", "split_zhou_OxfordPets.json",
             ("oxford_pets/images", "oxford-iiit-pet/images"),
             "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz (and annotations.tar.gz)",
             _drive("1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"), "OxfordIIITPet", ("pets", "pet", "oxfordiiitpet"),
             template="a photo of a {}, a type of pet.", sizes=(37, 2944, 3669),
             files=("oxford-iiit-pet/annotations/trainval.txt", "oxford-iiit-pet/annotations/test.txt")),
        Spec("Food101", "food-101", "split_zhou_Food101.json", ("food-101/images",),
             "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)",
             _drive("1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"), "Food101", ("food",),
             template="a photo of {}, a type of food.", sizes=(101, 50500, 30300),
             files=("food-101/meta/train.json", "food-101/meta/test.json")),
        Spec("DTD", "dtd", "split_zhou_DescribableTextures.json", ("dtd/images", "dtd/dtd/images"),
             "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
             _drive("1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"), "DTD", ("describabletextures", "textures"),
             template="{} texture.", sizes=(47, 2820, 1692),
             files=tuple(f"dtd/dtd/labels/{p}1.txt" for p in ("train", "val", "test"))),
        Spec("UCF101", "ucf101", "split_zhou_UCF101.json", ("ucf101/UCF-101-midframes",),
             "UCF-101-midframes.zip, " + _drive("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),
             _drive("1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"), None, ("ucf",),
             template="a photo of a person doing {}.", sizes=(101, 7639, 3783)),
        Spec("Flowers102", "oxford_flowers", "split_zhou_OxfordFlowers.json",
             ("oxford_flowers/jpg", "flowers-102/jpg"),
             "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
             _drive("1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"), "Flowers102",
             ("oxfordflowers", "flowers", "flower102", "oxfordflowers102"),
             template="a photo of a {}, a type of flower.", sizes=(102, 4093, 2463),
             files=("flowers-102/imagelabels.mat", "flowers-102/setid.mat")),
        Spec("FGVCAircraft", "fgvc_aircraft", None, ("fgvc_aircraft", "fgvc-aircraft-2013b/data"),
             "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
             "(keep its data/ folder, renamed fgvc_aircraft/)",
             "the official images_variant_{train,val,test}.txt and variants.txt in the same archive",
             "FGVCAircraft", ("aircraft", "fgvc"),
             template="a photo of a {}, a type of aircraft.", sizes=(100, 3334, 3333),
             files=tuple(f"fgvc-aircraft-2013b/data/{f}" for f in FGVC_FILES)),
        Spec("Caltech101", "caltech-101", "split_zhou_Caltech101.json",
             ("caltech-101/101_ObjectCategories", "caltech101/101_ObjectCategories"),
             "101_ObjectCategories.tar.gz from https://data.caltech.edu/records/mzrjq-6wc02",
             _drive("1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"), "Caltech101", ("caltech",),
             template="a photo of a {}.", sizes=(100, 4128, 2465)),
        Spec("ImageNet", "imagenet", None, ("imagenet/images",),
             "https://image-net.org (ILSVRC2012 train and val, val sorted into class folders)",
             "classnames.txt, " + _drive("1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"), None,
             ("in1k", "ilsvrc2012", "imagenet1k"),
             # train: ILSVRC-2012's 1,281,167 images; test: its 50,000 validation images
             template="a photo of a {}.", sizes=(1000, 1281167, 50000)),
        Spec("EuroSAT", "eurosat", "split_zhou_EuroSAT.json", ("eurosat/2750",),
             "http://madm.dfki.de/files/sentinel/EuroSAT.zip",
             _drive("1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"), "EuroSAT", (),
             template="a centered satellite photo of {}.", sizes=(10, 13500, 8100)),
        Spec("StanfordCars", "stanford_cars", "split_zhou_StanfordCars.json", ("stanford_cars",),
             "Kaggle's copy of cars_train/, cars_test/, devkit/ (the Stanford URL is dead: pytorch/vision#7545)",
             _drive("1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"), "StanfordCars", ("cars", "stanfordcars196"),
             template="a photo of a {}.", sizes=(196, 6509, 8041),
             files=("stanford_cars/devkit/cars_meta.mat", "stanford_cars/devkit/cars_train_annos.mat",
                    "stanford_cars/cars_test_annos_withlabels.mat")),
        Spec("SUN397", "sun397", "split_zhou_SUN397.json", ("sun397/SUN397", "SUN397"),
             "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
             _drive("1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"), "SUN397", ("sun",),
             template="a photo of a {}.", sizes=(397, 15880, 19850), files=("SUN397/ClassName.txt",)),
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
DATASETS = tuple(SPECS)  # CoOp's 11, as shipped; dataset_names() also sees specs added at run time


@dataclass(frozen=True)
class NoisySpec:
    """A real noisy-label benchmark (``ptnl.data.noisy_sets`` reads it), declared as a ``Spec`` is."""

    name: str  # canonical
    reads: str  # "food101n", "cifar10" or "cifar100": the files ptnl.data.noisy_sets reads
    labels_key: str | None  # key of its CIFAR-N label file; None: Food-101N's web labels
    aliases: tuple[str, ...] = ()
    _: KW_ONLY
    template: str  # as Spec.template
    sizes: tuple[int, int, int]  # as Spec.sizes


# Food-101N's template is Food101's (the same 101 classes), CIFAR's CoOp's generic one (CoOp has no
# CIFAR config). Sizes: Food-101N's 310,009 web images (its page) with Food-101's official test
# split; CIFAR's 50,000 / 10,000 under each CIFAR-N label set.
_FOOD101N = dict(template=SPECS["Food101"].template, sizes=(101, 310009, 25250))
_CIFAR10N = dict(template="a photo of a {}.", sizes=(10, 50000, 10000))
_CIFAR100N = dict(template="a photo of a {}.", sizes=(100, 50000, 10000))
NOISY_SPECS = {
    s.name: s
    for s in [
        NoisySpec("Food101N", "food101n", None, **_FOOD101N),
        NoisySpec("CIFAR10N-aggre", "cifar10", "aggre_label", ("cifar10n-aggregate",), **_CIFAR10N),
        NoisySpec("CIFAR10N-worse", "cifar10", "worse_label", ("cifar10n-worst",), **_CIFAR10N),
        NoisySpec("CIFAR10N-random1", "cifar10", "random_label1", ("cifar10n-rand1",), **_CIFAR10N),
        NoisySpec("CIFAR10N-random2", "cifar10", "random_label2", ("cifar10n-rand2",), **_CIFAR10N),
        NoisySpec("CIFAR10N-random3", "cifar10", "random_label3", ("cifar10n-rand3",), **_CIFAR10N),
        NoisySpec("CIFAR10N-clean", "cifar10", "clean_label", **_CIFAR10N),
        NoisySpec("CIFAR100N", "cifar100", "noisy_label", ("cifar100n-noisy",), **_CIFAR100N),
        NoisySpec("CIFAR100N-clean", "cifar100", "clean_label", **_CIFAR100N),
    ]
}


def dataset_names() -> tuple[str, ...]:
    """Every real dataset's canonical name: ``SPECS``' then ``NOISY_SPECS``', read now (a spec added
    at run time is in it). What a run's ``dataset`` may be, besides "toy-*" names."""
    return (*SPECS, *NOISY_SPECS)


class Column(Mapping):
    """One field of every spec in ``specs``, by name (``Column(SPECS, "template")``): a read-only
    view, read at each access, so a spec added at run time is in it."""

    def __init__(self, specs: Mapping, field: str):
        self._specs, self._field = specs, field

    def __getitem__(self, name: str):
        return getattr(self._specs[name], self._field)

    def __iter__(self):
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return repr(dict(self))


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


def _aliases() -> dict[str, str]:
    """Every name of every spec in ``SPECS`` now (case and punctuation ignored) -> its canonical name."""
    out = {_key(alias): s.name for s in SPECS.values() for alias in (s.name, s.folder, *s.aliases)}
    out.update({_key(s.split_file[len("split_zhou_") : -5]): s.name for s in SPECS.values() if s.split_file})
    return out


def resolve_name(name: str) -> str:
    """The canonical dataset name for ``name`` (case-insensitive, aliases like "pets", "dtd")."""
    canonical = _aliases().get(_key(name)) if isinstance(name, str) else None
    if canonical is None:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(SPECS)}; toy tasks: {', '.join(TOY_TASKS + EXTRA_TASKS)}"
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
