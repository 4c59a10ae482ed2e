"""``python -m batch_workflows.cli``: the same command line as ``batch-workflows``."""

import sys

from batch_workflows.cli import main

if __name__ == "__main__":
    sys.exit(main())
