"""Read the images' Dockerfiles and .dockerignore without a Docker engine (none runs here or in CI)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.rendered import REPO

DOCKER = REPO / "deploy" / "docker"
IMAGES = ("gateway", "jobs", "moderation", "renderer", "billing", "simulator")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    arguments: str


@dataclass
class Stage:
    base: str
    alias: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [item.arguments for item in self.instructions if item.keyword == keyword]

    def environment(self) -> dict[str, str]:
        """ENV key=value pairs, later ones winning (no variable expansion but `$PATH` left as is)."""
        values: dict[str, str] = {}
        for arguments in self.all("ENV"):
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                values[key] = value
        return values


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    stages: list[Stage]

    @property
    def runtime(self) -> Stage:
        return self.stages[-1]

    def entrypoint(self) -> list[str]:
        (entrypoint,) = self.runtime.all("ENTRYPOINT")
        command = json.loads(entrypoint)  # exec form only: signals must reach python, not a shell
        assert isinstance(command, list), f"{self.path}: ENTRYPOINT must be in exec form"
        return [str(part) for part in command]


def dockerfile(image: str) -> Dockerfile:
    path = DOCKER / f"{image}.Dockerfile"
    stages: list[Stage] = []
    for instruction in _instructions(path.read_text(encoding="utf-8")):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=words[0], alias=alias))
        else:
            assert stages, f"{path}: {instruction.keyword} before FROM"
            stages[-1].instructions.append(instruction)
    return Dockerfile(path, stages)


def _instructions(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "dangling line continuation"
    return instructions


def dockerignore_excludes(path: str, patterns: list[str] | None = None) -> bool:
    """Whether the build context leaves `path` out: last matching pattern wins, `!` re-includes, and a
    pattern matching a parent directory matches everything under it (Docker's rules, simplified)."""
    if patterns is None:
        patterns = [
            line.strip()
            for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    parts = path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        expression = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(expression.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            out += ".*"
            index += 2
        elif pattern[index] == "*":
            out += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            out += "[^/]"
            index += 1
        else:
            out += re.escape(pattern[index])
            index += 1
    return re.compile(out)
