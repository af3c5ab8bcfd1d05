"""One error tree; each class says how a handler should treat it."""

from __future__ import annotations

from pydantic import ValidationError


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    status_code: int = 500
    transient: bool = False
    retry_after: float | None = None  # seconds the peer asked us to wait (429 / 503)
    # The peer is backing off (`core.state.backoff`): retrying after `retry_after` is no
    # attempt lost, however long the peer takes to come back.
    backing_off: bool = False


class ConfigError(BridgeError):
    """The configuration cannot be used; every problem is listed with its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"configuration has {len(self.problems)} problem(s):\n{lines}"


def options_error(exc: ValidationError, prefix: str) -> ConfigError:
    """Every problem of an options table, each under its key path (`pbx.options.port: ...`)."""
    return ConfigError(
        [f"{prefix}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    )


class TransientError(BridgeError):
    """Worth retrying: a timeout, a 5xx, a 429, a connection refused."""

    status_code = 503
    transient = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GraphError(BridgeError):
    """Microsoft Graph (or the identity platform) answered with an error."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        transient: bool | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.transient = (status == 429 or status >= 500) if transient is None else transient
        super().__init__(f"Graph {status} {code}: {message}")


class PbxError(BridgeError):
    """A PBX adapter could not apply or read a profile."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.status = status
