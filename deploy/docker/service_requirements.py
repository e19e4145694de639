"""Pinned requirements for one container image, read from pyproject.toml, where every version lives.

    python service_requirements.py IMAGE      # the runtime dependencies of that image
    python service_requirements.py --protoc   # what the build stage needs to generate the protobuf code

Every image gets the project's runtime dependencies except the media libraries, which only the images
that decode pictures or video carry (tests/deploy checks this against each service's imports).
Standard library only: it runs in the build stage before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

IMAGES = ("gateway", "jobs", "moderation", "renderer", "billing", "simulator")
# Distribution -> the images that import it. Any dependency not named here goes into every image.
ONLY_IN = {
    "av": frozenset({"renderer", "simulator"}),
    "imageio-ffmpeg": frozenset({"renderer", "simulator"}),
    "pillow": frozenset({"moderation", "renderer", "simulator"}),
}
PROTOC_TOOLS = ("grpcio-tools", "protobuf")


def distribution(requirement: str) -> str:
    """`sqlalchemy[asyncio]==2.1.9` -> `sqlalchemy` (normalised as PyPI does)."""
    name = re.split(r"[\[=<>!~;\s]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(requirements: list[str]) -> list[str]:
    loose = [requirement for requirement in requirements if "==" not in requirement]
    if loose:
        raise SystemExit(f"pyproject.toml: not pinned with ==: {', '.join(loose)}")
    return requirements


def image_requirements(pyproject: dict, image: str) -> list[str]:
    if image not in IMAGES:
        raise SystemExit(f"unknown image {image!r}; one of {', '.join(IMAGES)}")
    return [
        requirement
        for requirement in _pinned(pyproject["project"]["dependencies"])
        if image in ONLY_IN.get(distribution(requirement), IMAGES)
    ]


def protoc_requirements(pyproject: dict) -> list[str]:
    """grpcio-tools from the dev extra, with the runtime's protobuf so the generated code matches it."""
    candidates = _pinned(
        pyproject["project"]["dependencies"] + pyproject["project"]["optional-dependencies"]["dev"]
    )
    chosen = [requirement for requirement in candidates if distribution(requirement) in PROTOC_TOOLS]
    missing = set(PROTOC_TOOLS) - {distribution(requirement) for requirement in chosen}
    if missing:
        raise SystemExit(f"pyproject.toml: no pin for {', '.join(sorted(missing))}")
    return chosen


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("image", nargs="?", choices=IMAGES)
    target.add_argument("--protoc", action="store_true")
    args = parser.parse_args(argv)
    pyproject = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))
    lines = protoc_requirements(pyproject) if args.protoc else image_requirements(pyproject, args.image)
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
