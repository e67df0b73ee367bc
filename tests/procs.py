"""Other processes on one run store, as the store's claim tests need them."""

import json
import subprocess
import sys

from ptnl.train import store


def claim_as(cfg, experiment, pid, host=None):
    """A claim file as another process would have written it."""
    p = store.claim_path(cfg, experiment)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"pid": pid, "host": host or store.HOST, "started": 0.0}))
    return p


def dead_pid():
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
