"""`presence-bridge subscriptions list|reconcile`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import Session, duration, fail, out, print_json
from cli.exit_codes import ExitCode
from core.state import subscriptions as sub_state
from core.state.subscriptions import ReconcileStatus
from core.status import system as status
from subscriptions.clock import take_leader_lock
from subscriptions.schedules import Clockwork

app = typer.Typer(help="Graph presence subscriptions.", no_args_is_help=True)

TENANT = typer.Option(None, "--tenant", "-t", help="One tenant (default: all).")
JSON = typer.Option(False, "--json", help="Print JSON.")
_STATE_STYLE = {"live": "green", "expiring": "yellow", "expired": "red"}


@dataclass(frozen=True)
class TenantSubscriptions:
    tenant: str
    reconciled_at: float | None
    subscriptions: list[status.SubscriptionView]
    users: status.UsersView
    deferred: dict[str, str]
    failed: dict[str, str]


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("list")
def list_(tenant: str | None = TENANT, json_out: bool = JSON) -> None:
    """The subscriptions the clock holds, with their expiry, and who is polled instead."""
    now = time.time()
    rows = []
    with Session() as session:
        redis = session.redis()
        for t in session.tenants(tenant):
            summary = sub_state.read_status(redis, t.name) or ReconcileStatus()
            rows.append(TenantSubscriptions(
                t.name, summary.reconciled_at, status.subscriptions(redis, t.name, now),
                status.users_view(redis, t.name), dict(summary.deferred), dict(summary.failed),
            ))  # fmt: skip
    if json_out:
        print_json(rows)
        return
    for row in rows:
        users, subs = row.users, row.subscriptions
        bound = users.polling_latency_bound
        polled = f"{users.polled} polled" + (f" (within {bound:.0f}s)" if bound else "")
        out.print(f"[bold]{escape(row.tenant)}[/bold]: {len(subs)} subscription(s), "
                  f"{users.subscribed} users subscribed, {polled}")  # fmt: skip
        if subs:
            table = Table("account", "subscription", "users", "expires (UTC)", "left", "state")
            for s in subs:
                style = _STATE_STYLE[s.state]
                table.add_row(s.account, s.subscription_id, str(s.users), _utc(s.expires_at),
                              duration(s.seconds_left), f"[{style}]{s.state}[/]")  # fmt: skip
            out.print(table)
        for account, reason in {**row.deferred, **row.failed}.items():
            out.print(f"  [yellow]{escape(account)}[/yellow]: {escape(str(reason))}")


@app.command("reconcile")
def reconcile(tenant: str | None = TENANT, json_out: bool = JSON) -> None:
    """Bring subscriptions to the plan now: create, renew, rebalance, delete."""
    reports = []
    with Session() as session:
        redis = session.redis()
        chosen = session.tenants(tenant)
        # The clock's own lock: a manual round never acts beside a running clock.
        lock = take_leader_lock(redis)
        if lock is None:
            fail("a running clock holds the leader lock and reconciles every minute; "
                 "see `presence-bridge subscriptions list`")  # fmt: skip
        work = Clockwork(session.settings, redis, session.auth(), fence=lock.fence)
        try:
            reports = [work.reconcile(work.context(t)) for t in chosen]
        finally:
            work.close()
            lock.release()
    if json_out:
        print_json([r.summary() for r in reports])
    else:
        for r in reports:
            out.print(f"[bold]{r.tenant}[/bold]: {len(r.created)} created, {len(r.renewed)} "
                      f"renewed, {len(r.recreated)} recreated, {len(r.adopted)} adopted, "
                      f"{len(r.deleted)} deleted; {r.polled} user(s) polled")  # fmt: skip
            for account, reason in r.deferred.items():
                out.print(f"  [yellow]deferred[/yellow] {escape(account)}: {escape(reason)}")
            for account, reason in r.failed.items():
                out.print(f"  [red]failed[/red] {escape(account)}: {escape(reason)}")
    if any(r.failed for r in reports):
        raise typer.Exit(ExitCode.FAILED)
