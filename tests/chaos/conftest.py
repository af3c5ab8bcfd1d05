"""Chaos scenarios: the whole bridge under load while Redis, a worker, the clock, the PBX or
Graph fails, each ending with the convergence check (`tests/chaos/site.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.site import ChaosSite

SiteFactory = Callable[..., ChaosSite]


@pytest.fixture
def chaos_site(tmp_path: Path) -> Iterator[SiteFactory]:
    """`chaos_site(workers=1, clocks=1, env=None)`: a started site, stopped after the test."""
    made: list[ChaosSite] = []

    def start(*, workers: int = 1, clocks: int = 1, env: dict[str, str] | None = None) -> ChaosSite:
        site = ChaosSite(tmp_path, env=env)
        made.append(site)
        return site.start(workers=workers, clocks=clocks)

    yield start
    for site in made:
        site.close()
