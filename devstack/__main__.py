"""`make run`: start everything on loopback, print how to use it, stop cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from devstack.stack import run_stack

BASE_DIR = Path(os.environ.get("VIDFLOW_DEVSTACK_DIR", Path.cwd() / ".devstack"))


def main() -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print("Starting PostgreSQL, NATS JetStream, S3, the provider simulator and five services...", flush=True)
    try:
        with run_stack(BASE_DIR) as stack:
            print(
                "\nVidflow is up.\n"
                f"  Gateway:     {stack.gateway_url}/v1\n"
                f"  Dev API key: {stack.dev_api_key}\n"
                f"  Logs:        {stack.log_dir}\n\n"
                "Try it with the openai SDK:\n"
                f'  client = OpenAI(base_url="{stack.gateway_url}/v1", api_key="{stack.dev_api_key}")\n'
                '  client.videos.create_and_poll(model="sora-2", prompt="A cat at a piano", seconds="4")\n\n'
                "Ctrl-C stops everything.",
                flush=True,
            )
            while not stop.wait(0.5):
                if dead := stack.exited():
                    print(f"{', '.join(dead)} exited unexpectedly; see {stack.log_dir}", file=sys.stderr)
                    return 1
        print("Stopped.", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"make run failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
