"""The real noisy-label benchmarks (ptnl.data.noisy_sets) on tiny fakes in their shipped layouts:
Food-101N's release folder plus Food-101, torchvision's CIFAR pickles plus CIFAR-N's .pt files."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ptnl.data import (
    CORRUPT,
    MISSING,
    NOISY_DATASETS,
    NOISY_TEMPLATES,
    Dataset,
    ImageReadError,
    Split,
    disk_status,
    ensemble_templates,
    identity,
    load_dataset,
    load_noisy_set,
    noisy_on_disk,
    on_disk,
)
from ptnl.data import noisy_sets as N
from ptnl.data.disk import content_identity

FOOD = ["apple_pie", "baby_back_ribs", "beignets"]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_NAMES = ["apple", "aquarium_fish", "baby", "maple_tree"]  # a few of the real fine names
CIFAR10N_KEYS = {
    "CIFAR10N-aggre": "aggre_label",
    "CIFAR10N-worse": "worse_label",
    "CIFAR10N-random1": "random_label1",
    "CIFAR10N-random2": "random_label2",
    "CIFAR10N-random3": "random_label3",
    "CIFAR10N-clean": "clean_label",
}


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PTNL_DATA", str(root))
    return root


def _jpeg(path, size, color=(200, 30, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")


# ----------------------------------------------------------------------------- Food-101N fake


def write_food101n(root, release="Food-101N_release"):
    """3 classes x 3 web images, verification labels for some, and Food-101 with 2 test images a class."""
    meta = root / release / "meta"
    meta.mkdir(parents=True)
    (meta / "classes.txt").write_text("class_name\n" + "\n".join(FOOD) + "\n")
    refs = [f"{c}/{k:032x}.jpg" for y, c in enumerate(FOOD) for k in range(3 * y, 3 * y + 3)]
    for ref in refs:
        _jpeg(root / release / "images" / ref, (10, 7))
    (meta / "imagelist.tsv").write_text("class_name/key\n" + "\n".join(refs) + "\n")
    header = "class_name/key\tverification_label\n"
    # refs[4] is verified right in train but wrong in val; "beignets/ffff.jpg" is in no list
    train = [(refs[0], 1), (refs[1], 0), (refs[4], 1), ("beignets/ffff.jpg", 1)]
    (meta / "verified_train.tsv").write_text(header + "".join(f"{r}\t{v}\n" for r, v in train))
    (meta / "verified_val.tsv").write_text(header + f"{refs[6]}\t1\n{refs[4]}\t0\n")

    food = root / "food-101"
    (food / "meta").mkdir(parents=True)
    (food / "meta" / "classes.txt").write_text("\n".join(FOOD) + "\n")  # Food-101's: no header
    test = [f"{c}/{1000 * y + i}" for y, c in enumerate(FOOD) for i in range(2)]
    (food / "meta" / "test.txt").write_text("\n".join(test) + "\n")
    (food / "meta" / "train.txt").write_text(f"{FOOD[0]}/99\n")
    for t in test:
        _jpeg(food / "images" / f"{t}.jpg", (12, 9))
    return refs, test


def test_food101n_loads_the_web_labels_and_the_verified_true_labels(data_root):
    refs, test = write_food101n(data_root)
    ds = load_noisy_set("Food101N")
    assert isinstance(ds, Dataset) and ds.name == "Food101N" and ds.split_source == "food101n-release"
    assert list(ds.classnames) == FOOD and ds.template == "a photo of {}, a type of food."
    assert ds.train.refs == tuple(refs) and ds.val is None
    np.testing.assert_array_equal(ds.train.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    # 1 -> the web label; 0, unverified, or verified wrong by either file -> -1
    np.testing.assert_array_equal(ds.train_true_labels, [0, -1, -1, -1, -1, -1, 2, -1, -1])
    assert ds.test.refs == tuple(f"{t}.jpg" for t in test)
    np.testing.assert_array_equal(ds.test.labels, [0, 0, 1, 1, 2, 2])
    assert ds.root == str(data_root / "Food-101N_release" / "images")
    img, test_img = ds.train.load_image(8), ds.test.load_image(5)
    assert img.mode == "RGB" and img.size == (10, 7) and test_img.size == (12, 9)
    assert ds.prompts()[1] == "a photo of baby back ribs, a type of food."
    assert pickle.loads(pickle.dumps(ds.test)).load_image(0).size == (12, 9)


@pytest.mark.parametrize("folder", ["food-101N", "food-101n"])  # JoAPR's and NLPrompt's folder names
def test_food101n_other_folder_names(data_root, folder):
    write_food101n(data_root, release=folder)
    assert load_noisy_set("food-101n", data_root).root == str(data_root / folder / "images")


@pytest.mark.parametrize(
    ("remove", "url"),
    [
        ("Food-101N_release/meta/imagelist.tsv", N.FOOD101N_PAGE),
        ("Food-101N_release/meta/verified_val.tsv", N.FOOD101N_PAGE),
        ("Food-101N_release/meta/classes.txt", N.FOOD101N_PAGE),
        ("food-101/meta/test.txt", N.FOOD101_URL),
        (f"Food-101N_release/images/{FOOD[0]}/{0:032x}.jpg", N.FOOD101N_PAGE),
        (f"food-101/images/{FOOD[0]}/0.jpg", N.FOOD101_URL),
    ],
)
def test_food101n_missing_pieces_say_which_file_and_where_from(data_root, remove, url):
    write_food101n(data_root)
    (data_root / remove).unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("Food101N")
    first = str(e.value).splitlines()[0]
    assert first == f"Food101N is not on disk under {data_root} (no {data_root / remove})."
    assert url in str(e.value) and "$PTNL_DATA" in str(e.value)
    assert disk_status("Food101N").state == "missing"
    assert identity("Food101N") == MISSING
    assert on_disk("Food101N") == remove.endswith(".jpg")  # a stat per list, no image


@pytest.mark.parametrize(
    ("path", "text", "match"),
    [
        ("food-101/meta/classes.txt", "apple_pie\nbaby_back_ribs\nbibimbap\n", "same classes"),
        ("Food-101N_release/meta/verified_val.tsv", "class_name/key\tverification_label\nbeignets/x.jpg\tyes\n",
         "0|1"),
        ("Food-101N_release/meta/imagelist.tsv", "class_name/key\nbibimbap/abc.jpg\n", "known class"),
    ],
)  # fmt: skip
def test_food101n_malformed_lists_are_value_errors(data_root, path, text, match):
    write_food101n(data_root)
    (data_root / path).write_text(text)
    with pytest.raises(ValueError, match=match):
        load_noisy_set("Food101N")
    assert identity("Food101N") == CORRUPT and disk_status("Food101N").state == "corrupt"


def test_food101n_identity_follows_the_verification_labels(data_root):
    refs, _ = write_food101n(data_root)
    first = identity("Food101N")
    assert first == content_identity(load_noisy_set("Food101N")) == identity("Food101N")
    assert first.startswith("food101n-release:")
    header = "class_name/key\tverification_label\n"
    (data_root / "Food-101N_release/meta/verified_train.tsv").write_text(header + f"{refs[0]}\t0\n")
    assert identity("Food101N") != first
    assert disk_status("Food101N").state == "ok"


# ----------------------------------------------------------------------------- CIFAR fakes


def _rows(images):
    """HWC uint8 images as CIFAR stores them: one row of 3072 bytes each, the R, G, B planes."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _dump(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root, per_batch=2, human_dir="cifar-n", clean=None):
    """torchvision's cifar-10-batches-py (bytes keys, as Python 2's pickles read with encoding='bytes')
    with 5 x ``per_batch`` train and 3 test images, plus CIFAR-10_human.pt."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    n = 5 * per_batch
    images = rng.integers(0, 256, (n + 3, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n + 3) % 10
    for b in range(5):
        s = slice(b * per_batch, (b + 1) * per_batch)
        _dump(folder / f"data_batch_{b + 1}", {b"batch_label": f"training batch {b + 1} of 5".encode(),
                                               b"labels": labels[s].tolist(), b"data": _rows(images[s]),
                                               b"filenames": [b"x.png"] * per_batch})  # fmt: skip
    _dump(folder / "test_batch", {b"labels": labels[n:].tolist(), b"data": _rows(images[n:])})
    _dump(folder / "batches.meta", {b"label_names": [c.encode() for c in CIFAR10_NAMES], b"num_vis": 3072})
    clean = labels[:n] if clean is None else clean
    human = {"clean_label": np.asarray(clean)}
    for i, key in enumerate(k for k in CIFAR10N_KEYS.values() if k != "clean_label"):
        human[key] = (labels[:n] + i + 1) % 10
    (root / human_dir).mkdir(parents=True, exist_ok=True)
    torch.save(human, root / human_dir / "CIFAR-10_human.pt")
    return images, labels, human


def write_cifar100(root, human_dir="."):
    """torchvision's cifar-100-python (str keys, as torchvision reads the real ones) and CIFAR-100_human.pt."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    images = rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    fine = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])[:9]
    _dump(
        folder / "train",
        {"fine_labels": fine[:6].tolist(), "coarse_labels": [0] * 6, "data": _rows(images[:6])},
    )
    _dump(
        folder / "test",
        {"fine_labels": fine[6:].tolist(), "coarse_labels": [0] * 3, "data": _rows(images[6:])},
    )
    _dump(folder / "meta", {"fine_label_names": CIFAR100_NAMES, "coarse_label_names": ["fish"]})
    noisy = np.array([1, 1, 2, 0, 0, 3])
    human = {"clean_label": fine[:6], "noisy_label": noisy, "noisy_coarse_label": np.zeros(6, dtype=np.int64),
             "clean_coarse_label": np.zeros(6, dtype=np.int64)}  # fmt: skip
    (root / human_dir).mkdir(parents=True, exist_ok=True)
    torch.save(human, root / human_dir / "CIFAR-100_human.pt")
    return images, fine, noisy


