"""The environment file the CLI reads: `--env-file PATH`, else the one `make run` wrote."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from pathlib import Path

# What `make run` writes for the demo (scripts/run.py), relative to the run directory.
RUN_ENV_NAME = "env"
# Any of these set means the operator chose a site already: the demo's file must not override it.
CHOSEN = ("PRESENCE_BRIDGE_TENANTS_FILE", "PRESENCE_BRIDGE_REDIS_URL", "REDIS_URL")


class EnvFileError(Exception):
    """An environment file that cannot be read or parsed (exit 2)."""


def parse(text: str, source: str) -> dict[str, str]:
    """`NAME=value` lines; blank lines and `#` comments are skipped; values are taken as is."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        name = name.removeprefix("export ").strip()
        if not sep or not name.replace("_", "").isalnum():
            # The line itself is not shown: it may hold a secret.
            raise EnvFileError(f"{source}:{number}: not a NAME=value line")
        values[name] = value
    return values


def read(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"cannot read the environment file {path}: {exc.strerror}") from None
    return parse(text, str(path))


def demo_file(env: Mapping[str, str], cwd: Path) -> Path | None:
    """`make run`'s file when it exists and no site is chosen by the environment."""
    if any(env.get(name) for name in CHOSEN):
        return None
    run_dir = Path(env.get("PRESENCE_BRIDGE_RUN_DIR") or cwd / ".run")
    path = run_dir / RUN_ENV_NAME
    return path if path.is_file() else None


def apply(values: Mapping[str, str], env: MutableMapping[str, str]) -> None:
    """The file fills in what the environment lacks: an exported variable wins."""
    for name, value in values.items():
        env.setdefault(name, value)
