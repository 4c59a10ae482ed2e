"""``python -m assets.demo`` (what ``make demo`` runs)."""

import sys

from assets.demo import main

if __name__ == "__main__":
    sys.exit(main())