@pytest.mark.parametrize("name", list(CIFAR10N_KEYS))
def test_cifar10n_loads_each_label_set_over_torchvisions_pickles(data_root, name):
    images, labels, human = write_cifar10(data_root)
    ds = load_dataset(name)
    assert ds.name == name and ds.split_source == "cifar-n" and list(ds.classnames) == CIFAR10_NAMES
    assert ds.template == "a photo of a {}." and ds.val is None
    assert ds.root == str(data_root / "cifar-10-batches-py")
    assert len(ds.train) == 10 and len(ds.test) == 3
    assert ds.train.refs[:2] == ("train/000000", "train/000001") and ds.test.refs[-1] == "test/000002"
    np.testing.assert_array_equal(ds.train.labels, human[CIFAR10N_KEYS[name]])
    np.testing.assert_array_equal(ds.train_true_labels, labels[:10])
    np.testing.assert_array_equal(ds.test.labels, labels[10:])
    img = ds.train.load_image(7)
    assert img.mode == "RGB" and img.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(img), images[7])
    np.testing.assert_array_equal(np.asarray(ds.test.load_image(2)), images[12])


def test_cifar100n_reads_str_keyed_pickles_and_a_label_file_at_the_root(data_root):
    images, fine, noisy = write_cifar100(data_root)
    ds = load_noisy_set("cifar-100n")
    assert ds.name == "CIFAR100N" and list(ds.classnames) == CIFAR100_NAMES
    assert ds.prompts()[1] == "a photo of a aquarium fish."
    np.testing.assert_array_equal(ds.train.labels, noisy)
    np.testing.assert_array_equal(ds.train_true_labels, fine[:6])
    np.testing.assert_array_equal(ds.test.labels, fine[6:])
    np.testing.assert_array_equal(np.asarray(ds.test.load_image(0)), images[6])
    np.testing.assert_array_equal(load_noisy_set("CIFAR100N-clean").train.labels, fine[:6])


