"""Shared fixtures: a real Redis server, a dedicated DB that must start empty."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, settings

from emulator.harness.kamailio import KamailioServer
from emulator.harness.redis_server import RedisServer

# Property tests: the same examples on every run (derandomized, no example database), so CI
# is deterministic; bounded, and no deadline (a loaded CI machine is not a failure).
# HYPOTHESIS_PROFILE=explore searches wider and randomly, for a developer hunting bugs.
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TEST_DB = 9


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    url = os.environ.get("PB_TEST_REDIS_URL") or redis_server.url(TEST_DB)
    client = redis.Redis.from_url(url)
    if client.dbsize():
        raise RuntimeError(f"refusing to run tests on a non-empty Redis DB: {url}")
    client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module", name="kamailio")
def kamailio_server() -> Iterator[KamailioServer]:
    """One real Kamailio per test module; a test that stops or reconfigures one builds its own."""
    server = KamailioServer()
    server.start()
    yield server
    server.cleanup()
