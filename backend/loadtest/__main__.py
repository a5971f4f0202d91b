"""`python -m backend.loadtest …` = `python -m loadtest …` (the load tester's old name)."""

import sys

from loadtest.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
