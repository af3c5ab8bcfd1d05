"""core.status.user against a real Redis, with the records written by their owners' own code."""

from __future__ import annotations

import time

import pytest
import redis

from core.settings import PbxUser
from core.state import delivery, directory, links, presence
from core.status import user as user_status
from tests.core.status.conftest import TENANT, tenant_settings
from workers.delivery import deliver
from workers.pbx.base import ProfileChange
from workers.pbx.builtin import BuiltinAdapter


def _deliver_presence(redis_client: redis.Redis, user: str, profile: str) -> None:
    [made] = delivery.set_desired(redis_client, TENANT, [ProfileChange(user, profile)])
    deliver(redis_client, TENANT, BuiltinAdapter(redis_client, TENANT), [user])
    assert made.version >= 1


def test_user_status_shows_presence_profile_and_latency(redis_client: redis.Redis) -> None:
    links.replace(redis_client, TENANT, {"g-ann": ["ann"]})
    presence.record(redis_client, TENANT, {
        "g-ann": presence.LastPresence("Busy", "InAMeeting", None, time.time())})  # fmt: skip
    _deliver_presence(redis_client, "ann", "Teams Meeting")

    user = user_status.user_status(redis_client, tenant_settings(), "ann")

    assert user.graph_ids == ["g-ann"]
    assert user.teams["g-ann"]["activity"] == "InAMeeting"
    assert (user.pbx_profile or {})["profile"] == "Teams Meeting"
    assert user.in_sync
    assert user.events[0]["result"] == "applied"
    assert user.events[0]["latency_ms"] >= 0


@pytest.mark.parametrize("name", ["ann", "g-ann", "Ann@Contoso.test"])
def test_a_user_is_found_by_pbx_name_graph_id_or_upn(redis_client: redis.Redis, name: str) -> None:
    links.replace(redis_client, TENANT, {"g-ann": ["ann"]})
    user = directory.GraphUser("g-ann", userPrincipalName="ann@contoso.test")
    directory.replace_users(redis_client, TENANT, [(user.id, user.to_bytes())], "delta-link")

    assert user_status.resolve_pbx_users(redis_client, tenant_settings(), name) == ["ann"]


def test_a_static_link_counts_as_a_link(redis_client: redis.Redis) -> None:
    tenant = tenant_settings(pbx_users=[PbxUser(username="ann", graph_id="g-static")])

    assert user_status.resolve_pbx_users(redis_client, tenant, "g-static") == ["ann"]
    assert user_status.user_status(redis_client, tenant, "ann").graph_ids == ["g-static"]


def test_an_unknown_user_resolves_to_nobody(redis_client: redis.Redis) -> None:
    assert user_status.resolve_pbx_users(redis_client, tenant_settings(), "nobody") == []
