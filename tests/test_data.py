import json
import pickle
import re
import types
import warnings

import fakedata
import numpy as np
import pytest

from ptnl.data import (
    CORRUPT,
    DATASETS,
    MISSING,
    PAPER_DATASETS,
    SIMPLE_TEMPLATES,
    SPECS,
    TEMPLATES,
    Dataset,
    ImageReadError,
    check_images,
    clean_classname,
    disk_status,
    ensemble_templates,
    fewshot_indices,
    identity,
    load_dataset,
    on_disk,
    readers,
    resolve_name,
)
from ptnl.data import disk as D
from ptnl.data.noise import add_noise
from ptnl.data.sampling import FEWSHOT_STREAM, NOISE_STREAM, rng_stream


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PTNL_DATA", str(root))
    return root


# expected cleaned class names (what prompts are built from)
CLEAN = {
    "OxfordPets": ["abyssinian", "american_bulldog", "basset_hound"],
    "Food101": ["apple_pie", "baby_back_ribs"],
    "DTD": ["banded", "blotchy"],
    "UCF101": ["Apply_Eye_Makeup", "Yo_Yo"],
    "Flowers102": ["pink primrose", "hard-leaved pocket orchid"],
    "Caltech101": ["face", "airplane", "accordion"],
    "EuroSAT": ["Annual Crop Land", "Sea or Lake"],
    "StanfordCars": ["2012 Tesla Model S Sedan", "2007 Chevrolet Express Cargo Van"],
    "SUN397": ["abbey", "outdoor apartment_building"],
}


@pytest.mark.parametrize("name", list(fakedata.COOP))
def test_coop_split_loaders(data_root, name):
    split = fakedata.write_coop(data_root, name)
    ds = load_dataset(name)
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.split_source == "coop-split"
    assert list(ds.classnames) == CLEAN[name]
    assert ds.template == TEMPLATES[name]
    for part, s in (("train", ds.train), ("val", ds.val), ("test", ds.test)):
        assert s.refs == tuple(r for r, _, _ in split[part])
        np.testing.assert_array_equal(s.labels, [y for _, y, _ in split[part]])
    img = ds.test.load_image(len(ds.test) - 1)
    assert img.mode == "RGB" and img.size == (8, 8)
    assert ds.root == str(data_root / fakedata.COOP[name][1])


def test_templates_and_prompts(data_root):
    fakedata.write_coop(data_root, "OxfordPets")
    fakedata.write_coop(data_root, "DTD")
    assert load_dataset("pets").prompts()[1] == "a photo of a american bulldog, a type of pet."
    assert load_dataset("dtd").prompts() == ["banded texture.", "blotchy texture."]
    assert set(TEMPLATES) == set(DATASETS) and set(PAPER_DATASETS) <= set(DATASETS)
    assert all(t.count("{}") == 1 for t in TEMPLATES.values())
    assert ensemble_templates("ImageNet") == list(SIMPLE_TEMPLATES)
    assert ensemble_templates("UCF101") == [*SIMPLE_TEMPLATES, "a photo of a person doing {}."]
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

    assert [t("{}") for t in SIMPLE_IMAGENET_TEMPLATES] == list(SIMPLE_TEMPLATES)


def test_dtd_coop_layout_and_torchvision_image_folder(data_root):
    # CoOp's DATASETS.md puts DTD's images at dtd/images; torchvision's download at dtd/dtd/images.
    fakedata.write_coop(data_root, "DTD", image_dir="dtd/images")
    assert load_dataset("DTD").root == str(data_root / "dtd" / "images")


def test_coop_split_over_torchvision_images_and_explicit_root(tmp_path):
    root = tmp_path / "elsewhere"
    fakedata.write_coop(root, "OxfordPets", image_dir="oxford-iiit-pet/images")
    ds = load_dataset("OxfordPets", root=root)
    assert ds.split_source == "coop-split" and ds.root == str(root / "oxford-iiit-pet" / "images")
    assert ds.train.load_image(0).mode == "RGB"
    # the image loader pickles (DataLoader workers under spawn need that)
    assert pickle.loads(pickle.dumps(ds.train)).load_image(1).size == (8, 8)


def test_fgvc_official_txt(data_root):
    fakedata.write_fgvc(data_root / "fgvc_aircraft")
    ds = load_dataset("FGVCAircraft")
    assert ds.split_source == "official-txt"
    assert list(ds.classnames) == fakedata.FGVC_VARIANTS  # "Cessna 172": a variant with a space
    assert len(ds.train) == len(ds.val) == len(ds.test) == 12
    np.testing.assert_array_equal(np.bincount(ds.train.labels), [3, 3, 3, 3])
    assert ds.train.load_image(0).mode == "RGB"


