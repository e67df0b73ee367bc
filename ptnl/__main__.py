"""``python -m ptnl``: the one command line (``ptnl.tools.cli``)."""

import signal
import sys

from ptnl.tools.cli import main, terminate

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, terminate)
    sys.exit(main())
