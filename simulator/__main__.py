"""`python -m simulator`: serve the Videos API until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio

from servicekit.logging import configure_logging

from simulator.app import serve
from simulator.config import Settings


def main() -> None:
    settings = Settings.from_env()
    configure_logging("simulator")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
