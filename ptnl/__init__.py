"""ptnl: prompt tuning of CLIP under noisy labels, a companion to the paper
"Why Is Prompt Tuning for Vision-Language Models Robust to Noisy Labels?".

The package is a set of small modules of plain functions:

- ``ptnl.core.paths``     where results, caches, figures, data and weights live
- ``ptnl.models.clip``      CLIP backbones through open_clip (real and toy)
- ``ptnl.models.prompts``   CoOp prompt learners and the paper's variants
- ``ptnl.models.heads`` Classifier-R/C, TEnc-FT, linear probe, visual fine-tuning
- ``ptnl.models.losses``    CE, GCE, MAE, SCE, NCE+RCE
- ``ptnl.data.noise``     symmetric, pair and confusion label noise
- ``ptnl.data``      datasets, few-shot splits, templates
- ``ptnl.toy``       the procedurally generated world and its tiny CLIPs
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy re-exports keep `import ptnl` cheap (no torch import until a model is asked for).
    if name == "load_clip":
        from ptnl.models.clip import load_clip

        return load_clip
    raise AttributeError(f"module 'ptnl' has no attribute {name!r}")
