"""`/healthz` names the version that runs, the one pyproject.toml states."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def test_healthz_names_the_version_pyproject_states(web: httpx.Client) -> None:
    stated = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert web.get("/healthz").json()["version"] == stated
