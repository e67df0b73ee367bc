"""CoOp prompt learners and the paper's variants (Sections 3 and 4.3, Appendix B).

A prompt is ``[SOS][ctx_1..ctx_n][class name][.][EOT]`` in CLIP's token-embedding space. Its
pieces come from the frozen ``token_embedding``; what is learnable depends on ``learn``:

- ``"ctx"``  CoOp / the paper's "Prompt Tuning": the n_ctx context vectors (names fixed).
- ``"cls"``  CLS-Tuning (Table 2): the class-name token embeddings; the context stays at its init.
- ``"full"`` Full-Prompt-Tuning (Table 2): context and class-name tokens.

``n_ctx=0`` is the paper's Ctx-0 (``[SOS][name][.][EOT]``, nothing to learn with ``learn="ctx"``).
Context init is N(0, 0.02) from ``generator`` (seed 0 if None, never the global RNG), or the
embeddings of the words of ``ctx_init`` ("a photo of a"); then, as in CoOp, n_ctx becomes the
number of tokens of ``ctx_init`` and the ``n_ctx`` argument is ignored. Unlike CoOp, ``csc=True``
with ``ctx_init`` is honoured (each class starts from its own copy of the words) rather than
silently falling back to a shared context.

Class-token positions (``h = n_ctx // 2``), the layouts CoOp builds:

    end     [SOS][ctx_1..ctx_n][name][.][EOT]
    middle  [SOS][ctx_1..ctx_h][name][ctx_h+1..ctx_n][.][EOT]
    front   [SOS][name][ctx_1..ctx_n][.][EOT]

Prompts are stored truncated to the longest one (the text transformer is causal, so the padding
after EOT never matters); with a shared context at ``end`` the ``[SOS][ctx]`` prefix is the same
for all classes and the text encoder computes it once (``TextEncoder(shared_prefix=...)``).

Method-module protocol (used by the engine): ``class_embeddings() -> [C, E]`` unit-norm (runs the
text tower, with grad when training), ``forward(image_features, class_embeddings=None) ->
logits [B, C]`` (reuse class_embeddings across test batches), ``trainable_parameters()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ptnl.clip import CLIPBundle, TextEncoder, autocast

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


class PromptLearner(nn.Module):
    """Builds the C prompts' token embeddings; only the parts named by ``learn`` are parameters.

    ``forward(full_length=False) -> (embeddings [C, L, D], eot [C])`` where ``L`` is the longest
    prompt (``full_length=True`` pads to the context length with the pad token, as CoOp feeds it).
    Buffers: ``tokens`` [C, L] (the token ids; context slots hold the ctx_init words or "X"),
    ``ctx_rows/ctx_cols`` and ``name_rows/name_cols`` (where context and class-name tokens sit).
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
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"class_token_position={class_token_position!r} is not one of {CLASS_TOKEN_POSITIONS}"
            )
        if isinstance(classnames, str) or not len(classnames):
            raise ValueError("classnames must be a non-empty list of strings")
        tok = _tokenizer_parts(bundle)
        context = bundle.context_length
        names = [str(c).replace("_", " ").strip() for c in classnames]
        name_ids = [tok.encode(n) for n in names]
        for c, ids in zip(classnames, name_ids):
            if not ids:
                raise ValueError(f"class name {c!r} has no tokens")
        if ctx_init is not None:
            ctx_ids = tok.encode(ctx_init.strip())
            if not ctx_ids:
                raise ValueError(f"ctx_init={ctx_init!r} has no tokens")
            n_ctx = len(ctx_ids)  # CoOp: the init words decide the context length
        else:
            if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 0:
                raise ValueError(f"n_ctx must be an integer >= 0, got {n_ctx!r}")
            ctx_ids = tok.encode(PLACEHOLDER) * n_ctx
        max_ctx = context - 4  # room for SOS, a one-token name, ".", EOT
        if n_ctx > max_ctx:
            raise ValueError(
                f"n_ctx={n_ctx} does not fit: the context of {bundle.name} is {context} tokens, so n_ctx "
                f"can be at most {max_ctx} (SOS + name + '.' + EOT take the rest)"
            )
        period = tok.encode(".")
        h = n_ctx // 2
        C = len(names)
        rows, ctx_cols, name_cols = [], [], []
        for name, ids in zip(classnames, name_ids):
            total = 1 + n_ctx + len(ids) + len(period) + 1
            if total > context:
                raise ValueError(
                    f"class name {name!r} is {len(ids)} tokens: with n_ctx={n_ctx} its prompt needs {total} "
                    f"positions, more than the context length {context}. Shorten the name to at most "
                    f"{context - n_ctx - len(period) - 2} tokens or use a smaller n_ctx"
                )
            k = len(ids)
            if class_token_position == "end":
                seq = ctx_ids + ids
                cpos, npos = list(range(1, 1 + n_ctx)), list(range(1 + n_ctx, 1 + n_ctx + k))
            elif class_token_position == "middle":
                seq = ctx_ids[:h] + ids + ctx_ids[h:]
                cpos = list(range(1, 1 + h)) + list(range(1 + h + k, 1 + n_ctx + k))
                npos = list(range(1 + h, 1 + h + k))
            else:  # front
                seq = ids + ctx_ids
                cpos, npos = list(range(1 + k, 1 + k + n_ctx)), list(range(1, 1 + k))
            rows.append([tok.sot_token_id] + seq + period + [tok.eot_token_id])
            ctx_cols.append(cpos)
            name_cols.append(npos)
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
            # [n_ctx, D]: the embeddings of the init words (the same for every class)
            init = embeds[0, torch.tensor(ctx_cols[0], device=device)].clone()
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
