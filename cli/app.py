"""The `presence-bridge` command: the operator's view of a running bridge.

The composition root: it may use every package of the bridge (but never the emulator).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.markup import escape

from cli import clock, dead_letters, directory, env_file, mapping, subscriptions
from cli.check import check
from cli.common import err, fail, out
from cli.exit_codes import ExitCode
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


ENV_FILE_OPTION = typer.Option(
    None,
    "--env-file",
    help="Read PRESENCE_BRIDGE_* variables from this file (exported ones win). "
    "Default: .run/env, which `make run` writes, when no site is set in the environment.",
)


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
    env_file_path: Path | None = ENV_FILE_OPTION,
) -> None:
    """Operate Presence Bridge: check the setup, sign in accounts, see and repair sync."""
    _full_width_when_piped()
    path = env_file_path or env_file.demo_file(os.environ, Path.cwd())
    if path is None:
        return
    try:
        values = env_file.read(path)
    except env_file.EnvFileError as exc:
        fail(str(exc), ExitCode.USAGE)
    env_file.apply(values, os.environ)
    if env_file_path is None:
        err.print(f"using the environment in {escape(str(path))} (written by `make run`)")


# Wide enough for any row: a pipe or a file has no width, and a cut row loses its end.
PIPED_WIDTH = 10_000


def _full_width_when_piped() -> None:
    if "COLUMNS" in os.environ:  # the operator's choice, also for a pipe
        return
    for console, stream in ((out, sys.stdout), (err, sys.stderr)):
        if not stream.isatty():
            console.width = PIPED_WIDTH


app.command()(check)
app.command()(login)
app.command()(status)
app.add_typer(directory.app, name="directory")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(users_app, name="users")
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(clock.app, name="clock")
app.add_typer(mapping.app, name="mapping")


def main() -> None:
    app()
