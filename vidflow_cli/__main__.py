"""Entry point of the `vidflow` console script and `python -m vidflow_cli`."""

from __future__ import annotations

import sys

from vidflow_cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
