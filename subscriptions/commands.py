"""One-shot commands for sites that run a system cron or a Kubernetes CronJob instead of the clock.

`python -m subscriptions reconcile|renew|sweep|directory|status`. Each acting command takes the
clock's leader lock (so it never acts beside a running clock) and exits non-zero with a clear
message when it cannot finish; `status` only reads, so it takes no lock.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

import orjson
from redis import Redis
from redis.exceptions import RedisError

from core.errors import BridgeError, ConfigError
from core.graph_tokens import GraphTokens
from core.redis import connect
from core.settings import Settings, load_settings
from core.state import accounts
from core.state import subscriptions as sub_state
from core.state.coordination import LeaderLock
from subscriptions.clock import LOCK_TTL_SECONDS
from subscriptions.schedules import Clockwork

COMMANDS = ("reconcile", "renew", "sweep", "directory", "status")
LOCK_WAIT_SECONDS = 5.0
USAGE = f"usage: python -m subscriptions [{'|'.join(COMMANDS)}]  (no command: run the clock)"
EXIT_FAILED, EXIT_USAGE = 1, 2


def status(settings: Settings, redis: Redis) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tenant in settings.tenants:
        health = accounts.account_health(redis, tenant.name, tenant.service_accounts)
        reconciled = sub_state.read_status(redis, tenant.name)
        out[tenant.name] = {
            "enabled": tenant.enabled,
            "accounts": {h.account: {"status": h.status.value, "reason": h.reason} for h in health},
            "subscriptions": reconciled.to_json() if reconciled else None,
        }
    return out


def _take_lock(redis: Redis, stop: threading.Event) -> LeaderLock | None:
    lock = LeaderLock(redis, "clock", LOCK_TTL_SECONDS)
    if lock.acquire():
        return lock
    stop.wait(LOCK_WAIT_SECONDS)  # a clock that just stopped releases it at once
    return lock if lock.acquire() else None


def run_command(
    command: str, settings: Settings, redis: Redis, out: TextIO, err: TextIO
) -> int:
    if command == "status":
        out.write(orjson.dumps(status(settings, redis), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    lock = _take_lock(redis, threading.Event())
    if lock is None:
        err.write(
            f"{command}: another clock holds the leader lock; it runs this schedule already "
            "(stop it, or let it act)\n"
        )
        return EXIT_FAILED
    failed = False
    with GraphTokens(settings, redis) as auth:
        work = Clockwork(settings, redis, auth)
        try:
            for ctx in work.contexts(enabled_only=command != "reconcile"):
                try:
                    result: Any
                    if command == "reconcile":
                        result = work.reconcile(ctx)
                        failed |= bool(result.failed or result.deferred)
                    elif command == "renew":
                        result = work.renew(ctx)
                        failed |= bool(result.failed or result.deferred)
                    elif command == "sweep":
                        result = work.sweep(ctx)
                    else:
                        result = {"tenant": ctx.name, "job": work.directory(ctx.name)}
                except BridgeError as exc:
                    err.write(f"{command}: tenant {ctx.name}: {exc}\n")
                    failed = True
                    continue
                summary = result if isinstance(result, dict) else result.summary()
                out.write(orjson.dumps(summary).decode() + "\n")
        finally:
            work.close()
            lock.release()
    if failed:
        err.write(f"{command}: not everything succeeded; see above\n")
    return EXIT_FAILED if failed else 0


def main(argv: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        err.write(USAGE + "\n")
        return EXIT_USAGE
    try:
        settings = load_settings()
    except ConfigError as exc:
        err.write(f"presence-bridge {argv[0]}: {exc}\n")
        return EXIT_USAGE
    redis = connect(settings.process.redis_url)
    try:
        return run_command(argv[0], settings, redis, out, err)
    except (RedisError, OSError) as exc:
        err.write(f"{argv[0]}: Redis at the configured URL is unavailable ({type(exc).__name__})\n")
        return EXIT_FAILED
    finally:
        redis.close()
