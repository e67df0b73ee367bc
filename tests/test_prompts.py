"""ptnl.models.prompts: CoOp prompt learners checked against CLIP's own encode_text of the same strings.

With the context initialised from "a photo of a", the learner's prompt for class c *is* the
hand-crafted prompt "a photo of a c." in embedding space, so its features must equal
``model.encode_text(tokenize(...))``: an independent reference through open_clip's own path.
"""

import json
import types

import pytest
import torch
import torch.nn.functional as F

from ptnl.models import clip
from ptnl.models.prompts import PromptCLIP, PromptLearner, prompt_token_ids, random_prompt_classifier
from ptnl.models.toy import TOY_BACKBONES

TINY = {
    "embed_dim": 24,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
NAMES = ["cat", "sea_lion", "golden retriever dog", "x"]
INIT = "a photo of a"
KITE = "kite (bird of prey)"  # ImageNet: CLIP's BPE merges ")" and "." into ")."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    (folder / "tiny.json").write_text(json.dumps(TINY))
    spec = types.SimpleNamespace(config=folder / "tiny.json", checkpoint=folder / "none.safetensors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TOY_BACKBONES, "toy-tiny", spec)
        yield clip.load_clip("toy-tiny", pretrained=None)


@pytest.fixture(scope="module")
def rn50():
    return clip.load_clip("RN50", pretrained=None)


@pytest.fixture(scope="module")
def vitb32():
    return clip.load_clip("ViT-B-32", pretrained=None)


def reference(bundle, texts):
    """open_clip's own text path at full context length: the independent reference."""
    with torch.no_grad():
        return F.normalize(bundle.model.encode_text(bundle.tokenizer(texts)), dim=-1)


def spaced(names):
    return [n.replace("_", " ") for n in names]


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("learn", ["ctx", "cls", "full"])
def test_ctx_init_end_equals_handcrafted_prompt(tiny, learn):
    m = PromptCLIP(tiny, NAMES, n_ctx=4, ctx_init=INIT, learn=learn)
    ref = reference(tiny, [f"a photo of a {n}." for n in spaced(NAMES)])
    assert torch.allclose(m.class_embeddings(), ref, atol=1e-5)


@pytest.mark.parametrize(
    "position, template",
    [("end", "a photo of a {}."), ("middle", "a photo {} of a."), ("front", "{} a photo of a.")],
)
def test_layouts_match_the_strings_they_document(tiny, position, template):
    """end/middle/front with the "a photo of a" context are these strings, token for token."""
    texts = [template.format(n) for n in spaced(NAMES)]
    pl = PromptLearner(tiny, NAMES, ctx_init=INIT, class_token_position=position)
    tokens = tiny.tokenizer(texts)[:, : pl.tokens.shape[1]]
    assert torch.equal(pl.tokens, tokens)
    m = PromptCLIP(tiny, NAMES, ctx_init=INIT, class_token_position=position)
    assert torch.allclose(m.class_embeddings(), reference(tiny, texts), atol=1e-5)


def test_ctx0_is_the_bare_class_name(tiny):
    m = PromptCLIP(tiny, NAMES, n_ctx=0)
    assert m.trainable_parameters() == []
    assert torch.allclose(m.class_embeddings(), reference(tiny, [f"{n}." for n in spaced(NAMES)]), atol=1e-5)


@pytest.mark.parametrize("csc", [False, True])
@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_truncated_equals_full_length_and_shared_prefix_equals_plain(tiny, csc, position):
    g = torch.Generator().manual_seed(3)
    m = PromptCLIP(tiny, NAMES, n_ctx=8, csc=csc, class_token_position=position, generator=g)
    short = m.class_embeddings()
    assert torch.allclose(short, m.class_embeddings(full_length=True), atol=1e-5)
    m.share_prefix = False
    assert torch.allclose(short, m.class_embeddings(), atol=1e-5)


def test_shared_prefix_gradients_equal_plain_gradients(tiny):
    m = PromptCLIP(tiny, NAMES, n_ctx=6, generator=torch.Generator().manual_seed(4))
    assert m.prompt_learner.shared_prefix == 7
    feats = torch.randn(5, 24, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 2, 3, 1])
    grads = []
    for share in (True, False):
        m.share_prefix = share
        m.zero_grad()
        F.cross_entropy(m(feats), y).backward()
        grads.append(m.prompt_learner.ctx.grad.clone())
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_tokens_are_coops_for_a_name_merging_with_the_period(tiny, position):
    names = NAMES + [KITE]
    pl = PromptLearner(tiny, names, n_ctx=8, class_token_position=position)
    rows = prompt_token_ids(tiny.tokenizer, names, 8, None, position, tiny.context_length).rows
    assert pl.tokens.shape[1] == max(len(r) for r in rows)
    assert all(pl.tokens[c, : len(r)].tolist() == r for c, r in enumerate(rows))
    assert pl.eot.tolist() == [len(r) - 1 for r in rows]
    if position == "end":  # CoOp: tokenize the whole string, EOT at its argmax
        ref = tiny.tokenizer([" ".join(["X"] * 8) + " " + n + "." for n in spaced(names)])
        assert torch.equal(pl.tokens, ref[:, : pl.tokens.shape[1]]) and torch.equal(pl.eot, ref.argmax(-1))
    # the name slots are CoOp's span of len(encode(name)) tokens: for the kite it ends in ")."
    span = pl.tokens[4, pl.name_cols[pl.name_rows == 4]].tolist()
    assert len(span) == 6 and tiny.tokenizer.decoder[span[-1]] == ").</w>"


@pytest.mark.parametrize("learn", ["cls", "full"])
def test_learned_name_tokens_are_coops_name_span(tiny, learn):
    texts = [f"a photo of a {n}." for n in (KITE, "cat")]
    m = PromptCLIP(tiny, [KITE, "cat"], ctx_init=INIT, learn=learn)
    assert torch.allclose(m.class_embeddings(), reference(tiny, texts), atol=1e-5)
    pl = m.prompt_learner
    kite = tiny.tokenizer(texts[:1])[0, 5:11]  # after [SOS] a photo of a: kite ( bird of prey ).
    assert torch.equal(pl.name_embeds[pl.name_rows == 0], tiny.model.token_embedding(kite))


def test_ctx_init_sets_n_ctx_to_its_word_count(tiny):
    for init, n in [(INIT, 4), ("itap of a", 3)]:  # "itap of a": 3 words, 4 tokens (it ap of a)
        m = PromptCLIP(tiny, NAMES, n_ctx=16, ctx_init=init)
        pl = m.prompt_learner
        assert pl.n_ctx == n and pl.ctx.shape == (n, 32) and pl.shared_prefix == 1 + n
        assert torch.equal(pl.ctx, tiny.model.token_embedding(tiny.tokenizer([init]))[0, 1 : 1 + n])
        # the tokens past the n-th stay in the prompt, fixed: at init it is the hand-crafted one
        ref = reference(tiny, [f"{init} {c}." for c in spaced(NAMES)])
        assert torch.allclose(m.class_embeddings(), ref, atol=1e-5)


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_random_context_token_layout(tiny, position):
    n = 5
    pl = PromptLearner(tiny, NAMES, n_ctx=n, class_token_position=position)
    tok = tiny.tokenizer.encode
    x, h = tok("X")[0], n // 2
    for c, name in enumerate(spaced(NAMES)):
        ids = tok(name)
        body = {"end": [x] * n + ids, "middle": [x] * h + ids + [x] * (n - h), "front": ids + [x] * n}[
            position
        ]
        row = [49406] + body + tok(".") + [49407]
        assert pl.tokens[c, : len(row)].tolist() == row and pl.tokens[c, len(row) :].eq(0).all()
        assert pl.eot[c].item() == len(row) - 1
        ctx_cols = pl.ctx_cols[pl.ctx_rows == c].tolist()
        name_cols = pl.name_cols[pl.name_rows == c].tolist()
        assert [row[i] for i in ctx_cols] == [x] * n and [row[i] for i in name_cols] == ids
        assert sorted(ctx_cols + name_cols) == list(range(1, 1 + n + len(ids)))


def test_csc_gives_each_class_its_own_context(tiny):
    m = PromptCLIP(tiny, NAMES, n_ctx=4, csc=True, generator=torch.Generator().manual_seed(0))
    assert m.prompt_learner.ctx.shape == (4, 4, 32) and m.prompt_learner.shared_prefix == 0
    before = m.class_embeddings().detach()
    # a random push (a constant shift would vanish in LayerNorm)
    push = torch.randn(4, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        m.prompt_learner.ctx[1] += push
    diff = (m.class_embeddings().detach() - before).abs().amax(dim=1)
    assert diff[1] > 1e-3 and torch.all(diff[[0, 2, 3]] < 1e-6)
    # unified: one context moves every class
    u = PromptCLIP(tiny, NAMES, n_ctx=4, generator=torch.Generator().manual_seed(0))
    before = u.class_embeddings().detach()
    with torch.no_grad():
        u.prompt_learner.ctx += push
    assert torch.all((u.class_embeddings().detach() - before).abs().amax(dim=1) > 1e-3)


def test_csc_with_ctx_init_starts_from_the_words_for_every_class(tiny):
    m = PromptCLIP(tiny, NAMES, ctx_init=INIT, csc=True)
    assert m.prompt_learner.ctx.shape == (4, 4, 32)
    assert torch.allclose(
        m.class_embeddings(), reference(tiny, [f"a photo of a {n}." for n in spaced(NAMES)]), atol=1e-5
    )


# ----------------------------------------------------------------------------- what trains


@pytest.mark.parametrize(
    "learn, trainable",
    [
        ("ctx", {"prompt_learner.ctx"}),
        ("cls", {"prompt_learner.name_embeds"}),
        ("full", {"prompt_learner.ctx", "prompt_learner.name_embeds"}),
    ],
)
def test_gradients_reach_only_the_trainable_tensors(tiny, learn, trainable):
    m = PromptCLIP(tiny, NAMES, n_ctx=4, learn=learn, generator=torch.Generator().manual_seed(0))
    named = {n for n, p in m.named_parameters() if p.requires_grad}
    assert named == trainable
    assert {id(p) for p in m.trainable_parameters()} == {
        id(p) for n, p in m.named_parameters() if n in trainable
    }
    assert all(not p.requires_grad for p in tiny.model.parameters())
    feats = torch.randn(6, 24, generator=torch.Generator().manual_seed(1))
    F.cross_entropy(m(feats), torch.tensor([0, 1, 2, 3, 0, 1])).backward()
    for p in m.trainable_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())
    # the state dict holds the prompt only (plus a fixed context where it is not learned)
    keys = set(m.state_dict())
    assert keys == trainable | ({"prompt_learner.ctx"} if learn == "cls" else set())
    if learn == "cls":  # the fixed context is a buffer and gets no gradient
        assert not m.prompt_learner.ctx.requires_grad
    m.zero_grad()


def test_cls_tuning_gradient_reaches_only_name_tokens_of_the_batch_classes(tiny):
    m = PromptCLIP(tiny, NAMES, n_ctx=4, learn="cls")
    feats = torch.randn(3, 24, generator=torch.Generator().manual_seed(2))
    # a loss that only looks at class 0's logit
    m(feats)[:, 0].sum().backward()
    g = m.prompt_learner.name_embeds.grad.abs().sum(dim=1)
    rows = m.prompt_learner.name_rows
    assert torch.all(g[rows == 0] > 0) and torch.all(g[rows != 0] == 0)


# ----------------------------------------------------------------------------- init, logits


def test_random_init_is_seeded_and_has_std_002(tiny):
    state = torch.random.get_rng_state()
    a = PromptLearner(tiny, NAMES, n_ctx=16, generator=torch.Generator().manual_seed(7)).ctx
    b = PromptLearner(tiny, NAMES, n_ctx=16, generator=torch.Generator().manual_seed(7)).ctx
    c = PromptLearner(tiny, NAMES, n_ctx=16, generator=torch.Generator().manual_seed(8)).ctx
    d = PromptLearner(tiny, NAMES, n_ctx=16).ctx
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(d, PromptLearner(tiny, NAMES, n_ctx=16).ctx)  # generator=None is seed 0
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.shape == (16, 32) and abs(a.mean().item()) < 0.005 and 0.017 < a.std().item() < 0.023


def test_logits_are_clip_logits_and_reuse_class_embeddings(tiny):
    m = PromptCLIP(tiny, NAMES, ctx_init=INIT)
    feats = torch.randn(5, 24, generator=torch.Generator().manual_seed(3))
    emb = m.class_embeddings().detach()
    scale = tiny.model.logit_scale.exp().item()
    expected = (
        scale
        * F.normalize(feats, dim=-1)
        @ reference(tiny, [f"a photo of a {n}." for n in spaced(NAMES)]).t()
    )
    assert torch.allclose(m(feats, emb), expected, atol=1e-4)
    assert torch.allclose(m(feats), m(feats, emb), atol=1e-6)


def test_random_prompt_classifier(tiny):
    a = random_prompt_classifier(tiny, NAMES, generator=torch.Generator().manual_seed(1))
    b = random_prompt_classifier(tiny, NAMES, generator=torch.Generator().manual_seed(1))
    c = random_prompt_classifier(tiny, NAMES, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c) and not a.requires_grad
    assert a.shape == (4, 24) and torch.allclose(a.norm(dim=-1), torch.ones(4), atol=1e-6)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="n_ctx=29 does not fit.*at most 28"):
        PromptLearner(tiny, NAMES, n_ctx=29)
    PromptLearner(tiny, ["x"], n_ctx=28)  # the largest that fits: SOS + 28 + x + . + EOT = 32
    long_name = "very " * 12 + "long name"
    with pytest.raises(ValueError, match="class name 'very .* is 14 tokens.*33 positions.*at most 13 tokens"):
        PromptLearner(tiny, ["cat", long_name], n_ctx=16)
    with pytest.raises(ValueError, match="learn='prompt'"):
        PromptLearner(tiny, NAMES, learn="prompt")
    with pytest.raises(ValueError, match="class_token_position='start'"):
        PromptLearner(tiny, NAMES, class_token_position="start")
    with pytest.raises(ValueError, match="n_ctx must be an integer >= 0"):
        PromptLearner(tiny, NAMES, n_ctx=-1)
    with pytest.raises(ValueError, match="non-empty list"):
        PromptLearner(tiny, "cat")
    with pytest.raises(ValueError, match="no tokens"):
        PromptLearner(tiny, ["cat", "  "])


# ----------------------------------------------------------------------------- real architectures


@pytest.mark.slow
@pytest.mark.parametrize("which", ["rn50", "vitb32"])
def test_real_backbones_prompt_equals_handcrafted(which, request):
    bundle = request.getfixturevalue(which)
    names = ["golden_retriever", "apple pie", "airplane"]
    m = PromptCLIP(bundle, names, n_ctx=4, ctx_init=INIT)
    ref = reference(bundle, [f"a photo of a {n}." for n in spaced(names)])
    emb = m.class_embeddings()
    assert torch.allclose(emb, ref, atol=1e-5)
    m.share_prefix = False
    assert torch.allclose(m.class_embeddings(), emb, atol=1e-5)
    assert torch.allclose(m.class_embeddings(full_length=True), emb, atol=1e-5)
    r = PromptCLIP(bundle, names, n_ctx=16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(r.class_embeddings(), r.class_embeddings(full_length=True), atol=1e-5)
