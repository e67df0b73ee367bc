"""ptnl: prompt tuning of CLIP under noisy labels, a companion to the paper
"Why Is Prompt Tuning for Vision-Language Models Robust to Noisy Labels?".

The package is in layers that import only downward (docs/architecture.md says what each module
owns; tests/test_layers.py checks the layering):

- ``ptnl.core``     paths, argument checks, atomic files
- ``ptnl.data``     datasets (the toy world and its tasks among them), few-shot draws, templates, label noise
- ``ptnl.models``   CLIP through open_clip and its weights (the tiny toy CLIPs too), prompt learners, heads, losses
- ``ptnl.train``    the method registry, RunConfig, features, the engine, the run store, sweeps, UPL
- ``ptnl.report``   statistics, tables, claims, the paper's numbers, figures
- ``ptnl.sections`` one module per paper section (one per notebook)
- ``ptnl.tools``    the command line (``python -m ptnl``), the notebook runner, the speed benchmark, the toy CLIPs' pretraining
"""

__version__ = "0.1.0"

# Before anything computes: the kernels every number is made with (ptnl.core.numerics).
from ptnl.core import numerics as _numerics

_numerics.apply()
