"""deploy/container: the image and the compose file run the Procfile's processes on a Redis
that persists. Read here, not run: this machine has no container runtime (docs/deploy.md)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CONTAINER / "compose.yaml").read_text())
    return loaded


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.partition(":") for line in lines if line.strip())
    return {name.strip(): command.strip() for name, _, command in entries}


def test_compose_runs_every_procfile_process_with_its_command() -> None:
    services = compose()["services"]
    commands = {
        name: " ".join(services[name]["command"]) for name in procfile() if name in services
    }
    assert commands == procfile()


def test_compose_redis_keeps_an_append_only_file_in_a_volume() -> None:
    redis = compose()["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_every_bridge_service_points_at_the_compose_redis() -> None:
    services = compose()["services"]
    urls = {services[name]["environment"]["PRESENCE_BRIDGE_REDIS_URL"] for name in procfile()}
    assert urls == {"redis://redis:6379/0"}


def test_the_image_installs_the_lock_and_every_package_of_the_bridge() -> None:
    recipe = (CONTAINER / "Containerfile").read_text()
    assert "pip install --require-hashes -r /src/requirements.lock" in recipe
    assert "pip install --no-deps /src" in recipe
    included = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {p.rstrip("*") for p in included["packages"]["find"]["include"]} - {"emulator"}
    assert {p for p in packages if f"COPY {p} /src/{p}" not in recipe} == set()
