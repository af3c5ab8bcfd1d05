"""`presence-bridge login`: the sign-in URL of a service account."""

from __future__ import annotations

import typer
from rich.markup import escape

from cli.common import Session, UsageProblem, out, print_json
from core.state import accounts
from core.state.accounts import SIGN_IN_TTL_SECONDS, AccountStatus


def login(
    tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant name from the tenants file."),
    account: str | None = typer.Option(
        None, "--account", "-a", help="Service account UPN (default: the first not signed in)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the URL as JSON."),
) -> None:
    """Print the URL where a service account signs in (the web process takes the callback)."""
    with Session() as session:
        settings = session.tenant(tenant)
        configured = [accounts.normalize(a) for a in settings.service_accounts]
        if not configured:
            raise UsageProblem(f"tenant {tenant} lists no service_accounts in the tenants file")
        if account is None:
            health = session.auth().account_health(tenant)
            unsigned = [
                h.account
                for h in health
                if h.status is not AccountStatus.HEALTHY and h.account in configured
            ]
            account = (unsigned or configured)[0]
        elif accounts.normalize(account) not in configured:
            raise UsageProblem(f"{account} is not a service account of tenant {tenant} "
                               f"(configured: {', '.join(configured)})")  # fmt: skip
        name = accounts.normalize(account)
        auth_uri = session.auth().start_sign_in(tenant, name)
        redirect = session.auth().tenant(tenant).redirect_uri
    if json_out:
        print_json({"tenant": tenant, "account": name, "auth_uri": auth_uri,
                    "redirect_uri": redirect, "expires_in": SIGN_IN_TTL_SECONDS})  # fmt: skip
        return
    out.print(f"Sign in as [bold]{escape(name)}[/bold] (tenant {escape(tenant)}) within "
              f"{SIGN_IN_TTL_SECONDS // 60} minutes by opening:")  # fmt: skip
    out.print(escape(auth_uri), markup=False)
    out.print(
        f"The identity platform then returns the browser to {escape(redirect)}, "
        "so the web process must be running and reachable from that browser."
    )
