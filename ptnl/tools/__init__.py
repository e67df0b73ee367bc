"""The top layer: the one CLI (python -m ptnl), the notebook runner, benchmarks, the GPU check, toy-CLIP fidelity."""
