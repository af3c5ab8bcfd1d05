"""Sources built from the tenants file: the kind `source` names, with its typed options."""

from __future__ import annotations

from typing import Any

import redis

from core.settings import TenantSettings
from core.state import calls
from core.state.calls import ActiveCalls
from workers.callstate.ami import AmiCallSource
from workers.callstate.blf import BlfCallSource
from workers.callstate.sources import build_source

BLF = {"source": "blf", "options": {"host": "127.0.0.1", "domain": "pbx.test"}}
AMI = {"source": "ami", "options": {"host": "127.0.0.1", "username": "calls"}, "secret": "s"}


def tenant(callstate: dict[str, Any]) -> TenantSettings:
    return TenantSettings.model_validate(
        {
            "name": "contoso",
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": "x",
            "public_base_url": "https://bridge.example.net",
            "pbx": {"callstate": callstate},
            "pbx_users": [
                {"username": "alice", "extension": "200"},
                {"username": "bob", "extension": "201"},
            ],
        }
    )


def test_the_source_named_in_the_settings_is_built_with_their_options() -> None:
    ami = build_source(tenant(AMI), lambda item: None)
    blf = build_source(tenant(BLF), lambda item: None)
    assert isinstance(ami, AmiCallSource) and isinstance(blf, BlfCallSource)
    assert blf.options.domain == "pbx.test" and blf.options.port == 5060


def test_a_blf_source_starts_from_the_blf_calls_the_bridge_holds(
    redis_client: redis.Redis,
) -> None:
    calls.save(redis_client, "contoso", "alice", ActiveCalls(("blf:c1", "1796149370.5")))
    source = build_source(tenant(BLF), lambda item: None, redis=redis_client)
    assert isinstance(source, BlfCallSource)
    # Taken over or ended by the first full state of alice's extension; the AMI call is not ours.
    assert source.tracker.active() == {"alice": ["blf:c1"]}
    source.restore([("bob", "blf:c2", 0.0)])  # from the listener's own record
    assert source.tracker.active() == {"alice": ["blf:c1"], "bob": ["blf:c2"]}
    assert source.active_calls() == 2 and not source.connected
