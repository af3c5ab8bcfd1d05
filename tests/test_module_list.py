"""docs/architecture.md lists every module of core/, workers/ and subscriptions/ with its job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "workers", "subscriptions")
# Listed as one row each: the record modules have the Redis key table, status its own section.
LISTED_AS_A_WHOLE = ("core/state/", "core/status/")
SKIPPED = {"__init__.py"}


def listed_modules(package: str) -> set[str]:
    """The backticked names in the table under the package's heading."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    found = re.search(rf"^### `{package}/`.*?$(.*?)(?=^#)", text, re.MULTILINE | re.DOTALL)
    assert found is not None, f"docs/architecture.md has no section for {package}/"
    return set(re.findall(r"`([\w/]+(?:\.py|/))`", found.group(1)))


def modules(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if path.name in SKIPPED or relative.startswith(LISTED_AS_A_WHOLE):
            continue
        names.add(path.relative_to(ROOT / package).as_posix())
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_listed_with_its_job(package: str) -> None:
    assert modules(package) - listed_modules(package) == set()
