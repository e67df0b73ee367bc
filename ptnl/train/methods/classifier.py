"""Classifier tuning (Table 1): a linear head on the frozen image features, trained by SGD with
the prompt-tuning recipe, from a random or from CLIP's text-embedding initialisation."""

from __future__ import annotations

from ptnl.models import heads
from ptnl.train.methods.base import Method, ModuleFamily


class ClassifierFamily(ModuleFamily):
    work = "head"
    name = "classifier"

    def build(self, method, cfg, bundle, dataset, generator):
        return heads.LinearHead(bundle, dataset.prompts(), generator=generator, **method.options)


FAMILY = ClassifierFamily()
METHODS = (
    Method(
        "classifier_r",
        "Classifier-R",
        FAMILY,
        "linear head on image features, random init (Table 1)",
        options={"init": "random", "normalize_weight": True},
        color="#cc78bc",
        losses={"gce": None},
    ),
    Method(
        "classifier_r_free",
        "Classifier-R (free-norm rows)",
        FAMILY,
        'Classifier-R with free-norm rows: "learned without constraints", read literally',
        options={"init": "random", "normalize_weight": False},
        color="#8c4f80",
    ),
    Method(
        "classifier_c",
        "Classifier-C",
        FAMILY,
        "linear head initialised from the hand-crafted prompt's text embeddings",
        options={"init": "clip"},
        color="#ca9161",
    ),
)
