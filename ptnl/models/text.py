"""CLIP text features: open_clip's text tower run on prompt embeddings, and zero-shot classifiers.

``TextEncoder`` runs open_clip's own modules on prompt *embeddings*, truncated after the last EOT
of the batch: the text transformer is causal and the feature is read at the EOT position, so
tokens after it cannot change the result, and 77 positions shrink to ~10-30. ``encode_text``
and ``zero_shot_classifier`` run it on hand-crafted prompt strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from ptnl.models.clip import CLIPBundle, autocast

# The last block runs only where the feature is read (each row's EOT; its keys and values from
# every position), which is all the loss sees of it. False: every position, as open_clip runs it
# (the speed benchmark's reference; the same features to float rounding).
LAST_BLOCK_AT_EOT = True


def text_tower(model: nn.Module) -> nn.Module:
    """The module holding the CLIP text transformer's parts, with the checks prompt learning needs."""
    if isinstance(model, open_clip.CLIP):
        tower, pool = model, model.text_pool_type
    elif isinstance(getattr(model, "text", None), open_clip.transformer.TextTransformer):
        tower, pool = model.text, model.text.pool_type
        if tower.cls_emb is not None:
            raise ValueError("text towers with a CLS embedding are not supported (the EOT feature is used)")
    else:
        raise ValueError(
            f"{type(model).__name__} has no CLIP text transformer (HF text towers are not supported)"
        )
    if pool != "argmax" or getattr(tower, "attn_mask", None) is None:
        raise ValueError(
            "prompt learning needs a causal text transformer pooled at the EOT token "
            f"(pool_type='argmax'), got pool_type={pool!r}"
        )
    return tower


class TextEncoder(nn.Module):
    """CLIP's text tower run from token embeddings, truncated after the last EOT of the batch.

    ``forward(embeddings [N, L, D], eot [N]) -> features [N, E]``. The submodules are open_clip's
    own (shared with the model, not copied): ``copy.deepcopy(TextEncoder(model))`` gives an
    independent copy to fine-tune (TEnc-FT).

    ``shared_prefix=P`` says that positions ``0..P-1`` are the same for every row (CoOp's unified
    context at the end: [SOS][ctx]). Their hidden states, keys and values are computed once, with
    batch 1, and the other positions attend to them; the causal mask makes this the same
    computation. With ``groups=R`` the rows are R runs' prompts stacked run after run, each run
    with its own prefix (grouped prompt tuning): the prefix is computed once per run.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        tower = text_tower(model)
        self.transformer = tower.transformer
        self.positional_embedding = tower.positional_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)
        if not getattr(self.transformer, "batch_first", True):
            raise ValueError("open_clip text transformer must be batch-first (open_clip >= 2.23)")

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[0])

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def forward(
        self, embeddings: torch.Tensor, eot: torch.Tensor, shared_prefix: int = 0, groups: int = 1
    ) -> torch.Tensor:
        n, length, _ = embeddings.shape
        if n % groups:
            raise ValueError(f"{n} prompts cannot be split into {groups} equal groups")
        eot = eot.to(embeddings.device)
        L = int(eot.max()) + 1  # causal: nothing after the last EOT of the batch reaches any EOT
        if L > self.context_length or length < L:
            raise ValueError(
                f"EOT at position {L - 1} but {length} embeddings / context {self.context_length}"
            )
        x = embeddings[:, :L] + self.positional_embedding[:L].to(embeddings.dtype)
        if 0 < shared_prefix < int(eot.min()) and self._blocks_are_plain():
            x = self._run_shared_prefix(x, shared_prefix, groups, eot)  # [n, D]: the EOT rows
        else:
            x = self.transformer(x, attn_mask=self.attn_mask[:L, :L])
            x = x[torch.arange(n, device=x.device), eot]
        return self._project(self.ln_final(x))

    def _blocks_are_plain(self) -> bool:
        # The shared-prefix path re-runs open_clip's ResidualAttentionBlock step by step with its
        # own attention; custom blocks (qk-norm, scaled cosine attention, ...) and attention
        # modules other than a packed nn.MultiheadAttention fall back to the plain path.
        return all(
            type(b) is open_clip.transformer.ResidualAttentionBlock
            and not hasattr(b, "ln_1_kv")
            and type(b.attn) is nn.MultiheadAttention
            and b.attn.batch_first
            and b.attn._qkv_same_embed_dim
            and b.attn.bias_k is None
            and not (b.training and b.attn.dropout > 0)
            for b in self.transformer.resblocks
        ) and not getattr(self.transformer, "grad_checkpointing", False)

    def _run_shared_prefix(self, x: torch.Tensor, P: int, groups: int, eot: torch.Tensor) -> torch.Tensor:
        """The blocks over [SOS][ctx] once per group and the rows' own positions after it; the last
        block only where the feature is read, each row's EOT (its keys and values still from every
        position): what the loss needs of it. Returns the EOT rows' hidden states [n, D]."""
        n, L, d = x.shape
        c = n // groups
        mask = self.attn_mask[:L, :L].to(x.dtype)
        # rows of a group are equal on the prefix: keep one per group
        prefix, rest = x.view(groups, c, L, d)[:, 0, :P], x[:, P:]
        blocks = list(self.transformer.resblocks)
        last = len(blocks) - 1 if LAST_BLOCK_AT_EOT else len(blocks)
        for blk in blocks[:last]:
            ap, ar = _prefix_attention(blk.attn, blk.ln_1(prefix), blk.ln_1(rest), mask)
            prefix = prefix + blk.ls_1(ap)
            rest = rest + blk.ls_1(ar)
            prefix = prefix + blk.ls_2(blk.mlp(blk.ln_2(prefix)))
            rest = rest + blk.ls_2(blk.mlp(blk.ln_2(rest)))
        rows = torch.arange(n, device=x.device)
        if last == len(blocks):
            return torch.cat([_per_row(prefix, c), rest], dim=1)[rows, eot]
        blk = blocks[-1]
        at = eot - P  # each row's EOT among its own positions
        out = _eot_attention(blk.attn, blk.ln_1(prefix), blk.ln_1(rest), at, mask[P:, :][at])
        h = rest[rows, at] + blk.ls_1(out)
        return h + blk.ls_2(blk.mlp(blk.ln_2(h)))


