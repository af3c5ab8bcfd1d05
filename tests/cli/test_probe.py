"""The CLI as a probe and in pipes: its environment file, `status`'s exit code, full rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis

from core.state import coordination, delivery
from tests.cli.test_cli import TENANT, Site, SiteFactory, site, site_factory  # noqa: F401
from tests.emulator.conftest import control, emulator  # noqa: F401 - fixtures
from workers.pbx.base import ProfileChange

COMMAND = Path(sys.executable).parent / "presence-bridge"  # the installed entry point


def bare_environment() -> dict[str, str]:
    """The shell of an operator who exported nothing of the bridge's, without a terminal size."""
    chosen = ("PRESENCE_BRIDGE_", "REDIS_URL", "COLUMNS")
    return {k: v for k, v in os.environ.items() if not k.startswith(chosen)}


def presence_bridge(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own with stdout piped, as a probe or `| grep` runs it."""
    return subprocess.run(  # noqa: S603 - our own entry point and arguments
        [str(COMMAND), *args], cwd=cwd, env={**bare_environment(), **(env or {})},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def write_env_file(path: Path, of: Site) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{k}={v}" for k, v in of.env.items() if k.startswith("PRESENCE_BRIDGE_")]
    path.write_text("# as `make run` writes it\n" + "\n".join(lines) + "\n")
    return path


def beat_all(redis_client: redis.Redis) -> None:
    for process in coordination.Process:
        coordination.beat(redis_client, process, time.time(), 60)


# ---- the environment file ------------------------------------------------------------------


def test_the_run_directorys_env_file_is_loaded_when_nothing_is_exported(
    site: Site,  # noqa: F811
    tmp_path: Path,
) -> None:
    env_file = write_env_file(tmp_path / "op" / ".run" / "env", site)

    done = presence_bridge("status", "--json", cwd=tmp_path / "op")

    assert [t["name"] for t in orjson.loads(done.stdout)["tenants"]] == [TENANT], done.stderr
    assert f"using the environment in {env_file}" in done.stderr


def test_an_exported_site_is_not_overridden_by_the_run_directorys_file(
    site: Site,  # noqa: F811
    tmp_path: Path,
) -> None:
    write_env_file(tmp_path / ".run" / "env", site)
    other = tmp_path / "other.toml"
    other.write_text("")  # a site with no tenants: what the operator chose

    redis_url = site.env["PRESENCE_BRIDGE_REDIS_URL"]
    chosen = {"PRESENCE_BRIDGE_TENANTS_FILE": str(other), "PRESENCE_BRIDGE_REDIS_URL": redis_url}

    done = presence_bridge("status", "--json", cwd=tmp_path, env=chosen)

    assert orjson.loads(done.stdout)["tenants"] == [], done.stderr
    assert "using the environment" not in done.stderr


def test_env_file_option_reads_the_named_file(
    site: Site,  # noqa: F811
    tmp_path: Path,
) -> None:
    env_file = write_env_file(tmp_path / "site.env", site)

    done = presence_bridge("--env-file", str(env_file), "status", "--json", cwd=tmp_path)

    assert [t["name"] for t in orjson.loads(done.stdout)["tenants"]] == [TENANT], done.stderr


def test_a_missing_env_file_exits_2(tmp_path: Path) -> None:
    done = presence_bridge("--env-file", str(tmp_path / "nope.env"), "status", cwd=tmp_path)

    assert done.returncode == 2
    assert f"cannot read the environment file {tmp_path / 'nope.env'}" in done.stderr


def test_a_malformed_env_file_line_exits_2_without_showing_it(tmp_path: Path) -> None:
    env_file = tmp_path / "site.env"
    env_file.write_text("PRESENCE_BRIDGE_PORT=8000\nhunter2\n")

    done = presence_bridge("--env-file", str(env_file), "status", cwd=tmp_path)

    assert done.returncode == 2
    assert f"{env_file}:2: not a NAME=value line" in done.stderr
    assert "hunter2" not in done.stderr


# ---- status as a probe ---------------------------------------------------------------------


def test_status_exits_1_without_worker_and_clock_heartbeats(site: Site) -> None:  # noqa: F811
    result = site.run("status")

    assert result.exit_code == 1, result.output
    assert "unhealthy: no worker heartbeat, no clock heartbeat" in result.stderr


def test_status_exits_0_when_both_beat_and_nothing_is_wrong(
    site_factory: SiteFactory,  # noqa: F811
    redis_client: redis.Redis,
) -> None:
    made = site_factory(accounts=0)
    beat_all(redis_client)

    result = made.run("status", "--json")

    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["problems"] == []


def test_status_json_exits_1_when_a_problem_is_listed(
    site_factory: SiteFactory,  # noqa: F811
    redis_client: redis.Redis,
) -> None:
    made = site_factory(accounts=0)
    beat_all(redis_client)
    [change] = delivery.set_desired(redis_client, TENANT, [ProfileChange("alice", "Away")])
    delivery.dead_letter(redis_client, TENANT, change, "HTTP 404: no such extension")

    result = made.run("status", "--json")

    assert result.exit_code == 1
    assert len(orjson.loads(result.stdout)["problems"]) == 1


# ---- piped output --------------------------------------------------------------------------


def test_a_piped_table_keeps_its_rows_whole(
    site: Site,  # noqa: F811
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    reason = "HTTP 404: " + "no such extension on any of the PBX's configured trunks " * 3
    [made] = delivery.set_desired(redis_client, TENANT, [ProfileChange("alice", "Away")])
    delivery.dead_letter(redis_client, TENANT, made, reason.strip())
    env = {k: v for k, v in site.env.items() if k.startswith("PRESENCE_BRIDGE_")}

    done = presence_bridge("dead-letters", "list", "--tenant", TENANT, cwd=tmp_path, env=env)

    assert done.returncode == 0, done.stderr
    [row] = [line for line in done.stdout.splitlines() if "alice" in line]
    assert reason.strip() in row
