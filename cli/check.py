"""`presence-bridge check`: is the configuration usable, and can the bridge reach what it needs?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jwt
import redis as redis_lib
import typer
from rich.markup import escape

from cli.common import Session, err, out, print_config_problems, print_json, redacted_url
from cli.exit_codes import ExitCode
from core.cipher import CacheCipher
from core.errors import ConfigError, GraphError
from core.graph_tokens import GraphTokens, TenantTokens
from core.identity import AuthError
from core.redis import connect
from core.settings import Settings, TenantSettings
from core.status import system as status
from workers.pbx.registry import probe

# Application permissions the app-only token must carry, and what each is for
# (docs/setup-azure.md, section 2).
APP_ROLES = {
    "User.Read.All": "directory import and delta",
    "Presence.ReadWrite.All": "bulk presence reads, the resync sweep, PBX calls into Teams",
}


@dataclass(frozen=True)
class Result:
    tenant: str | None
    check: str
    status: str  # ok, warn, fail, skip
    message: str


Add = Callable[[str, str, str], None]


def _redis(client: redis_lib.Redis, url: str, add: Add) -> bool:
    try:
        version = client.info("server").get("redis_version", "?")
    except redis_lib.RedisError as exc:
        add("redis", "fail", f"cannot reach {redacted_url(url)}: {type(exc).__name__}: {exc}")
        return False
    add("redis", "ok", f"{redacted_url(url)} answers (Redis {version})")
    _persistence(client, add)
    return True


def _persistence(client: redis_lib.Redis, add: Add) -> None:
    """Service-account tokens live only in Redis: a restart without persistence loses them."""
    try:
        config = client.config_get("appendonly") | client.config_get("save")
        aof = _text(config.get("appendonly")) == "yes"
        rdb = bool(_text(config.get("save")).strip())
        how = "CONFIG"
    except redis_lib.ResponseError:  # managed Redis often refuses CONFIG; INFO still tells
        info = client.info("persistence")
        aof = int(info.get("aof_enabled", 0)) == 1
        rdb = int(info.get("rdb_saves", 0)) > 0  # RDB is on if a snapshot was ever taken
        how = "INFO persistence"
    if aof:
        add("persistence", "ok", f"AOF is on ({how})")
    elif rdb:
        add("persistence", "ok", f"RDB snapshots only ({how}): writes since the last snapshot "
                                  "are lost in a crash; AOF is recommended")  # fmt: skip
    else:
        add("persistence", "warn", f"Redis keeps nothing on disk ({how}): a restart loses the "
                                    "service accounts' sign-ins and queued work; turn AOF on "
                                    "(`appendonly yes`, docs/deploy.md)")  # fmt: skip


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _roles(token: str) -> list[str] | None:
    # Read, not verified: Graph verifies its tokens; we only report what they grant.
    claims = jwt.decode(token, options={"verify_signature": False})
    roles = claims.get("roles")
    return [str(r) for r in roles] if isinstance(roles, list) else None


def _denied(exc: GraphError, permission: str) -> str:
    return f"{exc} (the app needs the application permission {permission}, with admin consent)"


def _graph(tenant_auth: TenantTokens, add: Add) -> None:
    try:
        token = tenant_auth.app_token()
    except AuthError as exc:
        add("graph", "fail", f"no app-only token: {exc}")
        return
    roles = _roles(token) or []
    missing = [r for r in APP_ROLES if r not in roles]
    if missing:
        needs = "; ".join(f"{r} ({APP_ROLES[r]})" for r in missing)
        add("permissions", "fail", f"missing application permission(s): {needs}")
    else:
        add("permissions", "ok", f"app-only token grants {', '.join(sorted(roles))}")
    with tenant_auth.graph_client() as graph:
        try:
            page = graph.get("/users", {"$top": "1", "$select": "id"})
        except GraphError as exc:
            detail = _denied(exc, "User.Read.All") if exc.status == 403 else str(exc)
            add("graph", "fail", detail)
            return
        add("graph", "ok", f"{tenant_auth.tenant.graph_base_url} answers GET /users")
        users = page.get("value") or []
        if not users:
            add("presence", "skip", "no users in the directory to read presence of")
            return
        try:
            graph.get_presences_by_user_id([str(users[0]["id"])])
        except GraphError as exc:
            detail = _denied(exc, "Presence.ReadWrite.All") if exc.status == 403 else str(exc)
            add("presence", "fail", detail)
            return
        add("presence", "ok", "getPresencesByUserId answers")


def _accounts(redis: redis_lib.Redis, tenant: TenantSettings, add: Add) -> None:
    if not tenant.service_accounts:
        add("accounts", "warn", "no service_accounts: no subscriptions, every user is polled")
        return
    for view in status.account_views(redis, tenant, []):
        if view.status == "healthy":
            add("account", "ok", f"{view.account} signed in")
            continue
        why = ("never signed in" if view.status == "not_signed_in"
               else f"needs sign-in: {view.reason}")  # fmt: skip
        add("account", "warn", f"{view.account} {why}; run `presence-bridge login --tenant "
                               f"{tenant.name} --account {view.account}`")  # fmt: skip


def run_checks(settings: Settings) -> list[Result]:
    results: list[Result] = []

    def adder(tenant: str | None) -> Add:
        return lambda check, state, message: results.append(Result(tenant, check, state, message))

    add = adder(None)
    client = connect(settings.process.redis_url)
    try:
        redis = client if _redis(client, settings.process.redis_url, add) else None
        _tenants(settings, client, redis, add, adder)
    finally:
        client.close()
    return results


def _tenants(
    settings: Settings,
    client: redis_lib.Redis,
    redis: redis_lib.Redis | None,
    add: Add,
    adder: Callable[[str | None], Add],
) -> None:
    if any(t.service_accounts for t in settings.tenants):
        try:
            CacheCipher(settings.process.cache_key)
            add("cache key", "ok", "PRESENCE_BRIDGE_CACHE_KEY is usable")
        except ConfigError as exc:
            add("cache key", "fail", "; ".join(exc.problems))
    if not settings.tenants:
        add("tenants", "warn", "no tenants file: nothing to sync (the demo runs with `make run`)")
    # GraphTokens only touches Redis for delegated accounts: Graph is checked without it.
    auth = GraphTokens(settings, client)
    try:
        for tenant in settings.tenants:
            add = adder(tenant.name)
            if not tenant.enabled:
                add("tenant", "warn", "disabled: no users are synced")
            _graph(auth.tenant(tenant.name), add)
            if redis is not None:
                _accounts(redis, tenant, add)
            add("pbx", *probe(tenant, redis, settings.process.cache_key))
    finally:
        auth.close()


_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def check(
    strict: bool = typer.Option(False, "--strict", help="Warnings fail the check too."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Validate the configuration; reach Redis, Graph and the PBX; name what is missing."""
    with Session() as session:
        try:
            settings = session.settings
        except ConfigError as exc:
            if json_out:
                print_json({"ok": False, "config_problems": exc.problems, "results": []})
            else:
                print_config_problems(exc)
            raise typer.Exit(ExitCode.USAGE) from None
        results = run_checks(settings)
    bad = {"fail", "warn"} if strict else {"fail"}
    passed = not any(r.status in bad for r in results)
    if json_out:
        print_json({"ok": passed, "config_problems": [], "results": results})
    else:
        for r in results:
            where = f"{r.tenant}: " if r.tenant else ""
            out.print(f"[{_STYLE[r.status]}]{r.status:>4}[/] {escape(where + r.check)}: "
                      f"{escape(r.message)}")  # fmt: skip
        failures = sum(r.status == "fail" for r in results)
        warnings = sum(r.status == "warn" for r in results)
        summary = f"{failures} failure(s), {warnings} warning(s)"
        (out if passed else err).print(("all good: " if passed else "check failed: ") + summary)
    raise typer.Exit(ExitCode.OK if passed else ExitCode.FAILED)
