"""The clock's PBX round (`workers.jobs.maintain_pbx`): refresh publications, re-apply state."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from core.settings import load_settings
from core.state import links, pbx
from emulator.harness.kamailio import KamailioServer
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from workers import jobs
from workers.pbx.base import ProfileChange
from workers.pbx.builtin import BuiltinAdapter
from workers.pbx.sip import SipAdapter
from workers.pipeline import PresenceUpdate, process
from workers.runtime import WorkerRuntime, install

RuntimeFactory = Callable[[str], WorkerRuntime]


@pytest.fixture
def runtime_factory(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[RuntimeFactory]:
    made: list[WorkerRuntime] = []

    def make(pbx: str) -> WorkerRuntime:
        env = write_env(tmp_path, tenant_toml(pbx=pbx), PRESENCE_BRIDGE_REDIS_URL=redis_url,
                        **{secret_env("contoso", "CLIENT_SECRET"): "s"})  # fmt: skip
        runtime = WorkerRuntime(load_settings(env), redis_client)
        install(runtime)
        made.append(runtime)
        return runtime

    yield make
    install(None)
    for runtime in made:
        runtime.close()


def test_pending_desired_state_is_applied(
    runtime_factory: RuntimeFactory, redis_client: redis.Redis
) -> None:
    runtime = runtime_factory('adapter = "builtin"')
    links.replace(redis_client, "contoso", {"g1": ["alice"]})
    process(
        redis_client,
        "contoso",
        runtime.tenant("contoso").rules,  # type: ignore[union-attr]
        0.0,
        [PresenceUpdate("g1", "Away", "Away", "1")],
    )  # decided, never delivered
    assert jobs.maintain_pbx("contoso") == 1
    assert BuiltinAdapter(redis_client, "contoso").read_profile("alice") == "Away"


def test_a_sip_publication_near_its_expiry_is_refreshed_after_a_restart(
    runtime_factory: RuntimeFactory, kamailio: KamailioServer, redis_client: redis.Redis
) -> None:
    sip = (f'adapter = "sip"\noptions = {{ host = "127.0.0.1", port = {kamailio.udp_port}, '
           f'domain = "{kamailio.domain}" }}')  # fmt: skip
    first = runtime_factory(sip)
    adapter = cast(SipAdapter, first.tenant("contoso").adapter)  # type: ignore[union-attr]
    adapter.apply_profile(ProfileChange("carol", "Busy"))
    first.close()
    # The worker comes back when the publication is past its refresh point (80 % of it).
    state = json.loads(adapter.export_state())
    state["users"]["carol"]["expires_at"] -= 0.9 * state["users"]["carol"]["lifetime"]
    pbx.save_adapter_state(redis_client, "contoso", json.dumps(state))

    restarted = runtime_factory(sip)
    jobs.maintain_pbx("contoso")

    assert restarted.tenant("contoso").adapter.counts["refresh"] == 1  # type: ignore[union-attr]
