"""What every command shares: settings, Redis, the tenant, output, and failures as exit codes."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import orjson
import redis as redis_lib
import typer
from rich.console import Console
from rich.markup import escape

from cli.exit_codes import ExitCode
from core.errors import BridgeError, ConfigError
from core.graph_tokens import GraphTokens
from core.redis import connect
from core.settings import Settings, TenantSettings, load_settings
from core.status.system import as_json

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


class UsageProblem(Exception):
    """Input the command cannot use (exit 2)."""


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def redacted_url(url: str) -> str:
    """A Redis URL without its password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else "(unparsable URL)"


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(as_json(value), option=orjson.OPT_INDENT_2).decode() + "\n")


def print_config_problems(exc: ConfigError) -> None:
    err.print(f"[red]error:[/red] the configuration has {len(exc.problems)} problem(s):")
    for problem in exc.problems:
        err.print(f"  - {escape(problem)}")


class Session:
    """Settings, Redis and msal for one command; turns known failures into messages and codes."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._redis: redis_lib.Redis | None = None
        self._auth: GraphTokens | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if exc is None or isinstance(exc, typer.Exit | KeyboardInterrupt):
            return
        if isinstance(exc, ConfigError):
            print_config_problems(exc)
            raise typer.Exit(ExitCode.USAGE) from None
        if isinstance(exc, UsageProblem):
            fail(str(exc), ExitCode.USAGE)
        if isinstance(exc, redis_lib.RedisError):
            url = redacted_url(self._settings.process.redis_url) if self._settings else "?"
            fail(f"cannot reach Redis at {url}: {type(exc).__name__}: {exc}", ExitCode.UNAVAILABLE)
        if isinstance(exc, BridgeError):
            fail(str(exc), ExitCode.UNAVAILABLE if exc.transient else ExitCode.FAILED)

    def close(self) -> None:
        if self._auth is not None:
            self._auth.close()
        if self._redis is not None:
            self._redis.close()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def redis(self) -> redis_lib.Redis:
        """A connection that has answered a PING (so a dead Redis fails here, clearly)."""
        if self._redis is None:
            self._redis = connect(self.settings.process.redis_url)
            self._redis.ping()
        return self._redis

    def auth(self) -> GraphTokens:
        if self._auth is None:
            self._auth = GraphTokens(self.settings, self.redis())
        return self._auth

    def tenant(self, name: str) -> TenantSettings:
        tenant = self.settings.tenant(name)
        if tenant is None:
            known = ", ".join(t.name for t in self.settings.tenants) or "none configured"
            raise UsageProblem(f"unknown tenant {name!r} (tenants: {known})")
        return tenant

    def tenants(self, name: str | None) -> list[TenantSettings]:
        if name is not None:
            return [self.tenant(name)]
        if not self.settings.tenants:
            raise UsageProblem("no tenants configured (set PRESENCE_BRIDGE_TENANTS_FILE)")
        return list(self.settings.tenants)

    def verify(self) -> str | bool:
        """What Graph clients trust: the configured CA bundle, else the system's."""
        ca = self.settings.process.ca_bundle
        return str(ca) if ca is not None else True


def ago(seconds: float | None, now: float) -> str:
    if seconds is None:
        return "never"
    return f"{duration(now - seconds)} ago"


def duration(seconds: float) -> str:
    """A short human duration: 45s, 12m 3s, 5h 2m, 3d 4h."""
    sign = "-" if seconds < 0 else ""
    s = int(abs(seconds))
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{sign}{s // 3600}h {s % 3600 // 60}m"
    return f"{sign}{s // 86400}d {s % 86400 // 3600}h"
