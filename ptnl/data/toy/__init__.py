"""The toy world's data: a procedurally generated image-caption world and its downstream tasks.

It lets every notebook run end to end on a laptop through the same code path as the paper's data:
``ptnl.data.load_dataset("toy-shapes")`` returns a `Dataset`. The tiny CLIPs pretrained on the
world are in ``ptnl.models.toy``, the tools that train and check them in ``ptnl.tools.toy``.

- ``ptnl.data.toy.world``  rendering and captions (frozen: its sha256 is in the toy checkpoints)
- ``ptnl.data.toy.tasks``  the downstream tasks (`load_task`; their names are `TOY_TASKS` here)
"""

from __future__ import annotations

TOY_TASKS = ("toy-shapes", "toy-fine", "toy-textures", "toy-scatter")  # the toy set's four tasks
OBJECTS_CLASS_COUNTS = (8, 16, 32, 64)  # the toy lab's nested family toy-objects-<C> (notebook 09)
# a 64-class diagnostic task, in no notebook by default, and the lab's family (ptnl.data.toy.tasks)
EXTRA_TASKS = ("toy-objects", *(f"toy-objects-{n}" for n in OBJECTS_CLASS_COUNTS))
