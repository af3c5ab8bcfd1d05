"""The lock files agree with pyproject.toml: regenerate them with `make lock` when not."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_VIA = re.compile(r"^#\s+(?:via\s+)?(\S.*)$")


@dataclass
class Pin:
    version: Version
    hashes: int = 0
    via: list[str] = field(default_factory=list)


def read_lock(path: Path) -> dict[str, Pin]:
    """Name -> pin, with its hash count and what pulled it in (pip-compile's annotations)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in path.read_text().splitlines():
        pin = _PIN.match(line)
        if pin:
            current = pins[canonicalize_name(pin[1])] = Pin(Version(pin[2].rstrip("\\ ")))
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current.hashes += 1
        elif current is not None and (via := _VIA.match(line.strip())) and via[1] != "via":
            current.via.append(via[1])
    return pins


def declared(with_dev: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    if with_dev:
        found += [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    return found


LOCKS = [pytest.param(RUNTIME_LOCK, False, id="runtime"), pytest.param(DEV_LOCK, True, id="dev")]


@pytest.mark.parametrize(("lock", "with_dev"), LOCKS)
def test_every_declared_dependency_is_pinned_at_a_version_it_allows(
    lock: Path, with_dev: bool
) -> None:
    pins = read_lock(lock)
    wrong = []
    for requirement in declared(with_dev):
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin.version, prereleases=True):
            wrong.append(f"{requirement}: {pin.version if pin else 'not pinned'}")
    assert not wrong, f"{lock.name} disagrees with pyproject.toml (run `make lock`): {wrong}"


@pytest.mark.parametrize(("lock", "with_dev"), LOCKS)
def test_the_lock_pins_no_direct_dependency_that_pyproject_dropped(
    lock: Path, with_dev: bool
) -> None:
    names = {canonicalize_name(r.name) for r in declared(with_dev)}
    direct = {
        name
        for name, pin in read_lock(lock).items()
        if any(via.startswith("presence-bridge") for via in pin.via)
    }
    assert direct == names, f"{lock.name}: run `make lock` ({sorted(direct ^ names)})"


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_carries_a_hash(lock: Path) -> None:
    assert [name for name, pin in read_lock(lock).items() if not pin.hashes] == []


def test_production_runs_the_versions_ci_tested() -> None:
    dev = read_lock(DEV_LOCK)
    runtime = read_lock(RUNTIME_LOCK)
    assert {n: p.version for n, p in runtime.items() if dev[n].version != p.version} == {}
