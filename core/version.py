"""The bridge's version: the installed distribution's, which pyproject.toml states."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("presence-bridge")
except PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "0+unknown"
