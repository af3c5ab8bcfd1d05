"""The browser tests use the end-to-end wiring of the bridge."""

from tests.e2e.conftest import bridge_factory  # noqa: F401
