"""Call-state source tests share the AMI server fixtures."""

from __future__ import annotations

from tests.ami_fixtures import ami_running, ami_server  # noqa: F401 - the AMI server fixtures