def test_imagenet_folders(data_root):
    fakedata.write_imagenet(data_root)
    ds = load_dataset("imagenet")
    assert ds.split_source == "imagenet-folders"
    assert list(ds.classnames) == [n for _, n in fakedata.IMAGENET]
    assert len(ds.train) == 12 and len(ds.test) == 6 and ds.val is None
    assert ds.train.refs[0].startswith("train/n01440764/")
    assert ds.test.load_image(5).mode == "RGB"


@pytest.mark.parametrize(
    ("writer", "name", "classnames", "source", "sizes"),
    [
        (fakedata.write_tv_food101, "Food101", ["apple_pie", "baby_back_ribs"], "torchvision", (6, None, 4)),
        (fakedata.write_tv_pets, "OxfordPets", ["abyssinian", "american_bulldog"], "torchvision", (8, None, 4)),
        (fakedata.write_tv_dtd, "DTD", ["banded", "blotchy"], "torchvision", (4, 4, 4)),
        (fakedata.write_tv_cars, "StanfordCars", ["2012 Tesla Model S Sedan", "2007 Chevrolet Express Cargo Van"],
         "torchvision", (6, None, 4)),
        (fakedata.write_tv_caltech, "Caltech101", ["face", "leopard", "accordion"], "torchvision+ptnl-split",
         (15, 6, 9)),
        (fakedata.write_tv_eurosat, "EuroSAT", ["Annual Crop Land", "Forest", "Sea or Lake"],
         "torchvision+ptnl-split", (15, 6, 9)),
        (fakedata.write_tv_sun397, "SUN397", ["abbey", "outdoor apartment_building"], "torchvision+ptnl-split",
         (10, 4, 6)),
    ],
)  # fmt: skip
def test_torchvision_route(data_root, writer, name, classnames, source, sizes):
    writer(data_root)
    ds = load_dataset(name)  # auto: no CoOp split file on disk, so torchvision
    assert ds.split_source == source
    assert list(ds.classnames) == classnames
    got = (len(ds.train), None if ds.val is None else len(ds.val), len(ds.test))
    assert got == sizes
    assert ds.train.load_image(0).mode == "RGB"
    if name == "StanfordCars":  # refs relative to the dataset folder, as in CoOp's split file
        assert ds.train.refs[0].startswith("cars_train/") and ds.test.refs[0].startswith("cars_test/")
    if source.endswith("ptnl-split"):  # our split is fixed and disjoint
        again = load_dataset(name, source="torchvision")
        assert again.train.refs == ds.train.refs
        assert not set(ds.train.refs) & set(ds.test.refs)


def test_fgvc_torchvision_route(data_root):
    fakedata.write_fgvc(data_root / "fgvc-aircraft-2013b" / "data")
    ds = load_dataset("aircraft", source="torchvision")
    assert ds.split_source == "torchvision" and list(ds.classnames) == fakedata.FGVC_VARIANTS
    coop = load_dataset("aircraft", source="coop")  # the same official txt, found in torchvision's folder
    assert coop.train.refs == ds.train.refs


def test_missing_dataset_names_folder_split_file_and_sources(data_root):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("OxfordPets")
    msg = str(err.value)
    assert str(data_root / "oxford_pets" / "images") in msg
    assert str(data_root / "oxford_pets" / "split_zhou_OxfordPets.json") in msg
    assert "drive.google.com" in msg and "robots.ox.ac.uk" in msg
    assert "torchvision.datasets.OxfordIIITPet(" in msg and "download=True" in msg
    with pytest.raises(FileNotFoundError, match="UCF-101-midframes"):
        load_dataset("ucf101")
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("Food101", source="torchvision")
    with pytest.raises(FileNotFoundError, match="classnames.txt"):
        load_dataset("ImageNet")
    with pytest.raises(ValueError, match="no torchvision route"):
        load_dataset("UCF101", source="torchvision")
    assert not any(data_root.iterdir())  # a failed load leaves nothing behind
    assert not on_disk("OxfordPets") and on_disk("toy-shapes")
    fakedata.write_tv_food101(data_root)
    assert on_disk("food") and not on_disk("DTD")


