"""CoOp prompt learners and the paper's variants (Sections 3 and 4.3, Appendix B).

A prompt is ``[SOS][ctx_1..ctx_n][class name][.][EOT]`` in CLIP's token-embedding space. Its
pieces come from the frozen ``token_embedding``; what is learnable depends on ``learn``:

- ``"ctx"``  CoOp / the paper's "Prompt Tuning": the n_ctx context vectors (names fixed).
- ``"cls"``  CLS-Tuning (Table 2): the class-name token embeddings; the context stays at its init.
- ``"full"`` Full-Prompt-Tuning (Table 2): context and class-name tokens.

``n_ctx=0`` is the paper's Ctx-0 (``[SOS][name][.][EOT]``, nothing to learn with ``learn="ctx"``).
Context init is N(0, 0.02) from ``generator`` (seed 0 if None, never the global RNG), or the
embeddings of ``ctx_init`` ("a photo of a"; "_" reads as a space). With ``ctx_init``, as in CoOp,
n_ctx becomes the number of its *words* (``len(ctx_init.split(" "))``) and the ``n_ctx`` argument is
ignored; the context vectors are the embeddings of its first n_ctx BPE tokens. Where a word is
several tokens ("itap of a" is 3 words, 4 tokens ``it ap of a``) the tokens past the first n_ctx
stay in the prompt as fixed tokens after the context, as in CoOp. Unlike CoOp, ``csc=True`` with
``ctx_init`` is honoured (each class starts from its own copy of the words) rather than silently
falling back to a shared context.

Token ids are CoOp's (``prompt_token_ids``): the whole string ``"X X .. X name."`` (or
``ctx_init + " name."``) is tokenised at once, so a name ending in punctuation merges with the
period as CLIP's BPE does (``kite (bird of prey).`` ends in the one token ``).``), and the class
tokens are the ``len(encode(name))`` tokens after the context, CoOp's ``name_lens`` slice.

Class-token positions (``h = n_ctx // 2``), the layouts CoOp builds:

    end     [SOS][ctx_1..ctx_n][name][.][EOT]
    middle  [SOS][ctx_1..ctx_h][name][ctx_h+1..ctx_n][.][EOT]
    front   [SOS][name][ctx_1..ctx_n][.][EOT]

``[name]`` and ``[.]`` are CoOp's slices ``suffix[:name_len]`` and ``suffix[name_len:]`` of the
tokens after the context, so with a merged ``).`` the middle prompt is ``.. prey ). ctx_h+1 ..
[EOT]``.

Prompts are stored truncated to the longest one (the text transformer is causal, so the padding
after EOT never matters); with a shared context at ``end`` the ``[SOS][ctx]`` prefix is the same
for all classes and the text encoder computes it once (``TextEncoder(shared_prefix=...)``).

Method-module protocol (used by the engine): ``class_embeddings() -> [C, E]`` unit-norm (runs the
text tower, with grad when training), ``forward(image_features, class_embeddings=None) ->
logits [B, C]`` (reuse class_embeddings across test batches), ``trainable_parameters()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ptnl.core.checks import is_int
from ptnl.models.clip import CLIPBundle, autocast
from ptnl.models.text import TextEncoder

LEARN = ("ctx", "cls", "full")
CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
CTX_INIT_STD = 0.02  # CoOp: nn.init.normal_(ctx, std=0.02)
DEFAULT_SEED = 0  # generator=None draws from this seed, so a learner is always reproducible
PLACEHOLDER = "X"  # CoOp's placeholder word for context slots (its embedding is overwritten)


def _tokenizer_parts(bundle: CLIPBundle):
    tok = bundle.tokenizer
    if not all(hasattr(tok, a) for a in ("encode", "sot_token_id", "eot_token_id")):
        raise ValueError(
            f"prompt learning needs CLIP's BPE tokenizer (open_clip.SimpleTokenizer); {bundle.name} has "
            f"{type(tok).__name__}"
        )
    return tok


class PromptTokens(NamedTuple):
    """Token ids of C prompts in one layout. ``rows[c]`` runs from SOS to EOT, unpadded;
    ``ctx_cols[c]`` / ``name_cols[c]`` are the positions of the context and class-name slots in it;
    ``ctx_ids`` are the ids the context starts from (``ctx_init``'s first n_ctx tokens, or "X")."""

    n_ctx: int
    rows: list[list[int]]
    ctx_cols: list[list[int]]
    name_cols: list[list[int]]
    ctx_ids: list[int]


def prompt_token_ids(
    tokenizer,
    classnames: Sequence[str],
    n_ctx: int = 16,
    ctx_init: str | None = None,
    class_token_position: str = "end",
    context_length: int | None = None,
) -> PromptTokens:
    """CoOp's prompt tokens: ``tokenize(prefix + " " + name + ".")`` with the prefix ``"X X .. X"``
    (n_ctx words) or ``ctx_init``, cut into ``[SOS][ctx][suffix]`` at ``1 + n_ctx`` and the suffix
    into the class span ``suffix[:len(encode(name))]`` and the rest, then laid out by
    ``class_token_position``. ``tokenizer`` is CLIP's BPE (``encode``, ``sot_token_id``,
    ``eot_token_id``); ``context_length`` defaults to its own."""
    if class_token_position not in CLASS_TOKEN_POSITIONS:
        raise ValueError(
            f"class_token_position={class_token_position!r} is not one of {CLASS_TOKEN_POSITIONS}"
        )
    if isinstance(classnames, str) or not len(classnames):
        raise ValueError("classnames must be a non-empty list of strings")
    context = tokenizer.context_length if context_length is None else context_length
    if ctx_init is not None:
        prefix = ctx_init.replace("_", " ").strip()
        n_ctx = len(prefix.split(" "))  # CoOp: the number of words, whatever their BPE tokens
        ctx_ids = tokenizer.encode(prefix)[:n_ctx]
        if not ctx_ids:
            raise ValueError(f"ctx_init={ctx_init!r} has no tokens")
        if len(ctx_ids) < n_ctx:  # only empty words ("a  photo") have no token
            raise ValueError(f"ctx_init={ctx_init!r} has {n_ctx} words but {len(ctx_ids)} tokens")
    else:
        if not is_int(n_ctx) or n_ctx < 0:
            raise ValueError(f"n_ctx must be an integer >= 0, got {n_ctx!r}")
        prefix = " ".join([PLACEHOLDER] * n_ctx)
        ctx_ids = tokenizer.encode(PLACEHOLDER) * n_ctx
    max_ctx = context - 4  # room for SOS, a one-token name, ".", EOT
    if n_ctx > max_ctx:
        raise ValueError(
            f"n_ctx={n_ctx} does not fit: the context is {context} tokens, so n_ctx can be at most "
            f"{max_ctx} (SOS + name + '.' + EOT take the rest)"
        )
    h = n_ctx // 2
    rows, ctx_cols, name_cols = [], [], []
    for c in classnames:
        name = str(c).replace("_", " ").strip()
        k = len(tokenizer.encode(name))  # CoOp's name_lens
        if not k:
            raise ValueError(f"class name {c!r} has no tokens")
        ids = [tokenizer.sot_token_id, *tokenizer.encode(f"{prefix} {name}."), tokenizer.eot_token_id]
        if len(ids) > context:
            raise ValueError(
                f"class name {c!r} is {k} tokens: with n_ctx={n_ctx} its prompt needs {len(ids)} "
                f"positions, more than the context length {context}. Shorten the name to at most "
                f"{context - len(ids) + k} tokens or use a smaller n_ctx"
            )
        ctx, suffix = ids[1 : 1 + n_ctx], ids[1 + n_ctx :]
        # CoOp's slice, not the name's own tokens: where the name's last token merges with the
        # period (")" + "." -> ")."), the span ends in the merged token and the rest is only EOT;
        # where ctx_init has more tokens than words, the span starts with its leftover tokens.
        name_ids, rest = suffix[:k], suffix[k:]
        if not rest:
            raise ValueError(f"class name {c!r}: its {k} tokens would reach past its prompt's EOT")
        if class_token_position == "end":
            seq, cpos, npos = ctx + suffix, range(1, 1 + n_ctx), range(1 + n_ctx, 1 + n_ctx + k)
        elif class_token_position == "middle":
            seq = ctx[:h] + name_ids + ctx[h:] + rest
            cpos = [*range(1, 1 + h), *range(1 + h + k, 1 + n_ctx + k)]
            npos = range(1 + h, 1 + h + k)
        else:  # front
            seq, cpos, npos = name_ids + ctx + rest, range(1 + k, 1 + k + n_ctx), range(1, 1 + k)
        rows.append([ids[0], *seq])
        ctx_cols.append(list(cpos))
        name_cols.append(list(npos))
    return PromptTokens(n_ctx, rows, ctx_cols, name_cols, ctx_ids)


class PromptLearner(nn.Module):
    """Builds the C prompts' token embeddings; only the parts named by ``learn`` are parameters.

    ``forward(full_length=False) -> (embeddings [C, L, D], eot [C])`` where ``L`` is the longest
    prompt (``full_length=True`` pads to the context length with the pad token, as CoOp feeds it).
    Buffers: ``tokens`` [C, L] (CoOp's token ids, from ``prompt_token_ids``; context slots hold "X"
    or the first n_ctx tokens of ctx_init), ``ctx_rows/ctx_cols`` and ``name_rows/name_cols`` (where
    context and class-name tokens sit).
    """

    def __init__(
        self,
        bundle: CLIPBundle,
        classnames: Sequence[str],
        n_ctx: int = 16,
        ctx_init: str | None = None,
        csc: bool = False,
        class_token_position: str = "end",
        learn: str = "ctx",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if learn not in LEARN:
            raise ValueError(f"learn={learn!r} is not one of {LEARN}")
        tok = _tokenizer_parts(bundle)
        context = bundle.context_length
        pt = prompt_token_ids(tok, classnames, n_ctx, ctx_init, class_token_position, context)
        n_ctx, rows, ctx_cols, name_cols = pt.n_ctx, pt.rows, pt.ctx_cols, pt.name_cols
        C = len(rows)
        L = max(len(r) for r in rows)
        tokens = torch.zeros(C, L, dtype=torch.long)  # 0 = pad, as open_clip's tokenizer pads
        for c, r in enumerate(rows):
            tokens[c, : len(r)] = torch.tensor(r)
        device = torch.device(bundle.device)
        model = bundle.model
        with torch.no_grad():
            embeds = model.token_embedding(tokens.to(device)).float()
            pad = model.token_embedding(torch.zeros(1, dtype=torch.long, device=device)).float()[0]
        D = embeds.shape[-1]

        self.classnames = tuple(classnames)
        self.n_ctx, self.csc, self.learn = n_ctx, bool(csc), learn
        self.class_token_position, self.ctx_init = class_token_position, ctx_init
        self.context_length = context
        # Token buffers are derived from the frozen model: kept out of the state dict (as CoOp drops them).
        self.register_buffer("tokens", tokens.to(device), persistent=False)
        self.register_buffer("eot", torch.tensor([len(r) - 1 for r in rows], device=device), persistent=False)
        self.register_buffer("token_embeds", embeds, persistent=False)
        self.register_buffer("pad_embed", pad, persistent=False)
        cr = torch.arange(C).repeat_interleave(n_ctx)
        self.register_buffer("ctx_rows", cr.to(device), persistent=False)
        self.register_buffer(
            "ctx_cols", torch.tensor(sum(ctx_cols, []), dtype=torch.long, device=device), persistent=False
        )
        nr = torch.cat([torch.full((len(p),), c) for c, p in enumerate(name_cols)])
        self.register_buffer("name_rows", nr.to(device), persistent=False)
        self.register_buffer(
            "name_cols", torch.tensor(sum(name_cols, []), dtype=torch.long, device=device), persistent=False
        )

        if ctx_init is not None:
            # [n_ctx, D]: CoOp's token_embedding(tokenize(ctx_init))[0, 1 : 1 + n_ctx]
            with torch.no_grad():
                init = model.token_embedding(torch.tensor(pt.ctx_ids, device=device)).float()
            ctx = init.unsqueeze(0).repeat(C, 1, 1) if csc else init
        else:
            gen = generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)
            shape = (C, n_ctx, D) if csc else (n_ctx, D)
            ctx = (torch.randn(shape, generator=gen, device=gen.device) * CTX_INIT_STD).to(device)
        if learn in ("ctx", "full") and n_ctx > 0:
            self.ctx = nn.Parameter(ctx)
        else:  # fixed context (CLS-Tuning) or none (Ctx-0): saved, since a random one cannot be rebuilt
            self.register_buffer("ctx", ctx)
        if learn in ("cls", "full"):
            self.name_embeds = nn.Parameter(embeds[self.name_rows, self.name_cols].clone())
        else:
            self.name_embeds = None

    @property
    def n_cls(self) -> int:
        return len(self.classnames)

    @property
    def shared_prefix(self) -> int:
        """Leading positions equal for every class: [SOS][ctx] with a unified context at the end
        (0 where only SOS is shared: not worth a second attention call)."""
        shared = self.class_token_position == "end" and not self.csc and self.n_ctx > 0
        return 1 + self.n_ctx if shared else 0

    def forward(self, full_length: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.token_embeds
        C, _, D = x.shape
        if self.n_ctx > 0:
            ctx = self.ctx if self.csc else self.ctx.unsqueeze(0).expand(C, -1, -1)
            x = x.index_put((self.ctx_rows, self.ctx_cols), ctx.reshape(-1, D))
        if self.name_embeds is not None:
            x = x.index_put((self.name_rows, self.name_cols), self.name_embeds)
        if full_length and x.shape[1] < self.context_length:
            pad = self.pad_embed.expand(C, self.context_length - x.shape[1], D)
            x = torch.cat([x, pad], dim=1)
        return x, self.eot


class PromptCLIP(nn.Module):
    """Frozen CLIP + a PromptLearner: the method module of Prompt Tuning, CLS- and Full-Prompt-Tuning.

    Logits are CLIP's: ``exp(logit_scale) * cos(image, class)`` with CLIP's logit scale, frozen
    (100 for OpenAI's weights), as CoOp does. The frozen model is held by reference and kept out
    of ``parameters()`` and ``state_dict()``: those hold only the prompt.
    """

    def __init__(
        self,
        bundle: CLIPBundle,
        classnames: Sequence[str],
        n_ctx: int = 16,
        ctx_init: str | None = None,
        csc: bool = False,
        class_token_position: str = "end",
        learn: str = "ctx",
        generator: torch.Generator | None = None,
        share_prefix: bool = True,
    ):
        super().__init__()
        self.prompt_learner = PromptLearner(
            bundle,
            classnames,
            n_ctx=n_ctx,
            ctx_init=ctx_init,
            csc=csc,
            class_token_position=class_token_position,
            learn=learn,
            generator=generator,
        )
        # Not registered (plain __dict__ entry): the text tower is frozen and shared with the bundle.
        self.__dict__["text_encoder"] = TextEncoder(bundle.model)
        self.register_buffer(
            "logit_scale", bundle.model.logit_scale.detach().float().exp().reshape(()), persistent=False
        )
        self.share_prefix = share_prefix

    def class_embeddings(self, full_length: bool = False) -> torch.Tensor:
        """Unit-norm class embeddings [C, E] from the current prompts (with grad if enabled)."""
        embeds, eot = self.prompt_learner(full_length=full_length)
        shared = self.prompt_learner.shared_prefix if (self.share_prefix and not full_length) else 0
        return F.normalize(self.text_encoder(embeds, eot, shared_prefix=shared).float(), dim=-1)

    def forward(
        self, image_features: torch.Tensor, class_embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        if class_embeddings is None:
            class_embeddings = self.class_embeddings()
        image = F.normalize(image_features.float(), dim=-1)
        return self.logit_scale * image @ F.normalize(class_embeddings.float(), dim=-1).t()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def random_prompt_classifier(
    bundle: CLIPBundle,
    classnames: Sequence[str],
    n_ctx: int = 16,
    generator: torch.Generator | None = None,
    class_token_position: str = "end",
    precision: str | None = None,
) -> torch.Tensor:
    """Appendix B: unit-norm class embeddings [C, E] from a freshly drawn N(0, 0.02) context, no training."""
    m = PromptCLIP(
        bundle, classnames, n_ctx=n_ctx, generator=generator, class_token_position=class_token_position
    )
    with torch.no_grad(), autocast(bundle.device, precision or bundle.precision):
        return m.class_embeddings().float()
