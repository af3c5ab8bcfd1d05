"""Fixtures shared by the `http` adapter tests: the local PBX server and an adapter builder."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.settings import PbxSettings
from tests.ami_fixtures import ami_running, ami_server  # noqa: F401 - the AMI server fixtures
from tests.pbx_server import PbxServer
from workers.pbx.http import HttpAdapter
from workers.pbx.http_options import validate_options
from workers.pbx.http_tokens import TokenShare, clear_token_cache

HttpAdapterBuilder = Callable[..., HttpAdapter]


@pytest.fixture(scope="module")
def running_server() -> Iterator[PbxServer]:
    with PbxServer() as running:
        yield running


@pytest.fixture
def server(running_server: PbxServer) -> PbxServer:
    running_server.reset()
    return running_server


@pytest.fixture
def build_http_adapter() -> Iterator[HttpAdapterBuilder]:
    """Validates settings for tenant "acme" into an adapter; all are closed after the test.

    With a TokenShare, each adapter stands for a worker process sharing OAuth2 tokens via Redis.
    """
    made: list[HttpAdapter] = []
    # OAuth2 tokens are cached per process: start and end every test without one.
    clear_token_cache()

    def build(
        settings: PbxSettings,
        clock: Callable[[], float] | None = None,
        share: TokenShare | None = None,
    ) -> HttpAdapter:
        validated = validate_options(settings, "acme")
        adapter = (
            HttpAdapter(validated, settings.secret, share=share)
            if clock is None
            else HttpAdapter(validated, settings.secret, clock=clock, share=share)
        )
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()
    clear_token_cache()
