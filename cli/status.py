"""`presence-bridge status` and `presence-bridge users show`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import Session, UsageProblem, ago, duration, err, out, print_json
from cli.exit_codes import ExitCode
from core.status import system as model
from core.status import user as user_status

users_app = typer.Typer(help="One user's presence, profile and transitions.", no_args_is_help=True)

_ACCOUNT_STYLE = {"healthy": "green", "needs_sign_in": "red", "not_signed_in": "yellow"}


def _alive(flag: bool) -> str:
    return "[green]running[/green]" if flag else "[red]no heartbeat[/red]"


def _print_tenant(t: model.TenantStatus, now: float) -> None:
    state = "" if t.enabled else " [yellow](disabled)[/yellow]"
    out.print(f"\n[bold]tenant {escape(t.name)}[/bold]{state}, adapter {t.adapter}")
    if t.accounts:
        table = Table("service account", "status", "last refresh", "subscription", title=None)
        for a in t.accounts:
            text = a.status + (f": {a.reason}" if a.reason else "")
            table.add_row(a.account, f"[{_ACCOUNT_STYLE.get(a.status, 'white')}]{escape(text)}[/]",
                          ago(a.last_refresh, now), a.subscription_id or "-")  # fmt: skip
        out.print(table)
    else:
        out.print("  no service accounts: every user is polled")
    for s in t.subscriptions:
        out.print(f"  subscription {s.subscription_id} ({s.account}): {s.users} users, "
                  f"{s.state}, expires in {duration(s.seconds_left)}")  # fmt: skip
    u = t.users
    synced = ago(u.directory_synced_at, now)
    out.print(
        f"  users: {u.linked} linked, {u.unlinked_pbx} PBX unlinked, {u.unlinked_graph} "
        f"Teams unlinked, {u.conflicting} conflicting, {u.disabled} disabled; "
        f"{u.subscribed} subscribed, {u.polled} polled; directory synced {synced}"
    )
    out.print(f"  deliveries pending: {t.pending_deliveries}; dead letters: {len(t.dead_letters)}")


def status(
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="One tenant (default: all)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Accounts, subscriptions, users, queues, dead letters and recent errors.

    Exits 1 when the worker or clock has no heartbeat or a problem is listed: a probe.
    """
    with Session() as session:
        redis = session.redis()
        if tenant is not None:
            session.tenant(tenant)
        report = model.bridge_status(redis, session.settings, tenant)
    if json_out:
        print_json(report)
    else:
        _print_report(report)
    why = [
        f"no {name} heartbeat"
        for name, alive in (("worker", report.worker_alive), ("clock", report.clock_alive))
        if not alive
    ]
    why += [f"{len(report.problems)} problem(s)"] if report.problems else []
    if why:
        err.print(f"unhealthy: {', '.join(why)}")  # fmt: skip
    raise typer.Exit(ExitCode.FAILED if why else ExitCode.OK)


def _print_report(report: model.BridgeStatus) -> None:
    now = report.generated_at
    out.print(f"worker: {_alive(report.worker_alive)}, clock: {_alive(report.clock_alive)}")
    queues = ", ".join(f"{q.name} {q.queued}" + (f" ({q.failed} failed)" if q.failed else "")
                       for q in report.queues)  # fmt: skip
    out.print(f"intake: {report.intake_length} waiting, {report.intake_pending} in flight; "
              f"queues: {queues}")  # fmt: skip
    if not report.tenants:
        out.print("no tenants configured")
    for t in report.tenants:
        _print_tenant(t, now)
    if report.problems:
        out.print(f"\n[bold]recent problems[/bold] ({len(report.problems)})")
        for p in report.problems[:30]:
            where = f"{p.tenant} " if p.tenant else ""
            out.print(f"  [red]{p.source}[/red] {escape(where + p.subject)}: {escape(p.message)}")


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def _print_user(u: user_status.UserStatus, now: float) -> None:
    out.print(f"[bold]{escape(u.pbx_user)}[/bold] (tenant {escape(u.tenant)})")
    if not u.graph_ids:
        out.print("  Teams: not linked to a Teams user")
    for gid in u.graph_ids:
        p = u.teams.get(gid)
        seen = (
            f"{p['availability']}/{p['activity']}, seen {ago(p.get('observed_at'), now)}"
            if p
            else "no presence seen yet"
        )
        out.print(f"  Teams {gid}: {escape(seen)}")
    state = u.profile_state or {}
    sticky = " (sticky)" if state.get("sticky_since") else ""
    out.print(
        f"  profile: {escape(str(state.get('current') or '-'))}{sticky}"
        + (f", restores to {state['restore_to']}" if state.get("restore_to") else "")
    )
    if u.desired is not None:
        sync = ("[green]applied[/green]" if u.in_sync else "[yellow]pending[/yellow]"
                if u.pending else "[red]dead-lettered[/red]")  # fmt: skip
        out.print(f"  desired: {escape(str(u.desired['profile']))} v{u.desired['version']}, "
                  f"applied v{u.applied_version}: {sync}")  # fmt: skip
    if u.pbx_profile is not None:
        out.print(f"  PBX (builtin): {escape(str(u.pbx_profile.get('profile')))}")
    if u.dead_letter is not None:
        out.print(f"  [red]dead letter[/red]: {escape(str(u.dead_letter.get('reason')))}")
    if u.events:
        table = Table("at (UTC)", "result", "profile", "Teams", "latency")
        for e in u.events:
            teams_in: dict[str, Any] = e["teams"] if isinstance(e.get("teams"), dict) else e
            pair = (teams_in.get("availability"), teams_in.get("activity"))
            teams = "/".join(str(x) for x in pair if x)
            latency = f"{e['latency_ms']:.0f} ms" if "latency_ms" in e else "-"
            table.add_row(_when(e.get("at")), str(e.get("result", "-")),
                          str(e.get("profile", "-")), teams or "-", latency)  # fmt: skip
        out.print(table)
    else:
        out.print("  no transitions recorded")


@users_app.command("show")
def show(
    user: str = typer.Argument(..., help="PBX username, Teams user id or Teams UPN."),
    tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant name from the tenants file."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Teams presence, PBX profile and recent transitions (with latency) of one user."""
    with Session() as session:
        settings = session.tenant(tenant)
        redis = session.redis()
        names = user_status.resolve_pbx_users(redis, settings, user)
        if not names:
            raise UsageProblem(f"no user {user!r} in tenant {tenant}: not a PBX user, linked "
                               "Teams id or Teams UPN the bridge knows")  # fmt: skip
        found = [user_status.user_status(redis, settings, name) for name in names]
    if json_out:
        print_json(found[0] if len(found) == 1 else found)
        return
    now = time.time()
    for u in found:
        _print_user(u, now)