@pytest.mark.parametrize("human_dir", ["cifar-n", ".", "cifar-10-100n/data"])
def test_cifar_n_label_file_locations(data_root, human_dir):
    write_cifar10(data_root, human_dir=human_dir)
    assert on_disk("CIFAR10N-aggre") and noisy_on_disk("cifar10n-aggre", data_root)
    assert len(load_noisy_set("CIFAR10N-aggre").train) == 10


def test_cifar_loader_pickles_small_and_reads_the_rows_again_in_a_fresh_process(data_root):
    images, _, _ = write_cifar10(data_root)
    ds = load_noisy_set("CIFAR10N-worse")
    blob = pickle.dumps(ds.train.image_loader)
    assert len(blob) < 2000  # paths, not pixels
    N._ROWS.clear()  # what a spawned DataLoader worker starts with
    split = Split(ds.train.refs, ds.train.labels, pickle.loads(blob))
    np.testing.assert_array_equal(np.asarray(split.load_image(3)), images[3])
    with pytest.raises(ImageReadError, match="train/000099"):
        ds.train.image_loader("train/000099")


def test_cifar_n_file_that_does_not_match_the_clean_labels(data_root):
    write_cifar10(data_root, clean=np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match=r"clean_label differs .* at 9 of 10 images"):
        load_noisy_set("CIFAR10N-aggre")
    assert identity("CIFAR10N-aggre") == CORRUPT


