"""Zero-shot prompt templates: the hand-crafted one per dataset, and CLIP's small ensemble.

``TEMPLATES`` is CoOp's ``CUSTOM_TEMPLATES`` (identical in CoOp ``zsclip.py``, UPL and PTNL),
keyed by our dataset names. UPL/PTNL's zero-shot pass uses it alone.

``SIMPLE_TEMPLATES`` are the 7 templates CLIP selected for ImageNet (CoOp's
``IMAGENET_TEMPLATES_SELECT``, open_clip's ``SIMPLE_IMAGENET_TEMPLATES``). CoOp's
``ZeroshotCLIP2`` ensembles them, plus the dataset's own template for every dataset but ImageNet,
by averaging the L2-normalised text features and normalising again; ``ensemble_templates``
returns that list (fresh each call: CoOp's ``self.templates +=`` grew a class attribute).

``NOISY_TEMPLATES`` holds the real-noise benchmarks' (``ptnl.data.noisy_sets``), apart from
``TEMPLATES`` because that one is CoOp's table, one per dataset of ``ptnl.data.specs``:
Food-101N's is Food101's (the same 101 classes), CIFAR's is CoOp's generic "a photo of a {}."
(CoOp has no CIFAR config).
"""

from __future__ import annotations

TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "Flowers102": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DTD": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
}

NOISY_TEMPLATES = {
    "Food101N": TEMPLATES["Food101"],
    **{
        name: "a photo of a {}."
        for name in (
            "CIFAR10N-aggre",
            "CIFAR10N-worse",
            "CIFAR10N-random1",
            "CIFAR10N-random2",
            "CIFAR10N-random3",
            "CIFAR10N-clean",
            "CIFAR100N",
            "CIFAR100N-clean",
        )
    },
}

SIMPLE_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def ensemble_templates(dataset: str) -> list[str]:
    """CoOp's ZeroshotCLIP2 ensemble for ``dataset`` (a name in TEMPLATES or NOISY_TEMPLATES)."""
    known = {**TEMPLATES, **NOISY_TEMPLATES}
    if dataset not in known:
        raise ValueError(f"no template for {dataset!r}; known datasets: {', '.join(known)}")
    extra = [] if dataset == "ImageNet" else [known[dataset]]
    return [*SIMPLE_TEMPLATES, *extra]
