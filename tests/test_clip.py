"""ptnl.models.clip: loading (names, weights, errors), image and text features, zero-shot classifiers.

Random weights throughout (no downloads). The tiny toy-like configs build in milliseconds; the
real RN50 / ViT-B-32 architectures are built once per module and their tests are marked slow.
"""

import json
import types
import zipfile

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ptnl.models import clip, text, weights
from ptnl.models.toy import TOY_BACKBONES

TINY_VIT = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_RN = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {
        "image_size": 64,
        "layers": [1, 1, 1, 1],
        "width": 8,
        "head_width": 32,
        "patch_size": None,
    },
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _seeded_model(cfg, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return clip._model_from_config(cfg)


def _save_fp16_safetensors(model, path):
    from safetensors.torch import save_file

    state = {k: v.detach().half().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return state


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Two fake toy backbones (tiny ViT with a checkpoint, tiny ModifiedResNet without one)."""
    folder = tmp_path_factory.mktemp("toy")
    (folder / "vit.json").write_text(json.dumps(TINY_VIT))
    (folder / "rn.json").write_text(json.dumps(TINY_RN))
    ckpt = folder / "vit.safetensors"
    state = _save_fp16_safetensors(_seeded_model(TINY_VIT, 123), ckpt)
    backbones = {
        "toy-test": types.SimpleNamespace(config=folder / "vit.json", checkpoint=ckpt),
        "toy-test-rn": types.SimpleNamespace(
            config=folder / "rn.json", checkpoint=folder / "missing.safetensors"
        ),
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, spec in backbones.items():
            mp.setitem(TOY_BACKBONES, name, spec)
        yield types.SimpleNamespace(folder=folder, ckpt=ckpt, state=state)


@pytest.fixture(scope="module")
def tiny(toy):
    return clip.load_clip("toy-test", pretrained=None)


@pytest.fixture(scope="module")
def rn50():
    return clip.load_clip("RN50", pretrained=None)


@pytest.fixture(scope="module")
def vitb32():
    return clip.load_clip("ViT-B/32", pretrained=None)


def _params_equal(model, state):
    own = model.state_dict()
    return set(own) == set(state) and all(torch.equal(own[k].float(), state[k].float()) for k in state)


# ----------------------------------------------------------------------------- loading


def test_toy_default_loads_its_checkpoint_frozen_in_eval(toy):
    b = clip.load_clip("toy-test")
    assert b.weights_id == f"toy:{weights.file_sha256(toy.ckpt)[:16]}"
    assert _params_equal(b.model, toy.state)
    assert not b.model.training and all(not m.training for m in b.model.modules())
    assert all(not p.requires_grad for p in b.model.parameters())
    assert (b.name, b.image_size, b.embed_dim, b.context_length) == ("toy-test", 32, 32, 32)
    assert b.mean == open_clip.OPENAI_DATASET_MEAN and b.std == open_clip.OPENAI_DATASET_STD
    x = b.preprocess(Image.new("RGB", (50, 40), (255, 0, 0)))
    assert x.shape == (3, 32, 32)
    # red channel normalised with CLIP's statistics
    assert x[0, 16, 16].item() == pytest.approx((1 - b.mean[0]) / b.std[0], abs=1e-4)


def test_random_weights_are_one_fixed_model_and_leave_global_rng_alone(toy):
    state = torch.random.get_rng_state()
    a = clip.load_clip("toy-test", pretrained=None)
    b = clip.load_clip("toy-test", pretrained=None)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.weights_id == b.weights_id == "random"
    assert _params_equal(a.model, b.model.state_dict())
    assert not _params_equal(a.model, toy.state)  # and not the checkpoint's weights


def test_local_state_dict_files_load_exactly(toy, tmp_path):
    source = _seeded_model(TINY_VIT, 7)
    wrapped = tmp_path / "ddp.pt"  # {"state_dict": {"module.<key>": ...}} as DDP training saves
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    b = clip.load_clip("toy-test", pretrained=wrapped)
    assert _params_equal(b.model, source.state_dict())
    assert b.weights_id == weights.file_weights_id(wrapped)
    st = tmp_path / "w.safetensors"
    _save_fp16_safetensors(source, st)
    assert clip.load_clip("toy-test", pretrained=str(st)).weights_id.startswith("file:")


def test_local_file_found_by_name_in_weights_dir(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_WEIGHTS", str(tmp_path))
    torch.save(_seeded_model(TINY_VIT, 8).state_dict(), tmp_path / "mine.pt")
    b = clip.load_clip("toy-test", pretrained="mine.pt")
    assert b.weights_id == weights.file_weights_id(tmp_path / "mine.pt")


class _Scripted(torch.nn.Module):
    """Holds a CLIP's modules under the same names, plus OpenAI's extra scalar entries."""

    def __init__(self, model):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, p in model.named_parameters(recurse=False):
            self.register_parameter(name, p)
        self.register_buffer("context_length", torch.tensor(32))

    def forward(self, x):
        return x * self.logit_scale


def test_torchscript_checkpoint_is_converted_once_with_a_warning(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_CACHE", str(tmp_path / "cache"))
    source = _seeded_model(TINY_VIT, 9)
    path = tmp_path / "openai-style.pt"
    with pytest.warns(Warning):  # torch.jit deprecation warnings
        torch.jit.save(torch.jit.trace(_Scripted(source), torch.ones(1)), str(path))
    assert any(n.endswith("/constants.pkl") for n in zipfile.ZipFile(path).namelist())
    with pytest.warns(UserWarning, match="TorchScript"):
        b = clip.load_clip("toy-test", pretrained=path)
    assert _params_equal(b.model, source.state_dict())
    converted = list((tmp_path / "cache" / "converted-weights").glob("*.safetensors"))
    assert len(converted) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # second load reads the converted file: no warning
        b2 = clip.load_clip("toy-test", pretrained=path)
    assert _params_equal(b2.model, source.state_dict())
    assert b.weights_id == b2.weights_id == weights.file_weights_id(path)


def test_registered_open_clip_config_name_loads(tmp_path):
    (tmp_path / "ptnl-test-tiny-rn.json").write_text(json.dumps(TINY_RN))
    open_clip.add_model_config(tmp_path / "ptnl-test-tiny-rn.json")
    b = clip.load_clip("ptnl-test-tiny-rn", pretrained=None)
    assert b.image_size == 64 and b.embed_dim == 32 and b.weights_id == "random"
    # RN tower: BatchNorm must be in eval mode (open_clip 3.3 returns train mode)
    bns = [m for m in b.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)


# ----------------------------------------------------------------------------- errors


def test_unknown_backbones_are_clear_errors(toy):
    with pytest.raises(ValueError, match="unknown backbone 'RN51'.*list_models"):
        clip.load_clip("RN51", pretrained=None)
    with pytest.raises(ValueError, match="unknown toy backbone 'toy-nope'.*toy-test"):
        clip.load_clip("toy-nope", pretrained=None)
    with pytest.raises(ValueError, match="non-empty"):
        clip.load_clip("", pretrained=None)


def test_bad_pretrained_values_are_clear_errors(toy, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        clip.load_clip("toy-test", pretrained=tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match="toy backbone toy-test"):
        clip.load_clip("toy-test", pretrained="openai")
    with pytest.raises(ValueError, match="neither a tag of RN50.*openai"):
        clip.load_clip("RN50", pretrained="no-such-tag")
    with pytest.raises(ValueError, match="no default weights.*pretrained=<tag>"):
        clip.load_clip("ViT-B-16", pretrained="default")
    with pytest.raises(FileNotFoundError, match="missing.*ptnl toy pretrain"):
        clip.load_clip("toy-test-rn")  # its default checkpoint is not built


def test_corrupt_checkpoint_is_a_clear_error(toy, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match="could not read checkpoint"):
        clip.load_clip("toy-test", pretrained=bad)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="could not read checkpoint"):
        clip.load_clip("toy-test", pretrained=bad_st)
    not_sd = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_sd)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        clip.load_clip("toy-test", pretrained=not_sd)


def test_mismatched_checkpoint_is_a_clear_error(toy, tmp_path):
    rn_file = tmp_path / "rn.pt"
    torch.save(_seeded_model(TINY_RN, 0).state_dict(), rn_file)
    with pytest.raises(ValueError, match="does not match toy backbone toy-test.*missing.*unexpected"):
        clip.load_clip("toy-test", pretrained=rn_file)
    wider = json.loads(json.dumps(TINY_VIT))
    wider["text_cfg"]["width"] = 64
    wider["text_cfg"]["heads"] = 4
    wide_file = tmp_path / "wide.pt"
    torch.save(_seeded_model(wider, 0).state_dict(), wide_file)
    with pytest.raises(ValueError, match="with other shapes"):
        clip.load_clip("toy-test", pretrained=wide_file)


def test_precision_rules():
    with pytest.raises(ValueError, match="needs a GPU"):
        clip.check_precision("cpu", "bf16")
    with pytest.raises(ValueError, match="not one of"):
        clip.check_precision("cpu", "fp64")
    with pytest.raises(ValueError, match="needs a GPU"):
        clip.load_clip("RN50", pretrained=None, precision="fp16")
    assert isinstance(clip.autocast("cpu", "fp32"), type(clip.contextlib.nullcontext()))


def test_offline_tag_names_tag_cache_and_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as e:
        clip.load_clip("RN50", cache_dir=str(tmp_path))  # "default" = OpenAI's weights
    msg = str(e.value)
    assert "'openai'" in msg and str(tmp_path) in msg and "pretrained='/path/to/checkpoint'" in msg
    # the download itself failing (no network) reads the same way
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def no_network(*args, **kwargs):
        raise FileNotFoundError("Failed to download file: Name or service not known")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", no_network)
    monkeypatch.setattr(weights, "unreachable", lambda tag_cfg: None)  # as if the hub answered
    with pytest.raises(
        RuntimeError, match="'openai' weights of ViT-B-32.*Name or service not known.*local file"
    ):
        clip.load_clip("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))


def test_unreachable_hub_fails_fast_naming_every_offline_route(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "unreachable", lambda tag_cfg: "huggingface.co is not reachable (gaierror)")
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", lambda *a, **k: pytest.fail("retried"))
    with pytest.raises(FileNotFoundError) as e:  # the CLI's one-line errors catch FileNotFoundError
        clip.load_clip("RN50", cache_dir=str(tmp_path))
    msg = str(e.value)
    for part in (
        "'openai'",
        str(tmp_path),
        "not reachable",
        "--pretrained",
        "pretrained: FILE",
        "HF_HUB_OFFLINE=1",
    ):
        assert part in msg
    assert str(clip.weights_dir() / "RN50.pt") in msg


def test_unreachable_probe_is_quick_and_says_why(monkeypatch):
    import socket

    def refuse(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert "not reachable" in weights.unreachable({"hf_hub": "timm/resnet50_clip.openai/"})
    assert "openaipublic" in weights.unreachable({"url": "https://openaipublic.example/x/RN50.pt"})


def test_same_weights_as_pt_and_safetensors_are_one_identity(toy, tmp_path):
    source = _seeded_model(TINY_VIT, 11)
    st = tmp_path / "w.safetensors"
    half = _save_fp16_safetensors(source, st)  # fp16 values ...
    pt = tmp_path / "w.pt"
    torch.save({k: v.float() for k, v in half.items()}, pt)  # ... the same values, fp32, torch.save
    assert weights.weights_identity("toy-test", str(st)) == weights.weights_identity("toy-test", str(pt))
    assert clip.load_clip("toy-test", pretrained=pt).weights_id == weights.weights_identity(
        "toy-test", str(st)
    )
    other = tmp_path / "other.pt"
    torch.save(_seeded_model(TINY_VIT, 12).state_dict(), other)
    assert weights.weights_identity("toy-test", str(other)) != weights.weights_identity("toy-test", str(pt))


def test_default_weights_are_found_by_name_under_weights(tmp_path, monkeypatch):
    (tmp_path / "ptnl-test-byname.json").write_text(json.dumps(TINY_VIT))
    open_clip.add_model_config(tmp_path / "ptnl-test-byname.json")
    with pytest.raises(ValueError, match="no default weights.*ptnl-test-byname.pt"):
        clip.load_clip("ptnl-test-byname")
    monkeypatch.setenv("PTNL_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    source = _seeded_model(TINY_VIT, 13)
    torch.save(source.state_dict(), tmp_path / "weights" / "ptnl-test-byname.pt")
    b = clip.load_clip("ptnl-test-byname")
    assert _params_equal(b.model, source.state_dict())
    assert (
        b.weights_id
        == weights.weights_identity("ptnl-test-byname")
        == weights.file_weights_id(tmp_path / "weights" / "ptnl-test-byname.pt")
    )
    assert weights.weights_available("ptnl-test-byname", "default")
    _save_fp16_safetensors(source, tmp_path / "weights" / "ptnl-test-byname.safetensors")
    with pytest.raises(ValueError, match="several weight files"):
        weights.resolve_weights("ptnl-test-byname")
    # the paper's names: weights/RN50.pt stands in for OpenAI's tag
    assert weights.resolve_weights("RN50").tag == "openai"
    torch.save({}, tmp_path / "weights" / "RN50.pt")
    assert weights.resolve_weights("RN50").path == tmp_path / "weights" / "RN50.pt"
    assert weights.resolve_weights("RN50-quickgelu").path == tmp_path / "weights" / "RN50.pt"


def test_cached_tag_file_is_used_without_network(tmp_path, monkeypatch):
    cfg = open_clip.get_pretrained_cfg("RN50-quickgelu", "openai")
    fake = tmp_path / "RN50.pt"  # open_clip's URL cache layout: <cache>/<basename of url>
    fake.write_bytes(b"x")
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", lambda *a, **k: pytest.fail("network"))
    assert weights.download_tag("RN50", "openai", {"url": cfg["url"]}, str(tmp_path)) == str(fake)


# ----------------------------------------------------------------------------- features


def test_encode_images_matches_encode_image_without_grad(tiny):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 32, 32, generator=g)
    f = clip.encode_images(tiny, images)
    assert f.shape == (3, 32) and f.dtype == torch.float32 and not f.requires_grad
    with torch.no_grad():
        assert torch.allclose(f, tiny.model.encode_image(images), atol=1e-6)
    assert torch.equal(f, clip.encode_images(tiny, images))


def test_resnet_tower_encodes_with_batchnorm_folded_and_the_same_features(toy):
    rn = clip.load_clip("toy-test-rn", pretrained=None)
    visual = rn.model.visual
    g = torch.Generator().manual_seed(1)
    for m in visual.modules():  # non-trivial statistics, so folding has something to get wrong
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.2, generator=g)
    folded = clip.fold_batchnorm(visual)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in visual.modules())  # the original is untouched
    images = torch.randn(4, 3, rn.image_size, rn.image_size, generator=g)
    with torch.no_grad():
        plain = rn.model.encode_image(images)
    assert torch.allclose(folded(images), plain, atol=1e-5, rtol=1e-4)
    assert torch.allclose(clip.encode_images(rn, images), plain, atol=1e-5, rtol=1e-4)
    assert clip.inference_tower(visual) is clip.inference_tower(visual)  # built once
    with pytest.raises(ValueError, match="ModifiedResNet"):
        clip.fold_batchnorm(torch.nn.Linear(2, 2))


def test_encode_text_matches_open_clip_full_length(tiny):
    texts = ["a photo of a cat.", "a photo of a sea lion, a type of pet.", "x"]
    f = text.encode_text(tiny, texts)
    with torch.no_grad():
        ref = tiny.model.encode_text(tiny.tokenizer(texts))  # 32 positions, full causal mask
    assert f.shape == (3, 32) and not f.requires_grad
    assert torch.allclose(f, ref, atol=1e-5)
    assert torch.allclose(text.encode_text(tiny, texts, batch_size=2), ref, atol=1e-5)


def test_encode_text_rejects_bad_input(tiny):
    with pytest.raises(ValueError, match="more than the context length 32"):
        text.encode_text(tiny, ["word " * 40])
    with pytest.raises(ValueError, match="list of strings"):
        text.encode_text(tiny, "a photo of a cat.")
    with pytest.raises(ValueError, match="at least one"):
        text.encode_text(tiny, [])


def test_zero_shot_classifier_single_and_ensemble(tiny):
    names = ["cat", "sea_lion"]
    single = text.zero_shot_classifier(tiny, names, "a photo of a {}.")
    ref = F.normalize(text.encode_text(tiny, ["a photo of a cat.", "a photo of a sea lion."]), dim=-1)
    assert torch.allclose(single, ref, atol=1e-6)
    templates = ["a photo of a {}.", "art of the {}.", "{} texture."]
    ens = text.zero_shot_classifier(tiny, names, templates)
    parts = [
        F.normalize(text.encode_text(tiny, [t.format(n) for n in ("cat", "sea lion")]), dim=-1)
        for t in templates
    ]
    mean = (parts[0] + parts[1] + parts[2]) / 3
    assert torch.allclose(ens, mean / mean.norm(dim=-1, keepdim=True), atol=1e-6)
    assert torch.allclose(ens.norm(dim=-1), torch.ones(2), atol=1e-6)
    assert not torch.allclose(ens, single, atol=1e-3)
    with pytest.raises(ValueError, match="exactly one"):
        text.zero_shot_classifier(tiny, names, "a photo")


def test_text_encoder_shared_prefix_equals_plain(tiny):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 12, 32, generator=g) * 0.1
    x[:, :5] = x[:1, :5]  # a shared prefix of 5 positions
    eot = torch.tensor([7, 11, 9, 8])
    enc = text.TextEncoder(tiny.model)
    assert torch.allclose(enc(x, eot, shared_prefix=5), enc(x, eot), atol=1e-5)
    # groups: two runs stacked, each with its own prefix, equal the runs one by one
    y = torch.randn(4, 12, 32, generator=g) * 0.1
    y[:, :5] = y[:1, :5]
    both = enc(torch.cat([x, y]), torch.cat([eot, eot]), shared_prefix=5, groups=2)
    assert torch.allclose(both, torch.cat([enc(x, eot), enc(y, eot)]), atol=1e-5)
    with pytest.raises(ValueError, match="equal groups"):
        enc(x, eot, shared_prefix=5, groups=3)
    # exactness of truncation: what comes after the last EOT never matters
    longer = torch.cat([x, torch.randn(4, 6, 32, generator=g)], dim=1)
    assert torch.allclose(enc(longer, eot), enc(x, eot), atol=1e-6)


# ----------------------------------------------------------------------------- real architectures


def _activations(model):
    return {
        type(m).__name__
        for m in model.modules()
        if isinstance(m, (open_clip.transformer.QuickGELU, torch.nn.GELU))
    }


@pytest.mark.slow
def test_rn50_and_vitb32_use_quickgelu_in_eval(rn50, vitb32):
    for b, size, dim in ((rn50, 224, 1024), (vitb32, 224, 512)):
        assert _activations(b.model) == {"QuickGELU"}  # plain open_clip RN50 would be GELU
        assert (b.image_size, b.embed_dim, b.context_length, b.weights_id) == (size, dim, 77, "random")
        assert all(not m.training for m in b.model.modules())
    bn = rn50.model.visual.bn1
    before = bn.running_mean.clone()
    clip.encode_images(rn50, torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 3 + 1)
    assert torch.equal(bn.running_mean, before)  # eval mode: BatchNorm statistics untouched


@pytest.mark.slow
def test_local_file_for_rn50_uses_the_quickgelu_config(rn50, tmp_path):
    path = tmp_path / "rn50.safetensors"
    state = _save_fp16_safetensors(rn50.model, path)
    b = clip.load_clip("RN50", pretrained=str(path))
    assert _activations(b.model) == {"QuickGELU"}
    assert b.weights_id.startswith("file:") and _params_equal(b.model, state)


@pytest.mark.slow
def test_real_text_towers_truncated_equal_full_length(rn50, vitb32):
    texts = ["a photo of a golden retriever.", "itap of a {}.", "a photo of a person doing apply eye makeup."]
    for b in (rn50, vitb32):
        with torch.no_grad():
            ref = b.model.encode_text(b.tokenizer(texts))
        assert torch.allclose(text.encode_text(b, texts), ref, atol=1e-5)