@pytest.mark.parametrize(
    ("remove", "url"),
    [
        ("cifar-10-batches-py/data_batch_3", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("cifar-10-batches-py/batches.meta", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("cifar-n/CIFAR-10_human.pt", N.CIFAR_N_URL),
    ],
)
def test_cifar_missing_pieces_say_which_file_and_where_from(data_root, remove, url):
    write_cifar10(data_root)
    (data_root / remove).unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("CIFAR10N-random2")
    assert (
        str(e.value).splitlines()[0]
        == f"CIFAR10N-random2 is not on disk under {data_root} (no {data_root / remove})."
    )
    assert url in str(e.value) and "torchvision.datasets.CIFAR10(" in str(e.value)
    assert not on_disk("CIFAR10N-random2")
    assert identity("CIFAR10N-random2") == MISSING and disk_status("CIFAR10N-random2").state == "missing"


def test_cifar_n_files_load_with_weights_only(data_root, tmp_path):
    write_cifar10(data_root)
    path = data_root / "cifar-n" / "CIFAR-10_human.pt"
    # The shipped files predate numpy 2: their arrays name numpy.core.multiarray._reconstruct.
    human = torch.load(path, weights_only=False)
    torch.save(human, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    np.testing.assert_array_equal(load_noisy_set("CIFAR10N-aggre").train.labels, human["aggre_label"])
    # Anything but int arrays is refused, not run: a pickled object of an arbitrary class is.
    torch.save({**human, "extra": Image.new("RGB", (1, 1))}, path)
    with pytest.raises(ValueError, match="no CIFAR-N label file"):
        load_noisy_set("CIFAR10N-aggre")


def test_cifar_identity_follows_its_own_label_set(data_root):
    _, _, human = write_cifar10(data_root)
    aggre, worse = identity("CIFAR10N-aggre"), identity("CIFAR10N-worse")
    assert aggre == load_noisy_set("CIFAR10N-aggre").fingerprint() and aggre.startswith("cifar-n:")
    assert len({aggre, worse, identity("CIFAR10N-clean")}) == 3
    human["aggre_label"] = (human["aggre_label"] + 1) % 10
    torch.save(human, data_root / "cifar-n" / "CIFAR-10_human.pt")
    assert identity("CIFAR10N-aggre") != aggre and identity("CIFAR10N-worse") == worse
    status = disk_status("CIFAR10N-aggre")
    assert status.state == "ok" and "10 train images (10 with a known true label)" in status.message


# ----------------------------------------------------------------------------- names, templates, the field


def test_names_aliases_and_dispatch(data_root):
    assert NOISY_DATASETS[0] == "Food101N" and set(NOISY_TEMPLATES) == set(NOISY_DATASETS)
    assert ensemble_templates("CIFAR100N")[-1] == "a photo of a {}."
    assert N.noisy_name("cifar10n-worst") == "CIFAR10N-worse" and N.noisy_name("Food101") is None
    assert not on_disk("Food101N") and not on_disk("CIFAR100N")
    assert identity("CIFAR100N") == MISSING and disk_status("Food101N").state == "missing"
    write_cifar10(data_root)
    assert load_dataset("Cifar-10N Rand1").name == "CIFAR10N-random1"
    with pytest.raises(ValueError, match="one layout"):
        load_dataset("CIFAR10N-aggre", source="torchvision")
    with pytest.raises(ValueError, match="unknown noisy-label dataset"):
        load_noisy_set("Clothing1M")


def _tiny(**kw):
    loader = lambda ref: None
    train = Split(("a/1.jpg", "b/2.jpg", "b/3.jpg"), np.array([0, 1, 1]), loader)
    test = Split(("a/4.jpg",), np.array([0]), loader)
    return Dataset("Fake", ("a_b", "c"), "a photo of a {}.", train, None, test, "fake-split", **kw)


def test_train_true_labels_leave_other_fingerprints_as_they_were():
    # The value before the field existed: shipped run ids hash fingerprints like it.
    assert (
        _tiny().fingerprint() == _tiny(train_true_labels=None).fingerprint() == "fake-split:7cad73bb633805fd"
    )
    with_true = _tiny(train_true_labels=[0, -1, 1])
    assert with_true.train_true_labels.dtype == np.int64
    assert with_true.fingerprint() != _tiny().fingerprint()
    assert with_true.fingerprint() != _tiny(train_true_labels=[0, 1, 1]).fingerprint()
    for bad in ([0, 1], [0, 1, 2], [0, -2, 1], [0.0, 1.0, 1.0]):
        with pytest.raises(ValueError, match="train_true_labels"):
            _tiny(train_true_labels=bad)
