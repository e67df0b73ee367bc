"""Untrained methods: zero-shot CLIP (the hand-crafted prompt) and CoOp's prompt with a random,
untrained context (the paper's Ctx-0 with ``n_ctx=0``). They read no labels: the sections run
them once, at noise rate 0 with CE, zero-shot once per dataset (seed 1)."""

from __future__ import annotations

from ptnl.models import heads
from ptnl.train import features as F
from ptnl.train.loop import accuracy
from ptnl.train.methods.base import Family, Method, init_module
from ptnl.train.methods.prompt import prompt_module


class UntrainedFamily(Family):
    name = "untrained"
    uses_labels = False

    def policy(self, method, fields):
        fields = super().policy(method, fields)
        fields.update(noise_rate=0.0, loss="ce")
        fields.pop("loss_params", None)
        if method.name == "zeroshot":  # no random stream at all: one run per dataset
            fields["seed"] = 1
        return fields

    def build(self, method, cfg, bundle, dataset, generator):
        if method.options.get("module") == "zeroshot":
            return heads.ZeroShotCLIP(bundle, dataset.prompts())
        return prompt_module(cfg, bundle, dataset, generator, **method.options)

    def train(self, method, runs, progress=False):
        out = []
        for r in runs:
            module = init_module(method, r.cfg, r.bundle, r.dataset, r.device)
            feats = F.test_features(r, progress)
            out.append({"test_acc": accuracy(module, feats, r.dataset.test.labels, r.device, r.precision)})
        return out, [{} for _ in runs]


FAMILY = UntrainedFamily()
METHODS = (
    Method(
        "zeroshot",
        "zero-shot",
        FAMILY,
        "hand-crafted prompt, no training",
        options={"module": "zeroshot"},
        color="#000000",
    ),
    Method(
        "random_prompt",
        "random prompt",
        FAMILY,
        "CoOp prompt with random (untrained) context",
        options={"learn": "ctx"},
        color="#7f7f7f",
    ),
)