def test_split_file_without_images_is_an_error(data_root):
    fakedata.write_coop(data_root, "Food101")
    (data_root / "food-101" / "images" / "apple_pie" / "1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="not under the image folder"):
        load_dataset("Food101")


def test_names_and_aliases():
    for alias, name in [("pets", "OxfordPets"), ("DTD", "DTD"), ("describable_textures", "DTD"),
                        ("oxford_flowers", "Flowers102"), ("OxfordFlowers", "Flowers102"), ("food-101", "Food101"),
                        ("fgvc_aircraft", "FGVCAircraft"), ("caltech-101", "Caltech101"), ("IMAGENET", "ImageNet"),
                        ("cars", "StanfordCars"), ("sun397", "SUN397"), ("ucf", "UCF101")]:  # fmt: skip
        assert resolve_name(alias) == name
    with pytest.raises(ValueError, match="known datasets: OxfordPets, Food101"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="source="):
        load_dataset("pets", source="kaggle")


def test_toy_names_are_delegated(monkeypatch):
    calls = []
    fake = types.ModuleType("ptnl.data.toy.tasks")
    fake.load_task = lambda name: calls.append(name) or "toy dataset"
    monkeypatch.setattr(readers, "toy_tasks", fake)
    assert load_dataset("toy-shapes") == "toy dataset" and calls == ["toy-shapes"]


def test_clean_classname_matches_coop():
    assert clean_classname("OxfordPets", "American Pit Bull Terrier") == "american_pit_bull_terrier"
    assert clean_classname("StanfordCars", "Tesla Model S Sedan 2012") == "2012 Tesla Model S Sedan"
    assert clean_classname("StanfordCars", "2012 Tesla Model S Sedan") == "2012 Tesla Model S Sedan"
    assert clean_classname("SUN397", "a/apartment_building/outdoor") == "outdoor apartment_building"
    assert clean_classname("SUN397", "apartment_building/outdoor") == "outdoor apartment_building"
    assert clean_classname("UCF101", "ApplyEyeMakeup") == "Apply_Eye_Makeup"
    assert clean_classname("Caltech101", "Motorbikes") == "motorbike"
    assert clean_classname("EuroSAT", "HerbaceousVegetation") == "Herbaceous Vegetation Land"


# ----------------------------------------------------------------------------- few-shot sampling

TRAIN = np.repeat(np.arange(5), [30, 20, 16, 40, 25])


def test_fewshot_counts_and_reproducibility():
    idx = fewshot_indices(TRAIN, 16, seed=1)
    np.testing.assert_array_equal(np.bincount(TRAIN[idx]), np.full(5, 16))
    assert len(set(idx.tolist())) == len(idx)  # without replacement
    np.testing.assert_array_equal(idx, fewshot_indices(TRAIN, 16, seed=1))
    assert not np.array_equal(idx, fewshot_indices(TRAIN, 16, seed=2))
    # a class's draw depends only on that class: more images of class 4 leave classes 0-3 alone
    grown = np.concatenate([TRAIN, np.full(30, 4)])
    idx_grown = fewshot_indices(grown, 16, seed=1)
    np.testing.assert_array_equal(idx_grown[:64], idx[:64])
    assert not np.array_equal(idx_grown[64:], idx[64:])


def test_too_many_shots_offers_what_a_user_can_change():
    with pytest.raises(ValueError) as err:
        fewshot_indices(TRAIN, 17, seed=1)
    msg = str(err.value)
    assert "Lower shots to at most 16" in msg and "another dataset" in msg
    assert "library callers: fewshot_indices(..., allow_fewer=True)" in msg
    with pytest.raises(ValueError) as err:
        fewshot_indices(TRAIN, 4, seed=1, n_classes=6)  # class 5 is empty: no shots value helps
    assert "no training images" in str(err.value) and "Lower shots" not in str(err.value)


def test_fewshot_short_classes():
    with pytest.raises(ValueError, match=r"class 2: 16"):
        fewshot_indices(TRAIN, 17, seed=1)
    with pytest.raises(ValueError, match=r"class 5: 0"):
        fewshot_indices(TRAIN, 4, seed=1, n_classes=6)
    with pytest.warns(UserWarning, match=r"class 1: 20, class 2: 16"):
        idx = fewshot_indices(TRAIN, 24, seed=1, allow_fewer=True)
    np.testing.assert_array_equal(np.bincount(TRAIN[idx]), [24, 20, 16, 24, 24])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fewshot_indices(TRAIN, 16, seed=1)  # nothing short: no warning
    with pytest.raises(ValueError, match="shots"):
        fewshot_indices(TRAIN, 0, seed=1)


def test_streams_are_independent():
    a = rng_stream(1, FEWSHOT_STREAM, 0).random(8)
    b = rng_stream(1, NOISE_STREAM, 0).random(8)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, rng_stream(1, FEWSHOT_STREAM, 0).random(8))


