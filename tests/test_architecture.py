"""The import direction: webhook/, workers/, subscriptions/ -> core/; never the emulator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "core": {"webhook", "workers", "subscriptions", "emulator", "cli"},
    "webhook": {"workers", "subscriptions", "emulator", "cli"},
    "workers": {"webhook", "subscriptions", "emulator", "cli"},
    "subscriptions": {"webhook", "workers", "emulator", "cli"},
    # The operator CLI is the one composition root: it may use every package but the emulator.
    "cli": {"emulator"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_in_the_allowed_direction(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from workers.jobs import x\nimport subscriptions.clock\n")
    assert imported_packages(sample) == {"workers", "subscriptions"}
