"""`presence-bridge clock reconcile|renew|sweep|directory`: one of the clock's schedules, once.

For sites that run a system cron or a Kubernetes CronJob instead of the `clock` process. Each
command takes the clock's leader lock, so it never acts beside a running clock; it prints one
JSON line per tenant and exits 1 with a message when it cannot finish.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson
import typer
from rich.markup import escape

from cli.common import Session, err
from cli.exit_codes import ExitCode
from core.errors import BridgeError
from subscriptions.actions import ActionReport
from subscriptions.clock import take_leader_lock
from subscriptions.schedules import Clockwork
from subscriptions.tenant_view import TenantView

app = typer.Typer(
    help="Run one of the clock's schedules once, for a system cron or a Kubernetes CronJob.",
    no_args_is_help=True,
)

# A clock that is stopping releases the lock at once: a command started beside its shutdown
# waits this long for it before it gives up.
LOCK_WAIT_SECONDS = 5.0

# One tenant's run of a schedule: its summary line, and whether it left work undone.
Action = Callable[[Clockwork, TenantView], tuple[dict[str, Any], bool]]


def _incomplete(report: ActionReport) -> tuple[dict[str, Any], bool]:
    return report.summary(), bool(report.failed or report.deferred)


def run_schedule(schedule: str, action: Action, *, enabled_only: bool = True) -> None:
    """`action` for every tenant under the leader lock; one tenant's failure spares the rest."""
    with Session() as session:
        redis = session.redis()
        lock = take_leader_lock(redis, LOCK_WAIT_SECONDS)
        if lock is None:
            held = f"{schedule}: another clock holds the leader lock; it runs this schedule "
            err.print(escape(held + "already (stop it, or let it act)"))
            raise typer.Exit(ExitCode.FAILED)
        try:
            work = Clockwork(session.settings, redis, session.auth(), fence=lock.fence)
            try:
                failed = _each_tenant(schedule, work, action, enabled_only)
            finally:
                work.close()
        finally:
            lock.release()
    if failed:
        err.print(escape(f"{schedule}: not everything succeeded; see above"))
        raise typer.Exit(ExitCode.FAILED)


def _each_tenant(schedule: str, work: Clockwork, action: Action, enabled_only: bool) -> bool:
    """Runs `action` per tenant, printing each summary line; True when any left work undone."""
    failed = False
    for ctx in work.contexts(enabled_only=enabled_only):
        try:
            summary, incomplete = action(work, ctx)
        except BridgeError as exc:
            err.print(escape(f"{schedule}: tenant {ctx.name}: {exc}"))
            failed = True
            continue
        failed |= incomplete
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return failed


@app.command()
def reconcile() -> None:
    """Bring every tenant's subscriptions to the plan (disabled tenants: delete them)."""
    run_schedule(
        "reconcile", lambda work, ctx: _incomplete(work.reconcile(ctx)), enabled_only=False
    )


@app.command()
def renew() -> None:
    """Renew the subscriptions that expire soon."""
    run_schedule("renew", lambda work, ctx: _incomplete(work.renew(ctx)))


@app.command()
def sweep() -> None:
    """Read every linked user's presence and queue what differs from the last applied."""
    run_schedule("sweep", lambda work, ctx: (work.sweep(ctx).summary(), False))


@app.command()
def directory() -> None:
    """Queue a directory sync for every tenant (a worker runs it)."""
    run_schedule(
        "directory",
        lambda work, ctx: ({"tenant": ctx.name, "job": work.directory(ctx.name)}, False),
    )