def test_fewshot_set_does_not_move_with_the_noise_rate(data_root):
    fakedata.write_coop(data_root, "Caltech101", n_train=(20, 18, 25))
    ds = load_dataset("caltech")
    sets, noisy_sets = [], []
    for rate in (0.0, 0.125, 0.25, 0.5):
        idx = fewshot_indices(ds.train.labels, 16, seed=3)
        shots = ds.train.subset(idx)
        nl = add_noise(shots.labels, ds.n_classes, "symmetric", rate, seed=3)
        np.testing.assert_array_equal(
            np.bincount(shots.labels[nl.is_noisy], minlength=3), [round(rate * 16)] * 3
        )
        assert np.all(nl.noisy[nl.is_noisy] != shots.labels[nl.is_noisy])
        sets.append(shots.refs)
        noisy_sets.append(set(np.flatnonzero(nl.is_noisy).tolist()))
    assert all(s == sets[0] for s in sets)
    assert noisy_sets[1] <= noisy_sets[2] <= noisy_sets[3]  # nested


# ----------------------------------------------------------------------------- data identity


def _drop_last_test_item(split_file):
    raw = json.loads(split_file.read_text())
    raw["test"] = raw["test"][:-1]
    split_file.write_text(json.dumps(raw))


def test_identity_follows_the_route_and_the_split_file(data_root, monkeypatch):
    assert identity("Food101") == MISSING  # not on disk: a marker, no error
    fakedata.write_tv_food101(data_root)
    tv = identity("food")
    assert tv.startswith("torchvision:") and tv == D.content_identity(load_dataset("Food101"))
    loads = []
    real = D.load_dataset
    monkeypatch.setattr(D, "load_dataset", lambda *a, **k: loads.append(a) or real(*a, **k))
    assert identity("Food101") == identity("Food101") == tv and loads == []  # memoised

    # CoOp's split file added over the torchvision download: auto now reads it
    fakedata.write_coop(data_root, "Food101")
    coop = identity("Food101")
    assert coop.startswith("coop-split:") and coop != tv and len(loads) == 1
    split_file = data_root / "food-101" / "split_zhou_Food101.json"
    original = split_file.read_text()
    _drop_last_test_item(split_file)
    edited = identity("Food101")
    assert edited not in (coop, tv)
    split_file.write_text(original)  # same content again: same identity (it hashes the split, not the stat)
    assert identity("Food101") == coop
    split_file.unlink()
    assert identity("Food101") == tv


def test_identity_of_the_two_routes_of_one_dataset_differ(tmp_path):
    fakedata.write_coop(tmp_path / "a", "DTD")
    fakedata.write_tv_dtd(tmp_path / "b")
    a, b = identity("DTD", root=tmp_path / "a"), identity("DTD", root=tmp_path / "b")
    assert a.startswith("coop-split:") and b.startswith("torchvision:") and a != b
    fakedata.write_coop(tmp_path / "c", "DTD")  # the same split in another folder: the same data
    assert identity("DTD", root=tmp_path / "c") == a


def test_identity_of_imagenet_fgvc_toy_and_corrupt_files(data_root):
    fakedata.write_imagenet(data_root)
    inet = identity("ImageNet")
    assert inet.startswith("imagenet-folders:")
    fakedata.touch_jpeg(data_root / "imagenet" / "images" / "val" / "extra.JPEG")  # val/ changed
    assert identity("ImageNet") == inet  # a stray file, not in a class folder: same split
    fakedata.write_fgvc(data_root / "fgvc_aircraft")
    fgvc = identity("FGVCAircraft")
    assert fgvc.startswith("official-txt:")
    txt = data_root / "fgvc_aircraft" / "images_variant_test.txt"
    txt.write_text("\n".join(txt.read_text().splitlines()[:-1]) + "\n")
    assert identity("FGVCAircraft") not in (fgvc, MISSING, CORRUPT)
    assert identity("toy-shapes") == load_dataset("toy-shapes").fingerprint() != identity("toy-fine")
    assert identity("toy-shapes").startswith("toy:")
    fakedata.write_coop(data_root, "OxfordPets")
    (data_root / "oxford_pets" / "split_zhou_OxfordPets.json").write_text("{not json")
    assert identity("pets") == CORRUPT


