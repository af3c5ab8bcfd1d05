"""`presence-bridge directory sync`: import the Graph directory now and relink PBX users."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from cli.common import Session, err, out, print_json
from core.errors import BridgeError, GraphError
from core.graph import GraphClient
from core.state import directory
from workers.directory_sync import sync_directory
from workers.pbx.registry import build_adapter

app = typer.Typer(help="The Graph directory and its links to PBX users.", no_args_is_help=True)


class CountingGraphClient(GraphClient):
    """A Graph client that reports how many users each page of /users brings."""

    def __init__(self, *args: Any, on_users: Callable[[int], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_users = on_users

    def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        page = super().get(path, params, headers)
        if "/users" in path:
            self._on_users(len(page.get("value") or []))
        return page


@app.command("sync")
def sync(
    tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant name from the tenants file."),
    full: bool = typer.Option(False, "--full", help="Import everything, not just the changes."),
    json_out: bool = typer.Option(False, "--json", help="Print the sync report as JSON."),
) -> None:
    """Run a directory sync now (a delta round, or a full import when needed or asked)."""
    with Session() as session:
        settings = session.tenant(tenant)
        redis = session.redis()
        auth = session.auth().tenant(tenant)
        full_import = full or directory.delta_link(redis, tenant) is None
        previous = directory.read_status(redis, tenant)
        # The last import's size is the best guess of this one's; a delta round has none.
        total = previous.graph_users if full_import and previous else None
        progress = Progress(
            SpinnerColumn(), TextColumn("[progress.description]{task.description}"),
            BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, disable=json_out,
        )  # fmt: skip
        task = progress.add_task("full import" if full_import else "delta round", total=total)
        graph = CountingGraphClient(
            str(settings.graph_base_url), auth.app_token,
            fresh_token=lambda: auth.app_token(fresh=True), verify=session.verify(),
            on_users=lambda n: progress.advance(task, n),
        )  # fmt: skip
        adapter = build_adapter(settings, redis, session.settings.process.cache_key)
        try:
            with progress:
                report = sync_directory(settings, redis, graph, adapter, full=full)
                progress.update(task, total=progress.tasks[0].completed)
        except GraphError as exc:
            if exc.status != 403:
                raise
            raise BridgeError(
                f"{exc} (the app needs the application permission User.Read.All, "
                "with admin consent)"
            ) from None
        finally:
            graph.close()
            adapter.close()
    if json_out:
        print_json(report.status())
        return
    out.print(f"{tenant}: {report.mode} sync ({report.reason}): {report.graph_users} Graph users, "
              f"{report.pages} page(s), {report.upserted} added or changed, "
              f"{report.soft_deleted + report.hard_deleted} removed")  # fmt: skip
    out.print(f"  PBX users: {report.pbx_users} (from the {report.pbx_source.replace('_', ' ')}), "
              f"{report.linked_pbx} linked, {report.unlinked_pbx} unlinked, "
              f"{report.disabled} disabled; Graph users without a PBX user: "
              f"{report.unlinked_graph}")  # fmt: skip
    for conflict in report.conflicts:
        out.print(f"  [yellow]conflict:[/yellow] PBX user {conflict.pbx_user} is claimed by "
                  f"{', '.join(conflict.graph_ids)}; not linked")  # fmt: skip
