import hashlib
import math

import pytest

from ptnl.train.config import RunConfig
from ptnl.train.optim import lr_at_epoch


def test_defaults_are_the_paper_recipe():
    c = RunConfig(dataset="OxfordPets")
    assert (c.lr, c.momentum, c.weight_decay, c.batch_size, c.epochs) == (0.002, 0.9, 5e-4, 32, 50)
    assert (c.warmup_epochs, c.warmup_lr, c.shots, c.n_ctx, c.csc) == (1, 1e-5, 16, 16, False)
    assert c.class_token_position == "end" and c.method == "prompt" and c.loss == "ce"
    assert c.views_per_image == 50


def test_lr_schedule_matches_reference_values():
    c = RunConfig(dataset="OxfordPets")
    assert lr_at_epoch(c, 1) == 1e-5
    assert lr_at_epoch(c, 2) == pytest.approx(2.000e-3)
    assert lr_at_epoch(c, 3) == pytest.approx(1.998e-3, abs=1e-6)
    assert lr_at_epoch(c, 50) == pytest.approx(7.9e-6, abs=5e-8)
    for e in range(2, 51):
        assert lr_at_epoch(c, e) == pytest.approx(1e-3 * (1 + math.cos(math.pi * (e - 2) / 50)), rel=1e-12)
    with pytest.raises(ValueError):
        lr_at_epoch(c, 51)


def test_hash_is_stable_and_canonical():
    a = RunConfig(dataset="DTD", noise_rate=0, loss_params={"q": 0.5, "a": 1})
    b = RunConfig.from_dict({"loss_params": {"a": 1, "q": 0.5}, "noise_rate": 0.0, "dataset": "DTD"})
    assert a.run_id == b.run_id and len(a.run_id) == 16
    assert a.replace(seed=2).run_id != a.run_id
    assert a.replace(feature_mode="exact").run_id != a.run_id


def test_run_id_is_pinned(tmp_path, monkeypatch):
    # Every stored result is filed under this id: a change here orphans all existing results.
    monkeypatch.setenv("PTNL_DATA", str(tmp_path))  # no OxfordPets on disk: its data identity is "missing"
    monkeypatch.setenv("PTNL_WEIGHTS", str(tmp_path))  # no weights/RN50.pt: "default" is OpenAI's tag
    c = RunConfig(dataset="OxfordPets")
    assert c.canonical_json().startswith('{"backbone":"RN50","batch_size":32,"class_token_position":"end"')
    key = c.canonical_json() + "\nopenai\nmissing"
    assert c.run_id == hashlib.sha256(key.encode()).hexdigest()[:16] == "ddf0a89e097b592d"


def test_run_id_follows_the_data(tmp_path, monkeypatch):
    # The same command over another split (here: a split file appears) is another run.
    from fakedata import write_coop

    monkeypatch.setenv("PTNL_DATA", str(tmp_path))
    c = RunConfig(dataset="DTD")
    missing = c.run_id
    write_coop(tmp_path, "DTD")
    with_split = c.run_id
    assert with_split != missing
    toy = RunConfig(dataset="toy-shapes", backbone="toy-rn")
    assert toy.run_id != toy.replace(dataset="toy-fine").run_id


def test_ctx_init_sets_n_ctx_to_its_word_count_as_coop():
    c = RunConfig(dataset="toy-shapes", ctx_init="a photo of a", n_ctx=16)
    assert c.n_ctx == 4 and c.run_id == RunConfig(dataset="toy-shapes", ctx_init="a photo of a").run_id
    with pytest.raises(ValueError, match="ctx_init must be words"):
        RunConfig(dataset="toy-shapes", ctx_init="  ")


def test_run_id_follows_the_weights(tmp_path, monkeypatch):
    # Same config, regenerated toy checkpoint: a different run id, so old results are not reused.
    from ptnl.models import clip, toy, weights

    cfg = RunConfig(dataset="toy-shapes", backbone="toy-rn")
    spec = toy.TOY_BACKBONES["toy-rn"]
    assert weights.weights_identity("toy-rn") == clip.load_clip("toy-rn").weights_id
    before = cfg.run_id
    fake = tmp_path / "toy-rn.safetensors"
    fake.write_bytes(spec.checkpoint.read_bytes() + b"")  # same bytes: same identity
    monkeypatch.setitem(toy.TOY_BACKBONES, "toy-rn", toy.ToyBackbone(spec.config, fake))
    assert cfg.run_id == before
    fake.write_bytes(b"different weights")
    assert cfg.run_id != before
    assert RunConfig(dataset="toy-shapes", backbone="toy-rn", pretrained=None).run_id != before


def test_round_trip():
    c = RunConfig(dataset="toy-shapes", backbone="toy-vit", pretrained=None, n_views=4, csc=True)
    assert RunConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"noise_rate": 1.0}, "noise_rate"),
        ({"noise_rate": -0.1}, "noise_rate"),
        ({"method": "coop"}, "unknown method"),
        ({"loss": "gce2"}, "did you mean 'gce'"),
        ({"dataset": "Pets"}, "unknown dataset"),
        ({"feature_mode": "cached"}, "feature_mode"),
        ({"shots": 0}, "shots"),
        ({"shots": True}, "must be int"),
        ({"csc": 1}, "must be bool"),
        ({"n_views": 0}, "n_views"),
        ({"method": "visual_ft"}, "feature_mode='exact'"),
        ({"lr": float("nan")}, "lr"),
        ({"method": "linear_probe", "grad_ratio": True}, "classifier_r"),
        ({"method": "prompt", "n_ctx": 0}, "random_prompt"),
        ({"noise_kind": "confusion", "confusion_from": "samples"}, "did you mean 'sample'"),
        ({"confusion_from": "sample"}, "only applies to noise_kind='confusion'"),
    ],
)
def test_bad_values_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**{"dataset": "OxfordPets", **kw})


def test_from_dict_names_unknown_key_and_closest():
    with pytest.raises(ValueError, match=r"'noise_rat'.*did you mean 'noise_rate'"):
        RunConfig.from_dict({"dataset": "DTD", "noise_rat": 0.5})
    with pytest.raises(ValueError, match="dataset"):
        RunConfig.from_dict({"noise_rate": 0.5})