def _per_row(t: torch.Tensor, c: int) -> torch.Tensor:
    """[G, ...] -> [G*c, ...], each group's entry repeated for its c rows (a view when G = 1)."""
    if t.shape[0] == 1:
        return t.expand(c, *t.shape[1:])
    return t.repeat_interleave(c, dim=0)


def _prefix_attention(attn: nn.MultiheadAttention, hp: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor):
    """nn.MultiheadAttention (batch-first, packed in-projection) of shared prefixes ``hp`` [G, P, D]
    and the rows' own positions ``hr`` [G*c, R, D] (group after group) that attend to their group's
    prefix, with the prefix's queries, keys and values projected once per group instead of once per
    row: with 16 context tokens and a few name tokens that projection is about a third of the text
    tower's work. ``mask``: additive [P+R, P+R]."""
    P, h = hp.shape[1], attn.num_heads
    c = hr.shape[0] // hp.shape[0]

    def heads(t):  # [B, T, D] -> [B, h, T, D/h]
        return t.unflatten(-1, (h, -1)).transpose(1, 2)

    qp, kp, vp = F.linear(hp, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    qr, kr, vr = F.linear(hr, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    kp, vp = heads(kp), heads(vp)
    out_p = F.scaled_dot_product_attention(heads(qp), kp, vp, attn_mask=mask[:P, :P])
    k = torch.cat([_per_row(kp, c), heads(kr)], dim=2)
    v = torch.cat([_per_row(vp, c), heads(vr)], dim=2)
    out_r = F.scaled_dot_product_attention(heads(qr), k, v, attn_mask=mask[P:, :])

    def merge(t):  # [B, h, T, D/h] -> [B, T, D], then the output projection
        return attn.out_proj(t.transpose(1, 2).flatten(2))

    return merge(out_p), merge(out_r)


def _eot_attention(attn: nn.MultiheadAttention, hp, hr, at: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``_prefix_attention``'s output at one position per row, ``at`` (its EOT): queries of that
    position only, keys and values of the prefix and every own position. ``mask``: the additive
    mask rows of those positions [n, P+R]. Returns [n, D]."""
    h = attn.num_heads
    n = hr.shape[0]
    c = n // hp.shape[0]

    def heads(t):  # [B, T, D] -> [B, h, T, D/h]
        return t.unflatten(-1, (h, -1)).transpose(1, 2)

    w, bias = attn.in_proj_weight, attn.in_proj_bias
    d = w.shape[1]
    kp, vp = F.linear(hp, w[d:], None if bias is None else bias[d:]).chunk(2, dim=-1)
    kr, vr = F.linear(hr, w[d:], None if bias is None else bias[d:]).chunk(2, dim=-1)
    q = F.linear(hr[torch.arange(n, device=hr.device), at], w[:d], None if bias is None else bias[:d])
    k = torch.cat([_per_row(heads(kp), c), heads(kr)], dim=2)
    v = torch.cat([_per_row(heads(vp), c), heads(vr)], dim=2)
    out = F.scaled_dot_product_attention(heads(q[:, None]), k, v, attn_mask=mask[:, None, None, :])
    return attn.out_proj(out.transpose(1, 2).flatten(1))


def check_prompt_lengths(bundle: CLIPBundle, texts: Sequence[str]) -> None:
    tok = bundle.tokenizer
    if not hasattr(tok, "encode"):
        return
    for t in texts:
        n = len(tok.encode(t)) + 2  # + SOS + EOT
        if n > bundle.context_length:
            raise ValueError(
                f"prompt {t!r} is {n} tokens, more than the context length {bundle.context_length}; "
                "shorten the template or the class name"
            )


def encode_text(
    bundle: CLIPBundle, texts: Sequence[str], precision: str | None = None, batch_size: int = 256
) -> torch.Tensor:
    """Frozen text-tower features [N, E] (float32, not normalised) of hand-crafted prompt strings."""
    if isinstance(texts, str):
        raise ValueError("encode_text takes a list of strings, not one string")
    texts = list(texts)
    if not texts:
        raise ValueError("encode_text needs at least one prompt")
    check_prompt_lengths(bundle, texts)
    precision = precision or bundle.precision
    encoder = TextEncoder(bundle.model)
    out = []
    with torch.no_grad(), autocast(bundle.device, precision):
        for i in range(0, len(texts), batch_size):
            tokens = bundle.tokenizer(texts[i : i + batch_size]).to(bundle.device)
            eot = tokens.argmax(dim=-1)  # CLIP's EOT has the largest id
            L = int(eot.max()) + 1
            out.append(encoder(bundle.model.token_embedding(tokens[:, :L]), eot).float())
    return torch.cat(out)


def zero_shot_classifier(
    bundle: CLIPBundle,
    classnames: Sequence[str],
    templates: str | Sequence[str],
    precision: str | None = None,
) -> torch.Tensor:
    """Unit-norm class embeddings [C, E] for a template (one "{}") or a template ensemble.

    An ensemble averages the unit-norm features over templates and normalises again (CLIP's and
    CoOp's ZeroshotCLIP2 recipe). Underscores in class names become spaces, as in CoOp.
    """
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates:
        raise ValueError("zero_shot_classifier needs at least one template")
    for t in templates:
        if t.count("{}") != 1:
            raise ValueError(f"template {t!r} must contain exactly one '{{}}' for the class name")
    names = [c.replace("_", " ") for c in classnames]
    if not names:
        raise ValueError("zero_shot_classifier needs at least one class name")
    per_template = [
        F.normalize(encode_text(bundle, [t.format(c) for c in names], precision), dim=-1) for t in templates
    ]
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)
