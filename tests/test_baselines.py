"""ptnl.models.heads and ptnl.models.visual: zero-shot, Classifier-R/C, TEnc-FT, linear probe, visual fine-tuning."""

import json
import types
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ptnl.models import clip, visual
from ptnl.models import heads as baselines
from ptnl.models.toy import TOY_BACKBONES

TINY = {
    "embed_dim": 24,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PROMPTS = ["a photo of a cat.", "a photo of a sea lion.", "a photo of a dog."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    (folder / "tiny.json").write_text(json.dumps(TINY))
    spec = types.SimpleNamespace(config=folder / "tiny.json", checkpoint=folder / "none.safetensors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TOY_BACKBONES, "toy-tiny", spec)
        yield clip.load_clip("toy-tiny", pretrained=None)


def feats(n=6, seed=0, dim=24):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def zero_shot_logits(bundle, f):
    with torch.no_grad():
        text = F.normalize(bundle.model.encode_text(bundle.tokenizer(PROMPTS)), dim=-1)
    return bundle.model.logit_scale.exp().item() * F.normalize(f, dim=-1) @ text.t()


# ----------------------------------------------------------------------------- heads


def test_zero_shot_module_is_clip_zero_shot(tiny):
    m = baselines.ZeroShotCLIP(tiny, PROMPTS)
    f = feats()
    assert torch.allclose(m(f), zero_shot_logits(tiny, f), atol=1e-4)
    assert m.trainable_parameters() == [] and torch.equal(m(f), m(f, m.class_embeddings()))


def test_classifier_c_starts_exactly_at_zero_shot(tiny):
    m = baselines.LinearHead(tiny, PROMPTS, init="clip")
    f = feats(seed=1)
    assert torch.allclose(m(f), zero_shot_logits(tiny, f), atol=1e-4)
    assert torch.allclose(m(f), m(f, m.class_embeddings()), atol=1e-6)


def test_classifier_r_is_seeded_unit_norm_and_only_its_weight_trains(tiny):
    a = baselines.LinearHead(tiny, PROMPTS, generator=torch.Generator().manual_seed(3))
    b = baselines.LinearHead(tiny, PROMPTS, generator=torch.Generator().manual_seed(3))
    c = baselines.LinearHead(tiny, PROMPTS, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    assert a.weight.shape == (3, 24) and torch.allclose(a.weight.norm(dim=-1), torch.ones(3), atol=1e-6)
    F.cross_entropy(a(feats()), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    assert [p is a.weight for p in a.trainable_parameters()] == [True] and a.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())
    # cosine head: the weight's norm does not change the logits; the free-norm variant's does
    with torch.no_grad():
        a.weight.mul_(3)
    assert torch.allclose(a(feats()), b(feats()), atol=1e-5)
    free = baselines.LinearHead(
        tiny, PROMPTS, generator=torch.Generator().manual_seed(3), normalize_weight=False
    )
    assert torch.allclose(free(feats()), b(feats()), atol=1e-5)  # same start
    with torch.no_grad():
        free.weight.mul_(3)
    assert torch.allclose(free(feats()), 3 * b(feats()), atol=1e-4)
    with pytest.raises(ValueError, match="init='text'"):
        baselines.LinearHead(tiny, PROMPTS, init="text")


def test_text_encoder_ft_starts_at_zero_shot_and_trains_a_copy(tiny):
    m = baselines.TextEncoderFT(tiny, PROMPTS)
    f = feats(seed=2)
    assert torch.allclose(m(f), zero_shot_logits(tiny, f), atol=1e-4)
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert "text_encoder.positional_embedding" in names and "text_encoder.text_projection" in names
    assert any(n.startswith("text_encoder.transformer.resblocks.") for n in names)
    assert not any("token_embedding" in n for n in names)  # the prompt's tokens stay fixed
    frozen = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    before = m.class_embeddings().detach()
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.5)
    F.cross_entropy(m(f), torch.tensor([0, 1, 2, 2, 1, 0])).backward()
    assert m.text_encoder.transformer.resblocks[0].mlp.c_fc.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.allclose(m.class_embeddings(), before, atol=1e-4)
    assert all(
        torch.equal(v, tiny.model.state_dict()[k]) for k, v in frozen.items()
    )  # the bundle is untouched
    assert all(p.grad is None for p in tiny.model.parameters())


# ----------------------------------------------------------------------------- linear probe


def blobs(n_classes=4, per_class=16, dim=16, seed=0, spread=0.05):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), per_class)
    x = centres[y] + spread * rng.normal(size=(len(y), dim))
    return x.astype(np.float32), y


def test_linear_probe_recovers_separable_data_deterministically():
    x, y = blobs()
    probe = baselines.linear_probe(x, y, seed=1)
    x_test, y_test = blobs(seed=0, per_class=50)  # same centres, fresh noise
    x_test = x_test + 0.02 * np.random.default_rng(5).normal(size=x_test.shape).astype(np.float32)
    assert (probe.predict(x_test) == y_test).mean() == 1.0
    again = baselines.linear_probe(x, y, seed=1)
    assert (
        again.C == probe.C
        and np.array_equal(again.weight, probe.weight)
        and np.array_equal(again.bias, probe.bias)
    )
    assert probe.C in baselines.C_GRID and set(probe.val_accuracy) == set(baselines.C_GRID)
    # the rule: best held-out accuracy, then lowest held-out cross-entropy, then the smaller C
    best = min(probe.val_accuracy, key=lambda C: (-probe.val_accuracy[C], probe.val_loss[C], C))
    assert probe.C == best
    logits = probe.logits(torch.as_tensor(x_test))
    assert logits.shape == (200, 4) and torch.equal(logits.argmax(-1), torch.as_tensor(probe.predict(x_test)))
    head = probe.as_module()
    assert head.trainable_parameters() == [] and torch.allclose(head(torch.as_tensor(x_test)), logits)


def test_linear_probe_c_selection_follows_the_held_out_split():
    x, y = blobs(n_classes=3, spread=1.5, seed=2)  # overlapping: C matters
    a = baselines.linear_probe(x, y, seed=0, c_grid=[1e-3, 1e-1, 10.0])
    b = baselines.linear_probe(x, y, seed=0, c_grid=[10.0, 1e-1, 1e-3])  # order of the grid is irrelevant
    assert a.C == b.C and a.val_accuracy == b.val_accuracy
    tr, va = baselines.holdout_split(y, 0.25, 0)
    assert len(va) == 12 and set(np.bincount(y[va])) == {4} and not set(tr) & set(va)
    assert np.array_equal(va, baselines.holdout_split(y, 0.25, 0)[1])
    assert not np.array_equal(va, baselines.holdout_split(y, 0.25, 1)[1])
    # augmented views of one image (same group) never straddle the split
    views = np.tile(np.arange(len(y)), 3)
    tr, va = baselines.holdout_split(np.tile(y, 3), 0.25, 0, groups=views)
    assert len(va) == 36 and not set(views[tr]) & set(views[va])
    c = baselines.linear_probe(
        np.tile(x, (3, 1)), np.tile(y, 3), seed=0, c_grid=[1e-3, 1e-1, 10.0], groups=views
    )
    assert c.C in (1e-3, 1e-1, 10.0)
    # a single C skips selection
    one = baselines.linear_probe(x, y, c_grid=[0.5])
    assert one.C == 0.5 and one.val_accuracy == {}


def test_linear_probe_binary_and_missing_classes():
    x, y = blobs(n_classes=2)
    probe = baselines.linear_probe(x, y, n_classes=3)
    assert (probe.predict(x) == y).all()
    assert probe.bias[2] == -np.inf and (probe.weight[2] == 0).all()


def test_linear_probe_bad_input():
    x, y = blobs()
    with pytest.raises(ValueError, match="at least two classes"):
        baselines.linear_probe(x[:16], y[:16])
    with pytest.raises(ValueError, match="out of range"):
        baselines.linear_probe(x, y, n_classes=3)
    with pytest.raises(ValueError, match=r"features must be \[N, E\]"):
        baselines.linear_probe(x, y[:10])
    with pytest.raises(ValueError, match="hold some out"):
        baselines.linear_probe(x[[0, 16]], y[[0, 16]])  # one sample per class


# ----------------------------------------------------------------------------- visual fine-tuning


def test_visual_ft_on_a_toy_tower_trains_a_copy(tiny):
    m = visual.VisualFT(tiny, 5, generator=torch.Generator().manual_seed(0))
    assert m.kind == "clip" and (m.image_size, m.mean) == (tiny.image_size, tiny.mean)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits = m(images)
    assert logits.shape == (4, 5)
    frozen = {k: v.clone() for k, v in tiny.model.visual.state_dict().items()}
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.1)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert m.backbone.conv1.weight.grad.abs().sum() > 0 and m.head.weight.grad.abs().sum() > 0
    opt.step()
    assert all(torch.equal(v, tiny.model.visual.state_dict()[k]) for k, v in frozen.items())
    again = visual.VisualFT(tiny, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(
        again.head.weight, visual.VisualFT(tiny, 5, generator=torch.Generator().manual_seed(0)).head.weight
    )


def test_imagenet_resnet50_random(tiny):
    m = visual.VisualFT(tiny, 3, backbone="imagenet-rn50", weights=None)
    assert (m.kind, m.weights_id, m.mean) == ("imagenet-rn50", "random", visual.IMAGENET_MEAN)
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 3) and m.head.in_features == 2048
    with pytest.raises(ValueError, match="not a ResNet50_Weights name"):
        visual.load_imagenet_resnet50("IMAGENET9K")
    with pytest.raises(ValueError, match="backbone='vit'"):
        visual.VisualFT(tiny, 3, backbone="vit")


def test_imagenet_resnet50_mismatched_file(tmp_path):
    bad = tmp_path / "small.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ValueError, match="does not match torchvision resnet50"):
        visual.load_imagenet_resnet50(bad)


def test_imagenet_resnet50_offline_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError) as e:
        visual.load_imagenet_resnet50("default")
    msg = str(e.value)
    assert (
        "IMAGENET1K_V1" in msg
        and torch.hub.get_dir() in msg
        and "-p resnet50_weights /path/to/resnet50.pth" in msg
    )
