import hashlib
import re
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from ptnl.tools.speed import register_tiny_clip, synthetic_dataset
from ptnl.train import features as F


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from ptnl.models.clip import load_clip

    return load_clip(register_tiny_clip("ptnl-tiny-feat", tmp_path_factory.mktemp("cfg")), pretrained=None)


@pytest.fixture(scope="module")
def ds():
    return synthetic_dataset(n_classes=3, train_per_class=4, test_per_class=2)


def test_derive_seed_is_stable_and_separates_parts():
    assert F.derive_seed("view", 3, "a/b") == F.derive_seed("view", 3, "a/b")
    assert F.derive_seed("view", 3, "a/b") != F.derive_seed("view", 4, "a/b")
    assert F.derive_seed("ab", "c") != F.derive_seed("a", "bc")
    # pinned to its definition: the cached views depend on it
    spec = int.from_bytes(hashlib.sha256(b"view\x1f3\x1fa/b").digest()[:8], "little") >> 1
    assert F.derive_seed("view", 3, "a/b") == spec
    assert 0 <= F.derive_seed("x") < 2**63


@pytest.mark.parametrize("wh", [(160, 120), (64, 64), (500, 40), (40, 500)])
def test_crop_params_equal_torchvision_for_the_same_stream(wh):
    img = Image.new("RGB", wh)
    for seed in range(20):
        torch.manual_seed(seed)
        ref = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
        mine = F.random_resized_crop_params(*wh, torch.Generator().manual_seed(seed))
        assert mine == ref


