"""What the code itself says: which modules each image imports, which settings each service reads."""

from __future__ import annotations

import ast
import functools
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.deploy.dockerfiles import dockerfile
from tests.deploy.rendered import REPO

OUR_PACKAGES = {"services", "servicekit", "vidflow", "simulator"}
_READERS = {"env_str", "env_int", "env_float", "env_bool"}
_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]{2,}")


# Import roots: the repository (services, simulator), lib/ (servicekit); vidflow is generated in the build.
_ROOTS = {"services": REPO, "simulator": REPO, "servicekit": REPO / "lib"}


def image_sources(image: str) -> tuple[Path, ...]:
    """Repository paths (folders or files) the image's build stage copies into /app: its code."""
    copied: list[Path] = []
    for copy in dockerfile(image).stages[0].all("COPY"):
        *sources, destination = copy.split()
        if destination.startswith("/app/") and not sources[0].startswith("--"):
            copied.extend(Path(source.rstrip("/")) for source in sources)
    return tuple(copied)


def module_file(module: str) -> Path | None:
    """The repository file defining `module` (or, for `pkg.name`, the module `pkg`); None if not ours."""
    parts = module.split(".")
    root = _ROOTS.get(parts[0])
    if root is None:
        return None
    for end in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:end])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate.relative_to(REPO)
    return None


def source_files(folder: Path) -> Iterator[Path]:
    """Shipped Python files: tests and conftest stay out of the images (.dockerignore)."""
    if (REPO / folder).is_file():
        yield REPO / folder
        return
    for path in sorted((REPO / folder).rglob("*.py")):
        relative = path.relative_to(REPO)
        if "tests" in relative.parts or path.name == "conftest.py":
            continue
        yield path


def _trees(folders: tuple[Path, ...]) -> Iterator[tuple[Path, ast.AST]]:
    for folder in folders:
        for path in source_files(folder):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@functools.cache
def imported_modules(folders: tuple[Path, ...]) -> dict[str, Path]:
    """Absolute imports (lazy ones inside functions included) -> a file that makes them.

    `from a.b import c` is recorded as `a.b.c`: `providers` falls back to `a.b` when c is no module.
    """
    found: dict[str, Path] = {}
    for path, tree in _trees(folders):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.setdefault(alias.name, path)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module != "__future__":
                    # `from google.rpc import status_pb2` may name a module inside a namespace package.
                    for alias in node.names:
                        found.setdefault(f"{node.module}.{alias.name}", path)
    return found


def third_party(modules: dict[str, Path]) -> dict[str, Path]:
    return {
        module: path
        for module, path in modules.items()
        if module.split(".")[0] not in OUR_PACKAGES and module.split(".")[0] not in sys.stdlib_module_names
    }


@functools.cache
def _module_owners() -> dict[str, frozenset[str]]:
    """Importable module name -> the installed distributions whose files provide it."""
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = normalise(dist.metadata["Name"])
        for file in dist.files or []:
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] == "..":
                continue
            if file.name == "__init__.py":
                module = ".".join(parts[:-1])
            elif file.suffix == ".py" or file.suffix in {".so", ".pyd"}:
                module = ".".join((*parts[:-1], file.name.split(".")[0]))
            else:
                continue
            owners.setdefault(module, set()).add(name)
    return {module: frozenset(names) for module, names in owners.items()}


def providers(module: str) -> frozenset[str]:
    """Distributions providing `module`, found by its most specific installed package."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        owners = _module_owners().get(".".join(parts[:end]))
        if owners:
            return owners
    return frozenset()


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_closure(requirements: list[str]) -> set[str]:
    """The distributions pip installs for these requirements (as resolved in this venv), extras included."""
    seen: set[tuple[str, str]] = set()
    pending = [Requirement(line) for line in requirements]
    names: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = normalise(requirement.name)
        names.add(name)
        for extra in {"", *requirement.extras}:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for dependency in metadata.requires(name) or []:
                parsed = Requirement(dependency)
                if parsed.marker is None or parsed.marker.evaluate({"extra": extra}):
                    pending.append(parsed)
    return names


@functools.cache
def settings_read(folders: tuple[Path, ...]) -> dict[str, Path]:
    """Environment variables the code reads by a literal name -> a file that reads it.

    `env_str("X")` and friends, `environ.get("X")` / `env.get("X")`, and the moderation service's
    `_json_setting(env, "X", ...)`, which reads X and X_FILE.
    """
    found: dict[str, Path] = {}
    for path, tree in _trees(folders):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            names = [
                arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
            names = [name for name in names if _VARIABLE.fullmatch(name)]
            function = node.func
            if isinstance(function, ast.Name) and function.id in _READERS and names:
                found.setdefault(names[0], path)
            elif isinstance(function, ast.Name) and function.id == "_json_setting" and names:
                found.setdefault(names[0], path)
                found.setdefault(f"{names[0]}_FILE", path)
            elif (
                isinstance(function, ast.Attribute)
                and function.attr == "get"
                and _is_environment(function.value)
                and names
            ):
                found.setdefault(names[0], path)
    return found


def _is_environment(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in {"env", "environ"}
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def writes_temporary_files(folder: Path) -> bool:
    return "tempfile" in imported_modules((folder,))
