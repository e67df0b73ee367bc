"""A run is its inputs: run ids and cached features follow what the files hold, not their names.

- Images: the same split file over other pixels is another run and is encoded anew; the same files
  copied elsewhere are the same run, and nothing is encoded again; one changed image is the only
  one encoded again (``ptnl.data.content``, ``ptnl.train.features``).
- Weights: the same tensors as .pt and as .safetensors, or named by "default" and by their path,
  are one run (``ptnl.models.weights.weights_identity``).
"""

from __future__ import annotations

import io
import shutil

import fakedata
import numpy as np
import pytest
import torch
from PIL import Image

from ptnl.data import content, identity, load_dataset
from ptnl.data import disk as D
from ptnl.models.clip import load_clip
from ptnl.train import features as F
from ptnl.train.config import RunConfig


def _repaint(root, seed: int) -> None:
    """Give every JPEG under ``root`` other pixels (same paths, same split file)."""
    rng = np.random.default_rng(seed)
    for p in sorted(root.rglob("*.jpg")):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, format="JPEG")
        p.write_bytes(buf.getvalue())


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "b"
    for r, seed in ((a, 1), (b, 2)):
        fakedata.write_coop(r, "OxfordPets")
        _repaint(r, seed)
    return a, b


def _count_encoded(monkeypatch) -> list[int]:
    counts = []
    real = F._encode_missing

    def counting(bundle, sp, todo, *a, **k):
        counts.append(len(todo))
        return real(bundle, sp, todo, *a, **k)

    monkeypatch.setattr(F, "_encode_missing", counting)
    return counts


def test_other_pixels_at_the_same_paths_are_another_run_and_are_encoded_anew(roots, monkeypatch, tmp_path):
    a, b = roots
    cfg = RunConfig(dataset="OxfordPets", backbone="toy-rn", shots=1, epochs=1)
    monkeypatch.setenv("PTNL_DATA", str(a))
    id_a, ds_a = cfg.run_id, load_dataset("OxfordPets")
    monkeypatch.setenv("PTNL_DATA", str(b))
    id_b, ds_b = cfg.run_id, load_dataset("OxfordPets")
    assert ds_a.fingerprint() == ds_b.fingerprint()  # the same split file ...
    assert identity("OxfordPets", a) != identity("OxfordPets", b)  # ... over other pixels
    assert id_a != id_b

    bundle = load_clip("toy-rn")
    encoded = _count_encoded(monkeypatch)
    n = len(ds_a.test)
    fa = F.cached_features(bundle, ds_a, "test", range(n))
    fb = F.cached_features(bundle, ds_b, "test", range(n))  # same cache, same refs, other pixels
    assert encoded == [n, n] and not torch.equal(fa, fb)
    assert torch.equal(F.cached_features(bundle, ds_a, "test", range(n)), fa) and encoded == [n, n]

    # The same files elsewhere (copied: new inodes and times) are the same data and the same run.
    c = tmp_path / "c"
    shutil.copytree(a, c)
    monkeypatch.setenv("PTNL_DATA", str(c))
    assert cfg.run_id == id_a
    assert torch.equal(F.cached_features(bundle, load_dataset("OxfordPets"), "test", range(n)), fa)
    assert encoded == [n, n]

    # One image changed: that one is encoded again, the others are read from the cache.
    changed = c / "oxford_pets" / "images" / ds_a.test.refs[0]
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 7, np.uint8)).save(buf, format="JPEG")
    changed.write_bytes(buf.getvalue())
    D._IDENTITIES.clear()  # a new process (one process memoises the data identity on the split's stat)
    assert cfg.run_id != id_a
    fc = F.cached_features(bundle, load_dataset("OxfordPets"), "test", range(n))
    assert encoded[-1] == 1 and torch.equal(fc[:, 1:], fa[:, 1:]) and not torch.equal(fc[:, :1], fa[:, :1])


def test_file_digests_are_read_once_per_stat(tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "x.bin"
    f.write_bytes(b"one")
    reads = []
    real = content._sha256
    monkeypatch.setattr(content, "_sha256", lambda p: reads.append(p) or real(p))
    first = content.file_digests([str(f)])
    content._MEMO.clear()  # a new process: the table on disk answers
    assert content.file_digests([str(f)]) == first and len(reads) == 1
    f.write_bytes(b"two")
    assert content.file_digests([str(f)]) != first and len(reads) == 2


def test_the_same_tensors_under_any_name_are_one_run(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("PTNL_WEIGHTS", str(weights))
    monkeypatch.setenv("PTNL_DATA", str(tmp_path / "data"))
    state = {"visual.proj": torch.randn(4, 3), "logit_scale": torch.tensor(4.6)}
    torch.save(state, weights / "RN50.pt")
    other = tmp_path / "elsewhere"
    other.mkdir()
    save_file(state, str(other / "converted.safetensors"))
    base = RunConfig(dataset="OxfordPets")
    ids = {
        base.run_id,  # "default": weights/RN50.pt
        base.replace(pretrained=str(weights / "RN50.pt")).run_id,
        base.replace(pretrained=str(other / "converted.safetensors")).run_id,
    }
    assert len(ids) == 1
    torch.save({**state, "logit_scale": torch.tensor(4.0)}, other / "changed.pt")
    assert base.replace(pretrained=str(other / "changed.pt")).run_id not in ids


def test_visual_fine_tunings_resnet50_file_is_hashed_by_its_tensors(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from ptnl.sections import robustness

    monkeypatch.setenv("PTNL_DATA", str(tmp_path / "data"))
    state = {"conv1.weight": torch.randn(2, 3, 1, 1)}
    torch.save(state, tmp_path / "r50.pt")
    save_file(state, str(tmp_path / "r50.safetensors"))
    runs = robustness.sec42_robustness(
        "RN50", ["DTD"], ["DTD"], [0.0], [1], 1, resnet50_weights=str(tmp_path / "r50.pt")
    )
    (visual,) = [c for c in runs if c.method == "visual_ft"]
    assert visual.visual_weights == str(tmp_path / "r50.pt")
    assert all(c.visual_weights is None for c in runs if c.method != "visual_ft")
    same = visual.replace(visual_weights=str(tmp_path / "r50.safetensors"))
    assert same.run_id == visual.run_id != visual.replace(visual_weights=None).run_id
    torch.save({"conv1.weight": torch.randn(2, 3, 1, 1)}, tmp_path / "other.pt")
    assert visual.replace(visual_weights=str(tmp_path / "other.pt")).run_id != visual.run_id
    with pytest.raises(ValueError, match="visual_weights is the ImageNet ResNet-50 file"):
        RunConfig(dataset="DTD", visual_weights=str(tmp_path / "r50.pt"))


def test_a_missing_checkpoint_names_each_place_once(tmp_path):
    from ptnl.models.weights import resolve_checkpoint

    gone = tmp_path / "gone.pt"
    with pytest.raises(FileNotFoundError) as e:
        resolve_checkpoint(gone)
    assert str(e.value).count(str(gone)) == 2 and " and " not in str(e.value).split("looked at")[1]
