"""The `presence-bridge` command: the operator's view of a running bridge.

The composition root: it may use every package of the bridge (but never the emulator).
"""

from __future__ import annotations

import typer

from cli import clock, dead_letters, directory, subscriptions
from cli.check import check
from cli.login import login
from cli.status import status, users_app
from core.version import VERSION

app = typer.Typer(
    name="presence-bridge",
    help="Operate Presence Bridge: check the setup, sign in accounts, see and repair sync.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"presence-bridge {VERSION}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Operate Presence Bridge: check the setup, sign in accounts, see and repair sync."""


app.command()(check)
app.command()(login)
app.command()(status)
app.add_typer(directory.app, name="directory")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(users_app, name="users")
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(clock.app, name="clock")


def main() -> None:
    app()
