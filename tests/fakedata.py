"""Tiny fake copies of the real datasets, written to disk in each real layout.

Each class gets a few 8x8 JPEGs (all the same bytes: only the layout matters), and a split file
in CoOp's format, or the official txt/json files torchvision reads.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

_buf = io.BytesIO()
Image.new("RGB", (8, 8), (200, 30, 60)).save(_buf, format="JPEG")
JPEG = _buf.getvalue()

# dataset -> (CoOp folder, image dir under the data root, split file, [(ref pattern, classname in the split)])
COOP = {
    "OxfordPets": ("oxford_pets", "oxford_pets/images", "split_zhou_OxfordPets.json",
                   [("Abyssinian_{i}.jpg", "abyssinian"), ("american_bulldog_{i}.jpg", "american_bulldog"),
                    ("basset_hound_{i}.jpg", "basset_hound")]),
    "Food101": ("food-101", "food-101/images", "split_zhou_Food101.json",
                [("apple_pie/{i}.jpg", "apple_pie"), ("baby_back_ribs/{i}.jpg", "baby_back_ribs")]),
    "DTD": ("dtd", "dtd/dtd/images", "split_zhou_DescribableTextures.json",
            [("banded/banded_{i:04d}.jpg", "banded"), ("blotchy/blotchy_{i:04d}.jpg", "blotchy")]),
    "UCF101": ("ucf101", "ucf101/UCF-101-midframes", "split_zhou_UCF101.json",
               [("Apply_Eye_Makeup/v_ApplyEyeMakeup_g{i:02d}_c01.jpg", "Apply_Eye_Makeup"),
                ("Yo_Yo/v_YoYo_g{i:02d}_c01.jpg", "Yo_Yo")]),
    "Flowers102": ("oxford_flowers", "oxford_flowers/jpg", "split_zhou_OxfordFlowers.json",
                   [("image_{i:05d}.jpg", "pink primrose"), ("image_1{i:04d}.jpg", "hard-leaved pocket orchid")]),
    "Caltech101": ("caltech-101", "caltech-101/101_ObjectCategories", "split_zhou_Caltech101.json",
                   [("Faces/image_{i:04d}.jpg", "face"), ("airplanes/image_{i:04d}.jpg", "airplane"),
                    ("accordion/image_{i:04d}.jpg", "accordion")]),
    "EuroSAT": ("eurosat", "eurosat/2750", "split_zhou_EuroSAT.json",
                [("AnnualCrop/AnnualCrop_{i}.jpg", "Annual Crop Land"), ("SeaLake/SeaLake_{i}.jpg", "Sea or Lake")]),
    "StanfordCars": ("stanford_cars", "stanford_cars", "split_zhou_StanfordCars.json",
                     [("cars_train/{i:05d}.jpg", "2012 Tesla Model S Sedan"),
                      ("cars_train/1{i:04d}.jpg", "2007 Chevrolet Express Cargo Van")]),
    "SUN397": ("sun397", "sun397/SUN397", "split_zhou_SUN397.json",
               [("a/abbey/sun_a{i:04d}.jpg", "abbey"),
                ("a/apartment_building/outdoor/sun_b{i:04d}.jpg", "outdoor apartment_building")]),
}  # fmt: skip


def touch_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(JPEG)


def truncate_jpeg(path: Path) -> None:
    """Overwrite ``path`` with the first half of a valid 64x64 JPEG: its header parses, its pixels
    do not (PIL opens it lazily and only fails when decoding)."""
    import numpy as np

    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def write_coop(
    root: Path, name: str, n_train=(6, 5, 7), n_val: int = 2, n_test: int = 3, image_dir=None
) -> dict:
    """CoOp's layout for ``name``; class c gets n_train[c % len(n_train)] train images."""
    folder, default_dir, split_file, classes = COOP[name]
    image_root = root / (image_dir or default_dir)
    split, i = {"train": [], "val": [], "test": []}, 1
    for y, (pattern, cname) in enumerate(classes):
        for part, n in (("train", n_train[y % len(n_train)]), ("val", n_val), ("test", n_test)):
            for _ in range(n):
                ref = pattern.format(i=i)
                i += 1
                touch_jpeg(image_root / ref)
                split[part].append([ref, y, cname])
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / split_file).write_text(json.dumps(split))
    return split


FGVC_VARIANTS = ["707-320", "A300B4", "F/A-18", "Cessna 172"]


