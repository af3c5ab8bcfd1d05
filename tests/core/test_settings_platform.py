"""A platform's own PORT and REDIS_URL are used when no PRESENCE_BRIDGE_* setting is given."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import load_settings


def test_without_port_the_web_process_stays_on_loopback() -> None:
    process = load_settings({}).process
    assert (process.host, process.port) == ("127.0.0.1", 8000)


def test_a_platform_port_is_listened_on_from_every_interface() -> None:
    process = load_settings({"PORT": "5123"}).process
    assert (process.host, process.port) == ("0.0.0.0", 5123)  # noqa: S104


def test_presence_bridge_port_wins_over_the_platform_port() -> None:
    process = load_settings({"PORT": "5123", "PRESENCE_BRIDGE_PORT": "8100"}).process
    assert process.port == 8100


def test_presence_bridge_host_wins_over_every_interface() -> None:
    process = load_settings({"PORT": "5123", "PRESENCE_BRIDGE_HOST": "127.0.0.1"}).process
    assert (process.host, process.port) == ("127.0.0.1", 5123)


def test_a_bad_platform_port_is_reported_under_its_own_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"PORT": "99999"})
    assert caught.value.problems == ["PORT: Input should be less than or equal to 65535"]


def test_redis_url_is_used_when_presence_bridge_redis_url_is_unset() -> None:
    assert load_settings({"REDIS_URL": "redis://cache:6380/2"}).process.redis_url == (
        "redis://cache:6380/2"
    )


def test_presence_bridge_redis_url_wins_over_redis_url() -> None:
    env = {"REDIS_URL": "redis://cache:6380/2", "PRESENCE_BRIDGE_REDIS_URL": "redis://own:1/0"}
    assert load_settings(env).process.redis_url == "redis://own:1/0"
