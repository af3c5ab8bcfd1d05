"""The exit codes of every `presence-bridge` command: the one table (docs/cli.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # A check failed, the PBX refused a profile again, an account failed, another clock leads.
    FAILED = 1
    # Unusable input: the configuration, an unknown tenant, account or user, bad arguments
    # (click's own usage errors exit 2 as well).
    USAGE = 2
    # Something needed is unreachable (Redis, the identity platform, Graph, the PBX): worth
    # trying again later.
    UNAVAILABLE = 3
