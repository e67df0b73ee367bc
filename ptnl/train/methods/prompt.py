"""Prompt tuning: CoOp's prompt learner and the paper's variants (Tables 1 and 2).

``prompt`` learns the shared context with the class-name tokens fixed (CoOp); ``cls_tuning`` the
class-name token embeddings with the context fixed; ``full_prompt`` both. All train through the
frozen text tower, so runs of one shape train together in one batched text pass (``groupable``).

A run trained on pseudo-labels (an ensemble member, ``ptnl.train.ensemble``) keeps its trained
parameters beside its metrics (``prompt.pt``: the context, a few KB): the ensemble recomputes the
member's test logits from them.
"""

from __future__ import annotations

import io

import torch

from ptnl.data.labels import PSEUDO_KINDS
from ptnl.models import prompts as P
from ptnl.train.methods.base import Method, ModuleFamily

PROMPT_FILE = "prompt.pt"


def trained_state(module) -> dict[str, torch.Tensor]:
    """The module's trained parameters by name (a prompt: its context)."""
    names = {id(p) for p in module.trainable_parameters()}
    return {k: v for k, v in module.named_parameters() if id(v) in names}


def prompt_module(cfg, bundle, dataset, generator, learn: str = "ctx"):
    """CoOp's prompt on ``dataset``'s class names with ``cfg``'s context, learning ``learn``
    (``ctx``, ``cls`` or ``full``): the module of every method that trains or scores a prompt."""
    return P.PromptCLIP(
        bundle,
        dataset.classnames,
        n_ctx=cfg.n_ctx,
        ctx_init=cfg.ctx_init,
        csc=cfg.csc,
        class_token_position=cfg.class_token_position,
        generator=generator,
        learn=learn,
    )


class PromptFamily(ModuleFamily):
    work = "text"
    name = "prompt"
    groupable = True

    def check(self, method, cfg):
        if method.name == "prompt" and cfg.n_ctx == 0:
            raise ValueError(
                "method='prompt' with n_ctx=0 has nothing to learn (the prompt is the class name alone): "
                "run the paper's Ctx-0 as method='random_prompt' with n_ctx=0, an untrained evaluation"
            )

    def build(self, method, cfg, bundle, dataset, generator):
        return prompt_module(cfg, bundle, dataset, generator, **method.options)

    def files(self, run, module):
        if run.cfg.noise_kind not in PSEUDO_KINDS:
            return {}
        buf = io.BytesIO()
        torch.save({k: v.detach().float().cpu() for k, v in trained_state(module).items()}, buf)
        return {PROMPT_FILE: buf.getvalue()}


FAMILY = PromptFamily()
# Colours: seaborn's "colorblind" palette, stable across every figure.
METHODS = (
    Method(
        "prompt",
        "prompt tuning",
        FAMILY,
        "CoOp: learn the shared context, class-name tokens fixed",
        options={"learn": "ctx"},
        color="#0173b2",
        losses={"gce": "#56b4e9", "sce": None, "nce_rce": None},
        short="CoOp",
    ),
    Method(
        "cls_tuning",
        "CLS-Tuning",
        FAMILY,
        "learn the class-name token embeddings, context fixed (Table 2)",
        options={"learn": "cls"},
        color="#029e73",
    ),
    Method(
        "full_prompt",
        "Full-Prompt-Tuning",
        FAMILY,
        "learn context and class-name tokens (Table 2)",
        options={"learn": "full"},
        color="#fbafe4",
    ),
)
