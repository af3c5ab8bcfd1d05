"""`presence-bridge dead-letters list|replay`: profiles the PBX refused, and applying them again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import Session, UsageProblem, out, print_json
from cli.exit_codes import ExitCode
from core.queue import enqueue_deliver
from core.state import delivery
from core.status import system as status
from workers.delivery import deliver, resume_later
from workers.pbx.registry import build_adapter, save_state

app = typer.Typer(help="Profiles the PBX refused.", no_args_is_help=True)

TENANT = typer.Option(..., "--tenant", "-t", help="Tenant name from the tenants file.")
JSON = typer.Option(False, "--json", help="Print JSON.")
USERS = typer.Argument(None, help="PBX users (default: every dead letter).")


@dataclass
class Replay:
    tenant: str
    applied: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)  # a newer profile was applied since
    retrying: dict[str, str] = field(default_factory=dict)  # transient: queued for the workers
    refused: dict[str, str] = field(default_factory=dict)  # dead-lettered again


@app.command("list")
def list_(tenant: str = TENANT, json_out: bool = JSON) -> None:
    """Dead letters of a tenant, oldest first, with the PBX's reason."""
    with Session() as session:
        session.tenant(tenant)
        letters = status.dead_letters(session.redis(), tenant)
    if json_out:
        print_json(letters)
        return
    if not letters:
        out.print(f"{tenant}: no dead letters")
        return
    table = Table("user", "profile", "version", "at (UTC)", "reason")
    for d in letters:
        when = datetime.fromtimestamp(d.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(d.user, d.profile, str(d.version), when, escape(d.reason))
    out.print(table)
    out.print(f"{len(letters)} dead letter(s); replay with "
              f"`presence-bridge dead-letters replay --tenant {tenant} [USER...]`")  # fmt: skip


@app.command("replay")
def replay(
    users: list[str] | None = USERS,
    tenant: str = TENANT,
    json_out: bool = JSON,
) -> None:
    """Clear dead letters and apply the users' current desired profile through the adapter."""
    result = Replay(tenant)
    with Session() as session:
        settings = session.tenant(tenant)
        redis = session.redis()
        dead = {d.user for d in status.dead_letters(redis, tenant)}
        chosen = sorted(set(users)) if users else sorted(dead)
        unknown = [u for u in chosen if u not in dead]
        if unknown:
            raise UsageProblem(f"no dead letter for {', '.join(unknown)} in tenant {tenant}")
        if chosen:
            # Cleared first: a dead-lettered version is not pending, and the PBX rounds of the
            # workers re-apply pending users only.
            delivery.clear_dead_letters(redis, tenant, chosen)
            adapter = build_adapter(settings, redis, session.settings.process.cache_key)
            try:
                outcome = deliver(redis, tenant, adapter, chosen)
                save_state(adapter, tenant, redis)
            finally:
                adapter.close()
            until = datetime.fromtimestamp(outcome.resume_at or 0.0, UTC)
            waiting = f"the PBX backs off until {until:%Y-%m-%d %H:%M:%S} UTC"
            result.applied, result.retrying, result.refused = (
                outcome.applied,
                {**outcome.transient, **dict.fromkeys(outcome.deferred, waiting)},
                outcome.dead,
            )
            result.up_to_date = [
                u
                for u in chosen
                if u not in outcome.applied and u not in result.retrying and u not in outcome.dead
            ]
            if outcome.transient:
                enqueue_deliver(redis, tenant, sorted(outcome.transient), outcome.retry_after)
            resume_later(redis, tenant, outcome)  # the deferred users, when the PBX may be asked
    if json_out:
        print_json(result)
    elif not chosen:
        out.print(f"{tenant}: no dead letters to replay")
    else:
        for user in result.applied:
            out.print(f"[green]applied[/green] {escape(user)}")
        for user in result.up_to_date:
            out.print(f"[green]up to date[/green] {escape(user)} (a newer profile was applied)")
        for user, reason in result.retrying.items():
            out.print(
                f"[yellow]retrying[/yellow] {escape(user)}: {escape(reason)} "
                "(queued for the workers)"
            )
        for user, reason in result.refused.items():
            out.print(f"[red]refused again[/red] {escape(user)}: {escape(reason)}")
    if result.refused:
        raise typer.Exit(ExitCode.FAILED)
    raise typer.Exit(ExitCode.UNAVAILABLE if result.retrying else ExitCode.OK)
