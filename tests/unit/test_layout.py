"""The package boundaries of docs/architecture.md, checked on the source: one package per process.

A service's package imports core and itself, never another service, so each process can be read,
changed and deployed on its own; core imports no service; nothing shipped imports the dev tools.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.core.settings import PROJECT_ROOT

SERVICES = PROJECT_ROOT / "services"
# ...and the api's command-line client, which reaches the platform over HTTP only.
PROCESSES = ("api", "conductor", "encoder", "projector", "watchdog", "notifier", "client")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, absolute names (relative imports are resolved against `path`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return found


def owner(module: str) -> str | None:
    """The service package a module belongs to (`services.<name>`), or None outside services."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" else None


def sources(package: str) -> list[Path]:
    return sorted((SERVICES / package).rglob("*.py"))


@pytest.mark.parametrize("process", PROCESSES)
def test_a_service_imports_only_core_and_itself(process: str) -> None:
    crossing = {
        f"{path.relative_to(PROJECT_ROOT)} imports {module}"
        for path in sources(process)
        for module in imported_modules(path)
        if owner(module) not in (None, "core", process)
    }
    assert crossing == set()


def test_core_imports_no_service() -> None:
    crossing = {
        f"{path.relative_to(PROJECT_ROOT)} imports {module}"
        for path in sources("core")
        for module in imported_modules(path)
        if owner(module) not in (None, "core")
    }
    assert crossing == set()


def test_nothing_shipped_imports_the_dev_tools_or_tests() -> None:
    crossing = {
        f"{path.relative_to(PROJECT_ROOT)} imports {module}"
        for path in sorted(SERVICES.rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in {"devtools", "tests", "bench", "moto"}
    }
    assert crossing == set()
