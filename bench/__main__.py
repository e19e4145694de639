"""`python -m bench` runs every benchmark; `python -m bench NAME [options]` runs one with its options."""

from __future__ import annotations

import importlib
import sys

from bench import BENCHMARKS


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m bench [NAME [options]]   (NAME --help lists a benchmark's options)")
        print("benchmarks: " + ", ".join(BENCHMARKS))
        return 0
    if argv:
        name, options = argv[0], argv[1:]
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose from: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        selected = [(name, options)]
    else:
        selected = [(name, []) for name in BENCHMARKS]
    status = 0
    for name, options in selected:
        module = importlib.import_module(BENCHMARKS[name])
        status = max(status, int(module.main(options)))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
