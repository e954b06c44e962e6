"""``python -m snn_delays_ext.train`` is the ``snn-delays`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