def test_augment_equals_coop_transform(ds):
    # CoOp's train transform as torchvision builds it (Dassl HEAD: RRC -> flip -> normalise).
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    coop = T.Compose(
        [
            T.RandomResizedCrop(24, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    img = ds.train.load_image(0)
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        ref = coop(img)
        mine = F.augment(img, 24, mean, std, torch.Generator().manual_seed(seed))
        assert torch.equal(mine, ref)
        flips.add(torch.equal(mine, F.augment(img, 24, mean, std, torch.Generator().manual_seed(seed))))
    assert flips == {True}


def test_center_cache_equals_direct_encoding_and_is_reused(bundle, ds, fresh_store, monkeypatch):
    idx = np.array([5, 0, 7])
    feats = F.cached_features(bundle, ds, "train", idx)
    direct = F.encode_images(bundle, torch.stack([bundle.preprocess(ds.train.load_image(i)) for i in idx]))
    assert feats.shape == (1, 3, bundle.embed_dim)
    torch.testing.assert_close(feats[0], direct, rtol=1e-5, atol=1e-5)

    calls = []
    real = F.encode_images
    monkeypatch.setattr(F, "encode_images", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    again = F.cached_features(bundle, ds, "train", idx[::-1])
    assert calls == [] and torch.equal(again[0], feats[0].flip(0))
    grown = F.cached_features(bundle, ds, "train", np.array([0, 1, 2]))  # only 1 and 2 are new
    assert calls == [F.ENCODE_BATCH] and torch.equal(grown[0, 0], feats[0, 1])  # 2 new, padded
    path = F.cache_path(bundle, ds, "train", "center")
    assert path.name == "train-center.pt" and F.cache_path(bundle, ds, "train", "center", "bf16") != path
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no tmp files left
    assert torch.load(path, weights_only=True)["refs"] == [ds.train.refs[i] for i in (5, 0, 7, 1, 2)]


def test_views_are_deterministic_per_image_whatever_was_encoded_first(
    bundle, ds, fresh_store, tmp_path, monkeypatch
):
    views = ["aug0", "aug1", "center"]
    a = F.cached_features(bundle, ds, "train", [3, 4], views)
    monkeypatch.setenv("PTNL_CACHE", str(tmp_path / "other"))
    b = F.cached_features(bundle, ds, "train", [4, 9, 3], views)
    torch.testing.assert_close(a[:, 0], b[:, 2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[:, 1], b[:, 0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[0], a[1])  # two views differ
    with pytest.raises(ValueError, match="view"):
        F.cached_features(bundle, ds, "train", [0], ["aug"])


def test_stale_cache_is_rebuilt(bundle, ds, fresh_store):
    good = F.cached_features(bundle, ds, "test", [0, 1])
    path = F.cache_path(bundle, ds, "test", "center")
    blob = torch.load(path, weights_only=True)
    blob["meta"]["image_size"] = 999
    blob["features"] = torch.zeros_like(blob["features"])
    torch.save(blob, path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        again = F.cached_features(bundle, ds, "test", [0, 1])
    assert any("rebuilding" in str(x.message) for x in w)
    torch.testing.assert_close(again, good)
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        torch.testing.assert_close(F.cached_features(bundle, ds, "test", [0, 1]), good)


def test_exact_batch_depends_on_seed_epoch_and_image_only(bundle, ds):
    a = F.exact_batch(bundle, ds.train, [1, 2], run_seed=1, epoch=3)
    b = F.exact_batch(bundle, ds.train, [2, 1], run_seed=1, epoch=3)
    assert torch.equal(a, b.flip(0))
    assert not torch.equal(a, F.exact_batch(bundle, ds.train, [1, 2], run_seed=1, epoch=4))
    assert not torch.equal(a, F.exact_batch(bundle, ds.train, [1, 2], run_seed=2, epoch=3))
    assert a.shape == (2, 3, bundle.image_size, bundle.image_size)


def test_resnet_features_do_not_depend_on_what_else_was_missing_from_the_cache(
    fresh_store, tmp_path, monkeypatch
):
    # A ResNet tower's convolutions give batch-size-dependent rounding; the cache encodes full
    # (padded) batches, so an image's cached features are the same bits whatever its companions.
    from ptnl.models.clip import load_clip

    rn = load_clip("toy-rn")
    big = synthetic_dataset(n_classes=4, train_per_class=40, test_per_class=1)
    a = F.cached_features(rn, big, "train", [3], ["center"])  # alone
    monkeypatch.setenv("PTNL_CACHE", str(tmp_path / "other"))
    b = F.cached_features(rn, big, "train", np.arange(160), ["center"])  # with 127 others
    assert torch.equal(a[0, 0], b[0, 3])


@pytest.fixture
def pets(tmp_path):
    import fakedata

    from ptnl.data import load_dataset

    root = tmp_path / "data"
    fakedata.write_coop(root, "OxfordPets")
    return load_dataset("OxfordPets", root=root), root / "oxford_pets" / "images"


def test_missing_images_fail_before_any_encoding(bundle, pets, fresh_store, monkeypatch):
    ds, image_root = pets
    (image_root / ds.test.refs[4]).unlink()
    (image_root / ds.train.refs[7]).unlink()
    monkeypatch.setattr(F, "encode_images", lambda *a, **k: pytest.fail("encoded before checking the files"))
    with pytest.raises(FileNotFoundError) as err:
        F.cached_features(bundle, ds, "test", np.arange(len(ds.test)))
    msg = str(err.value)
    assert msg.startswith("OxfordPets test: 1 of 9 images checked are missing") and ds.test.refs[4] in msg
    monkeypatch.undo()
    # the few-shot subset is what is checked: a missing image outside it is no error
    assert F.cached_features(bundle, ds, "train", [0, 1, 8]).shape == (1, 3, bundle.embed_dim)


def test_unreadable_image_names_its_file_when_encoding(bundle, pets, fresh_store):
    import fakedata

    from ptnl.data import ImageReadError

    ds, image_root = pets
    fakedata.truncate_jpeg(image_root / ds.train.refs[2])
    with pytest.raises(
        ImageReadError,
        match=re.escape(f"OxfordPets train: cannot read image {image_root / ds.train.refs[2]}"),
    ):
        F.cached_features(bundle, ds, "train", [0, 2])
    with pytest.raises(ValueError, match="OxfordPets train: cannot read image"):
        F.exact_batch(bundle, ds.train, [2], run_seed=1, epoch=1)


def test_an_error_while_encoding_closes_the_bar(bundle, pets, fresh_store, monkeypatch):
    """A failure mid-encoding closes the progress bar, so the error the CLI prints starts a line of
    its own instead of running on from the bar's."""
    import io

    import fakedata
    import tqdm.auto

    from ptnl.data import ImageReadError

    ds, image_root = pets
    fakedata.truncate_jpeg(image_root / ds.train.refs[2])
    monkeypatch.setattr(F, "check_images", lambda *a, **k: None)  # let the bad file reach the encoder
    bars, real = [], tqdm.auto.tqdm

    def recorded(*a, **k):
        bars.append(real(*a, **{**k, "disable": False, "file": io.StringIO()}))
        return bars[-1]

    monkeypatch.setattr(tqdm.auto, "tqdm", recorded)
    with pytest.raises(ImageReadError):
        F.cached_features(bundle, ds, "train", [0, 1, 2], progress=True)
    assert len(bars) == 1 and bars[0].disable, "the encoding bar is left open"
