"""`python -m kdviewer` is the `kdviewer` command (so `torchrun -m kdviewer` works too)."""

import sys

from kdviewer.cli import main

if __name__ == "__main__":
    sys.exit(main())
