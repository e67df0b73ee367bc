"""ptnl.models.prompts.prompt_token_ids against CoOp's PromptLearner, replayed on token ids.

``coop`` below is CoOp's tokenisation and slicing (its trainers/coop.py) with
``open_clip.tokenize`` (CLIP's BPE) in place of ``clip.tokenize``, and token ids in place of
their embeddings: the independent reference. No model is built.
"""

import open_clip
import pytest
import torch
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

from ptnl.data.specs import CALTECH_RENAMES, EUROSAT_NAMES
from ptnl.data.toy.tasks import TASKS
from ptnl.models.prompts import prompt_token_ids

TOK = open_clip.SimpleTokenizer()  # CLIP's BPE, context 77
SOS, EOT = TOK.sot_token_id, TOK.eot_token_id
SHIPPED = {
    "ImageNet": tuple(IMAGENET_CLASSNAMES),  # CLIP's curated list, CoOp's classnames.txt
    "EuroSAT": tuple(EUROSAT_NAMES.values()),
    "Caltech101-renames": tuple(CALTECH_RENAMES.values()),
    **{name: task.classnames for name, task in TASKS.items()},
}
KITE = "kite (bird of prey)"


def coop(classnames, n_ctx=16, ctx_init=None, position="end"):
    """CoOp's prompt tokens: (n_ctx, ids [C, 77] in the layout, EOT index [C], ctx ids, name_lens)."""
    if ctx_init:
        ctx_init = ctx_init.replace("_", " ")
        n_ctx = len(ctx_init.split(" "))
        ctx_ids = open_clip.tokenize(ctx_init)[0, 1 : 1 + n_ctx].tolist()
        prompt_prefix = ctx_init
    else:
        prompt_prefix = " ".join(["X"] * n_ctx)
        ctx_ids = TOK.encode("X") * n_ctx
    classnames = [name.replace("_", " ") for name in classnames]
    name_lens = [len(TOK.encode(name)) for name in classnames]
    prompts = [prompt_prefix + " " + name + "." for name in classnames]
    tokenized = open_clip.tokenize(prompts)
    prefix, ctx, suffix = tokenized[:, :1], tokenized[:, 1 : 1 + n_ctx], tokenized[:, 1 + n_ctx :]
    if position == "end":
        ids = torch.cat([prefix, ctx, suffix], dim=1)
    else:
        h, rows = n_ctx // 2, []
        for i, k in enumerate(name_lens):
            class_i, suffix_i = suffix[i, :k], suffix[i, k:]
            if position == "middle":
                rows.append(torch.cat([prefix[i], ctx[i, :h], class_i, ctx[i, h:], suffix_i]))
            else:
                rows.append(torch.cat([prefix[i], class_i, ctx[i], suffix_i]))
        ids = torch.stack(rows)
    return n_ctx, ids, tokenized.argmax(-1), ctx_ids, name_lens


def padded(rows, length=77):
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for c, r in enumerate(rows):
        out[c, : len(r)] = torch.tensor(r)
    return out


def check(classnames, n_ctx=16, ctx_init=None, position="end"):
    pt = prompt_token_ids(TOK, classnames, n_ctx, ctx_init, position)
    n, ids, eot, ctx_ids, name_lens = coop(classnames, n_ctx, ctx_init, position)
    assert pt.n_ctx == n and pt.ctx_ids == ctx_ids
    assert torch.equal(padded(pt.rows), ids)
    assert [len(r) - 1 for r in pt.rows] == eot.tolist()
    end = ids if position == "end" else coop(classnames, n_ctx, ctx_init)[1]
    for c, row in enumerate(pt.rows):
        assert [row[i] for i in pt.ctx_cols[c]] == ctx_ids
        assert len(pt.name_cols[c]) == name_lens[c]
        # the name slots hold CoOp's class_i = suffix[:name_len] of the end layout
        assert [row[i] for i in pt.name_cols[c]] == end[c, 1 + n : 1 + n + name_lens[c]].tolist()
        assert sorted(pt.ctx_cols[c] + pt.name_cols[c]) == list(range(1, 1 + n + name_lens[c]))
    return pt


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("n_ctx", [16, 4, 0])
@pytest.mark.parametrize("which", list(SHIPPED))
def test_shipped_class_names_tokenise_as_coop(which, n_ctx, position):
    check(SHIPPED[which], n_ctx=n_ctx, position=position)


@pytest.mark.parametrize("position", ["end", "middle"])
@pytest.mark.parametrize("which", ["ImageNet", "toy-shapes", "toy-fine"])
def test_shipped_class_names_with_ctx_init_tokenise_as_coop(which, position):
    check(SHIPPED[which], ctx_init="a photo of a", position=position)


def test_kite_ends_in_the_merged_token_and_its_name_span_takes_it():
    x, d = TOK.encode("X")[0], TOK.decoder
    assert [d[i] for i in TOK.encode(KITE)][-1] == ")</w>"  # the name alone ends in ")"
    pt = check([KITE, "cat"])
    words = [d[i] for i in pt.rows[0]]
    assert pt.rows[0][1:17] == [x] * 16
    assert words[17:] == ["kite</w>", "(</w>", "bird</w>", "of</w>", "prey</w>", ").</w>", "<end_of_text>"]
    assert pt.name_cols[0] == list(range(17, 23))  # encode(name) is 6 tokens: up to and with ")."
    # middle and front move ")." with the name; the period-less rest is EOT alone
    middle = check([KITE], position="middle").rows[0]
    assert [d[i] for i in middle[9:15]] == words[17:23] and middle[15:] == [x] * 8 + [EOT]
    front = check([KITE], position="front").rows[0]
    assert [d[i] for i in front[1:7]] == words[17:23] and front[7:] == [x] * 16 + [EOT]


def test_ctx_init_counts_words_and_takes_the_first_tokens():
    pt = check(["cat"], ctx_init="a photo of a")
    assert pt.n_ctx == 4 and pt.ctx_ids == open_clip.tokenize("a photo of a")[0, 1:5].tolist()
    assert check(["cat"], ctx_init="a_photo_of_a").rows == pt.rows  # "_" is a space, as CoOp reads it
    # CoOp's ImageNet template: 3 words, 4 tokens ("it", "ap", "of", "a")
    d = TOK.decoder
    for position in ("end", "middle", "front"):
        pt = check(["cat", KITE], ctx_init="itap of a", position=position)
        assert pt.n_ctx == 3 and [d[i] for i in pt.ctx_ids] == ["it", "ap</w>", "of</w>"]
    end = check(["cat"], ctx_init="itap of a").rows[0]
    assert end == open_clip.tokenize("itap of a cat.")[0, :8].tolist()
    # the leftover "a" opens CoOp's class span (name_lens 1), "cat" falls into the rest
    assert [d[end[i]] for i in check(["cat"], ctx_init="itap of a").name_cols[0]] == ["a</w>"]


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="'a  photo' has 3 words but 2 tokens"):
        prompt_token_ids(TOK, ["cat"], ctx_init="a  photo")
    with pytest.raises(ValueError, match="'a,..': its 3 tokens would reach past its prompt's EOT"):
        prompt_token_ids(TOK, ["a,.."])
    with pytest.raises(ValueError, match="n_ctx=74 does not fit: the context is 77 tokens"):
        prompt_token_ids(TOK, ["cat"], n_ctx=74)
    with pytest.raises(ValueError, match="class_token_position='start'"):
        prompt_token_ids(TOK, ["cat"], class_token_position="start")
