"""Zero-shot prompt templates: the hand-crafted one per dataset, and CLIP's small ensemble.

A dataset's own template is declared in its spec (``Spec.template``, ``ptnl.data.specs``);
``template(name)`` returns it. ``TEMPLATES`` is every spec's: CoOp's ``CUSTOM_TEMPLATES``
(identical in CoOp ``zsclip.py``, UPL and PTNL), keyed by our dataset names, a read-only view of
``SPECS`` read at each access (a spec added at run time is in it). UPL/PTNL's zero-shot pass uses
it alone.

``SIMPLE_TEMPLATES`` are the 7 templates CLIP selected for ImageNet (CoOp's
``IMAGENET_TEMPLATES_SELECT``, open_clip's ``SIMPLE_IMAGENET_TEMPLATES``). CoOp's
``ZeroshotCLIP2`` ensembles them, plus the dataset's own template for every dataset but ImageNet,
by averaging the L2-normalised text features and normalising again; ``ensemble_templates``
returns that list (fresh each call: CoOp's ``self.templates +=`` grew a class attribute).

``NOISY_TEMPLATES`` holds the real-noise benchmarks' (``ptnl.data.noisy_sets``; their
``NoisySpec.template``), apart from ``TEMPLATES`` because that one is CoOp's table:
Food-101N's is Food101's (the same 101 classes), CIFAR's is CoOp's generic "a photo of a {}."
(CoOp has no CIFAR config). The toy tasks carry their own (``ptnl.data.toy``).
"""

from __future__ import annotations

from ptnl.data.specs import NOISY_SPECS, SPECS, Column, dataset_names

TEMPLATES = Column(SPECS, "template")
NOISY_TEMPLATES = Column(NOISY_SPECS, "template")

SIMPLE_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def template(dataset: str) -> str:
    """The hand-crafted template of ``dataset`` (a canonical name in TEMPLATES or NOISY_TEMPLATES):
    its spec's."""
    spec = SPECS.get(dataset) or NOISY_SPECS.get(dataset)
    if spec is None:
        raise ValueError(f"no template for {dataset!r}; known datasets: {', '.join(dataset_names())}")
    return spec.template


def ensemble_templates(dataset: str) -> list[str]:
    """CoOp's ZeroshotCLIP2 ensemble for ``dataset`` (a name in TEMPLATES or NOISY_TEMPLATES)."""
    own = template(dataset)
    extra = [] if dataset == "ImageNet" else [own]
    return [*SIMPLE_TEMPLATES, *extra]