def test_fingerprint_hashes_classnames_template_refs_and_labels(data_root):
    fakedata.write_coop(data_root, "EuroSAT")
    ds = load_dataset("EuroSAT")
    fp = ds.fingerprint()
    assert fp == load_dataset("EuroSAT").fingerprint() and fp.startswith("coop-split:") and len(fp) == 27
    fields = dict(name=ds.name, classnames=ds.classnames, template=ds.template, train=ds.train, val=ds.val,
                  test=ds.test, split_source=ds.split_source)  # fmt: skip
    variants = [
        dict(classnames=("a", "b")),
        dict(template="a photo of {}."),
        dict(split_source="torchvision"),
        dict(val=None),
        dict(test=ds.test.subset(range(len(ds.test) - 1))),
        dict(train=type(ds.train)(ds.train.refs, ds.train.labels[::-1], ds.train.image_loader)),
    ]
    for change in variants:
        assert Dataset(**{**fields, **change}).fingerprint() != fp, change


# ----------------------------------------------------------------------------- disk status


def test_disk_status_of_each_case(data_root):
    assert disk_status("toy-shapes").state == "ok"
    state, msg = disk_status("Flowers102")
    assert state == "missing" and str(data_root) in msg and "\n" not in msg

    fakedata.write_coop(data_root, "Flowers102")
    state, msg = disk_status("Flowers102")
    assert state == "ok" and "coop-split" in msg
    split_file = data_root / "oxford_flowers" / "split_zhou_OxfordFlowers.json"
    good = split_file.read_text()
    split_file.write_text(good[: len(good) // 2])  # truncated JSON
    state, msg = disk_status("Flowers102")
    assert state == "corrupt" and str(split_file) in msg and "JSONDecodeError" in msg
    assert on_disk("Flowers102")  # on_disk only looks for the files; disk_status parses them
    split_file.write_text(json.dumps({"train": [["x.jpg", 0]], "val": [], "test": []}))
    assert disk_status("Flowers102").state == "corrupt"
    split_file.unlink()  # images, no split file, no torchvision layout
    state, msg = disk_status("Flowers102")
    assert state == "no-split"
    assert msg == (
        f"images found under {data_root / 'oxford_flowers' / 'jpg'} but the split file {split_file} is "
        f"missing (get it from {SPECS['Flowers102'].split_from})"
    )

    fakedata.write_tv_food101(data_root)
    state, msg = disk_status("Food101")
    assert state == "ok" and "torchvision" in msg
    fakedata.write_coop(data_root, "DTD")
    (data_root / "dtd" / "dtd" / "images" / "banded" / "banded_0001.jpg").unlink()  # the first train image
    state, msg = disk_status("DTD")
    assert state == "missing" and "banded_0001.jpg" in msg


def test_disk_status_of_fgvc_and_imagenet(data_root):
    assert disk_status("FGVCAircraft").state == "missing"
    fakedata.write_fgvc(data_root / "fgvc_aircraft")
    state, msg = disk_status("FGVCAircraft")
    assert state == "ok" and "official-txt" in msg
    txt = data_root / "fgvc_aircraft" / "images_variant_val.txt"
    txt.write_text("1000001 Boeing 999\n")
    state, msg = disk_status("FGVCAircraft")
    assert state == "corrupt" and str(txt) in msg and "Boeing 999" in msg

    assert disk_status("ImageNet").state == "missing"
    fakedata.write_imagenet(data_root, classnames_txt=False)
    state, msg = disk_status("ImageNet")  # 3 class folders, not 1000: open_clip's names do not fit
    names = data_root / "imagenet" / "classnames.txt"
    assert state == "no-split" and msg.startswith(f"images found under {data_root / 'imagenet' / 'images'}")
    assert str(names) in msg and "drive.google.com" in msg
    fakedata.write_imagenet(data_root)
    assert disk_status("ImageNet").state == "ok"
    names.write_text("n01440764 tench\nn01443537\n")
    state, msg = disk_status("ImageNet")
    assert state == "corrupt" and str(names) in msg and "line 2" in msg


# ----------------------------------------------------------------------------- image files


def test_unreadable_image_names_file_dataset_and_split(data_root):
    fakedata.write_coop(data_root, "OxfordPets")
    ds = load_dataset("pets")
    bad = data_root / "oxford_pets" / "images" / ds.test.refs[1]
    fakedata.truncate_jpeg(bad)
    with pytest.raises(ImageReadError) as err:
        ds.test.load_image(1)
    msg = str(err.value)
    assert msg.startswith(f"OxfordPets test: cannot read image {bad}: ")
    assert "truncated" in msg and msg.endswith("Re-download it or remove it from the split")
    assert isinstance(err.value, ValueError) and isinstance(err.value, OSError)
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=re.escape(f"OxfordPets test: cannot read image {bad}")):
        ds.test.load_image(1)
    bad.unlink()
    with pytest.raises(ImageReadError, match="No such file"):
        ds.test.load_image(1)
    assert ds.test.load_image(0).mode == "RGB"


def test_check_images_lists_what_is_missing(data_root):
    fakedata.write_coop(data_root, "Caltech101", n_train=(20, 18, 25))
    ds = load_dataset("caltech")
    image_root = data_root / "caltech-101" / "101_ObjectCategories"
    gone = ds.train.refs[3:10]
    for ref in gone:
        (image_root / ref).unlink()
    check_images(ds.train.subset(range(3)))  # only what is asked for is checked
    check_images(ds.test)
    with pytest.raises(FileNotFoundError) as err:
        check_images(ds.train)
    msg = str(err.value)
    assert msg.startswith(
        f"Caltech101 train: 7 of {len(ds.train) - 3} images checked are missing under {image_root}"
    )
    assert str(image_root / gone[0]) in msg and "and 2 more" in msg and "DATASETS.md" in msg
    with pytest.raises(FileNotFoundError, match="2 of 2 images checked"):  # missing ones are stat'ed again
        check_images(ds.train, [gone[0], gone[1], ds.train.refs[0]])
    check_images(load_dataset("toy-shapes").train)  # rendered images: nothing to check


def test_check_images_finds_unreadable_files_before_encoding(data_root):
    """A truncated JPEG is found by its header and end marker, not minutes into encoding; what
    passed is not read again in this process."""
    fakedata.write_coop(data_root, "OxfordPets")
    ds = load_dataset("pets")
    image_root = data_root / "oxford_pets" / "images"
    check_images(ds.train)  # every fake image is whole
    bad = [image_root / ref for ref in ds.test.refs[:2]]
    fakedata.truncate_jpeg(bad[0])
    bad[1].write_bytes(b"not an image")
    # no end-of-image marker, but every pixel there: decoded in full, and read as the loader reads it
    (image_root / ds.test.refs[2]).write_bytes(fakedata.JPEG[:-2])
    with pytest.raises(ImageReadError) as err:
        check_images(ds.test)
    msg = str(err.value)
    assert msg.startswith(
        f"OxfordPets test: 2 of {len(ds.test)} images checked cannot be read under {image_root}"
    )
    assert all(str(b) in msg for b in bad) and str(ds.test.refs[2]) not in msg
    assert isinstance(err.value, ValueError)
    fakedata.touch_jpeg(bad[1])  # repaired; the images that passed are not read again
    with pytest.raises(ImageReadError) as err:
        check_images(ds.test)
    msg = str(err.value)
    assert (
        msg.startswith(f"OxfordPets test: cannot read image {bad[0]}: ") and "remove it from the split" in msg
    )
    fakedata.touch_jpeg(bad[0])
    check_images(ds.test)


def test_a_run_checks_its_test_images_are_readable_before_encoding(data_root, fresh_store, monkeypatch):
    """The README's promise: every unreadable image of every split a run uses fails before
    anything is encoded (here: before the backbone is even loaded)."""
    from ptnl.train import engine
    from ptnl.train import features as F
    from ptnl.train.config import RunConfig

    fakedata.write_coop(data_root, "OxfordPets")
    ds = load_dataset("pets")
    bad = data_root / "oxford_pets" / "images" / ds.test.refs[-1]
    fakedata.truncate_jpeg(bad)

    def no_encoding(*a, **k):
        raise AssertionError("encoded before the images were checked")

    monkeypatch.setattr(F, "cached_features", no_encoding)
    monkeypatch.setattr(engine, "backbone", no_encoding)
    cfg = RunConfig(dataset="OxfordPets", backbone="toy-rn", shots=2, epochs=1)
    with pytest.raises(ImageReadError, match=re.escape(f"OxfordPets test: cannot read image {bad}")):
        engine.prepare(cfg, "cpu", dataset=ds)