def write_fgvc(data_dir: Path, per_split: int = 3) -> None:
    """The official FGVC-Aircraft data/ folder: images/, variants.txt, images_variant_*.txt."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "variants.txt").write_text("\n".join(FGVC_VARIANTS) + "\n")
    image_id = 1000000
    for part in ("train", "val", "test", "trainval"):
        lines = []
        for variant in FGVC_VARIANTS:
            for _ in range(per_split):
                image_id += 1
                touch_jpeg(data_dir / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {variant}")
        (data_dir / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n")


IMAGENET = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark")]


def write_imagenet(root: Path, n_train: int = 4, n_val: int = 2, classnames_txt: bool = True) -> None:
    for wnid, _ in IMAGENET:
        for part, n in (("train", n_train), ("val", n_val)):
            for i in range(n):
                touch_jpeg(root / "imagenet" / "images" / part / wnid / f"{wnid}_{part}_{i}.JPEG")
    if classnames_txt:
        (root / "imagenet" / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in IMAGENET))


# ----------------------------------------------------------------------------- torchvision layouts


def write_tv_food101(root: Path, per_class=(3, 2)) -> None:
    base = root / "food-101"
    for part, n in zip(("train", "test"), per_class):
        meta = {}
        for cls in ("apple_pie", "baby_back_ribs"):
            ids = [f"{cls}/{part}{i}" for i in range(n)]
            for rel in ids:
                touch_jpeg(base / "images" / f"{rel}.jpg")
            meta[cls] = ids
        (base / "meta").mkdir(parents=True, exist_ok=True)
        (base / "meta" / f"{part}.json").write_text(json.dumps(meta))


def write_tv_pets(root: Path) -> None:
    base = root / "oxford-iiit-pet"
    rows = {"trainval": [], "test": []}
    for label, (breed, species) in enumerate([("Abyssinian", 1), ("american_bulldog", 2)], start=1):
        for part, n in (("trainval", 4), ("test", 2)):
            for _ in range(n):
                image_id = f"{breed}_{len(rows['trainval']) + len(rows['test']) + 1}"
                touch_jpeg(base / "images" / f"{image_id}.jpg")
                rows[part].append(f"{image_id} {label} {species} 1")
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    for part, lines in rows.items():
        (base / "annotations" / f"{part}.txt").write_text("\n".join(lines) + "\n")


def write_tv_dtd(root: Path) -> None:
    data = root / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True, exist_ok=True)
    for part in ("train", "val", "test"):
        lines = []
        for cls in ("banded", "blotchy"):
            for i in range(2):
                name = f"{cls}_{part}{i}.jpg"
                touch_jpeg(data / "images" / cls / name)
                lines.append(f"{cls}/{name}")
        (data / "labels" / f"{part}1.txt").write_text("\n".join(lines) + "\n")


def write_tv_caltech(root: Path, per_class: int = 10) -> None:
    base = root / "caltech101" / "101_ObjectCategories"
    for cat in ("BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion"):
        for i in range(1, per_class + 1):
            touch_jpeg(base / cat / f"image_{i:04d}.jpg")


def write_tv_eurosat(root: Path, per_class: int = 10) -> None:
    for cls in ("AnnualCrop", "Forest", "SeaLake"):
        for i in range(1, per_class + 1):
            touch_jpeg(root / "eurosat" / "2750" / cls / f"{cls}_{i}.jpg")


def write_tv_sun397(root: Path, per_class: int = 10) -> None:
    base = root / "SUN397"
    classes = ["/a/abbey", "/a/apartment_building/outdoor"]
    base.mkdir(parents=True, exist_ok=True)
    (base / "ClassName.txt").write_text("\n".join(classes) + "\n")
    for c, cls in enumerate(classes):
        for i in range(per_class):
            touch_jpeg(base / cls.strip("/") / f"sun_{c}{i:03d}.jpg")


def write_tv_cars(root: Path, per_class=(3, 2)) -> None:
    """torchvision's StanfordCars layout: devkit/*.mat, cars_train/, cars_test/ (+ test labels .mat)."""
    import numpy as np
    from scipy.io import savemat

    base = root / "stanford_cars"
    names = np.array(["Tesla Model S Sedan 2012", "Chevrolet Express Cargo Van 2007"], dtype=object)
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": names.reshape(1, -1)})
    dtype = [("fname", "O"), ("class", "O")]
    for part, n, mat in (("train", per_class[0], base / "devkit" / "cars_train_annos.mat"),
                         ("test", per_class[1], base / "cars_test_annos_withlabels.mat")):  # fmt: skip
        rows = []
        for c in range(len(names)):
            for i in range(n):
                fname = f"{c}{i:04d}.jpg"
                touch_jpeg(base / f"cars_{part}" / fname)
                rows.append((fname, c + 1))  # 1-based in the devkit
        savemat(mat, {"annotations": np.array(rows, dtype=dtype).reshape(1, -1)})
