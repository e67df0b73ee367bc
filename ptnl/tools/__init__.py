"""The top layer: the one CLI (python -m ptnl), the notebook runner, the speed benchmark, the GPU check, toy-CLIP fidelity."""
