"""The toy CLIPs' own tools (``python -m ptnl toy ...``): ``pretrain`` trains one (``snapshots``, the
lab's early checkpoints of it), ``calibrate`` sets its temperature, ``sanity`` checks it."""
