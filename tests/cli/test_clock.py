"""`presence-bridge clock ...`: one clock schedule once, under the clock's leader lock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from cli.app import app
from cli.exit_codes import ExitCode
from core.queue import JOB_SYNC_DIRECTORY, QUEUE_GRAPH, queue
from core.state import subscriptions as sub_state
from core.state.coordination import LeaderLock
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from tests.emulator.conftest import emulator_factory  # noqa: F401 - the fixture bridge_factory uses
from tests.subscriptions.conftest import TENANT, Bridge, bridge_factory, web  # noqa: F401

BridgeFactory = Callable[..., Bridge]


def cli_env(bridge: Bridge, tmp_path: Path) -> dict[str, str]:
    """The environment that points `presence-bridge` at the bridge's tenant, Redis and Graph."""
    tenant, process = bridge.tenant, bridge.settings.process
    assert tenant.client_secret is not None and process.cache_key is not None
    accounts = ", ".join(f'"{a}"' for a in bridge.accounts)
    toml = tenant_toml(
        TENANT, extra=f"service_accounts = [{accounts}]", tenant_id=bridge.tenant_id,
        client_id=tenant.client_id, login=str(tenant.login_base_url),
        graph=str(tenant.graph_base_url), public=str(tenant.public_base_url),
    )  # fmt: skip
    return write_env(
        tmp_path, toml,
        PRESENCE_BRIDGE_REDIS_URL=process.redis_url,
        PRESENCE_BRIDGE_CACHE_KEY=process.cache_key.get_secret_value(),
        PRESENCE_BRIDGE_CA_BUNDLE=str(process.ca_bundle),
        **{secret_env(TENANT, "CLIENT_SECRET"): tenant.client_secret.get_secret_value()},
    )  # fmt: skip


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**env, "COLUMNS": "200"})


@pytest.mark.parametrize("argv", [[], ["bogus"], ["renew", "sweep"]])
def test_commands_refuse_unknown_arguments(argv: list[str]) -> None:
    result = CliRunner().invoke(app, ["clock", *argv])
    assert result.exit_code == ExitCode.USAGE
    assert "usage:" in result.output.lower()  # the help, on stdout, when no command is given


def test_a_command_fails_clearly_while_a_clock_holds_the_lock(
    bridge_factory: BridgeFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    bridge = bridge_factory(users=5, accounts=1)
    holder = LeaderLock(bridge.redis, "clock", 60)
    assert holder.acquire()
    result = run(cli_env(bridge, tmp_path), "clock", "reconcile")
    assert result.exit_code == ExitCode.FAILED
    assert "another clock holds the leader lock" in result.stderr
    assert bridge.live() == []


def test_the_reconcile_command_acts_and_status_shows_it(
    bridge_factory: BridgeFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    bridge = bridge_factory(users=700, accounts=1)
    env = cli_env(bridge, tmp_path)
    done = run(env, "clock", "reconcile")
    assert done.exit_code == 0, done.output
    assert orjson.loads(done.stdout.splitlines()[0])["created"] == 1
    # The one-shot `status` folded into `presence-bridge status --json`: the polled count is
    # the reconcile round's, under `users`; the accounts are a list of views.
    shown = run(env, "status", "--json")  # exits 1 here: no worker or clock beats
    [tenant] = [t for t in orjson.loads(shown.stdout)["tenants"] if t["name"] == TENANT]
    assert tenant["users"]["polled"] == 50
    assert {a["account"] for a in tenant["accounts"]} == set(bridge.accounts)
    assert len(bridge.live()) == 1
    assert sub_state.polled_users(bridge.redis, TENANT)


def test_the_directory_command_queues_a_sync_per_tenant(
    bridge_factory: BridgeFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    bridge = bridge_factory(users=5, accounts=1)
    done = run(cli_env(bridge, tmp_path), "clock", "directory")
    assert done.exit_code == 0, done.output
    [line] = done.stdout.splitlines()
    [job] = queue(bridge.redis, QUEUE_GRAPH).jobs
    assert orjson.loads(line) == {"tenant": TENANT, "job": job.id}
    assert (job.func_name, job.args[0]) == (JOB_SYNC_DIRECTORY, TENANT)


def test_the_sweep_command_reads_every_linked_user(
    bridge_factory: BridgeFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    bridge = bridge_factory(users=5, accounts=1)
    done = run(cli_env(bridge, tmp_path), "clock", "sweep")
    assert done.exit_code == 0, done.output
    [line] = done.stdout.splitlines()
    assert orjson.loads(line)["read"] == 5
