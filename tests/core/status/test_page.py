"""core.status.page: the system model with each tenant's user table, against a real Redis."""

from __future__ import annotations

import orjson
import redis

from core.settings import PbxUser, ProcessSettings, Settings
from core.status import page
from tests.core.status.conftest import NOW, TENANT, tenant_settings


def test_each_tenant_carries_its_user_table(redis_client: redis.Redis) -> None:
    tenant = tenant_settings(pbx_users=[PbxUser(username="ann", graph_id="g-ann")])
    settings = Settings(process=ProcessSettings(), tenants=(tenant,))

    data = orjson.loads(orjson.dumps(page.page_model(redis_client, settings, NOW)))

    [shown] = data["tenants"]
    assert (shown["name"], shown["user_count"], shown["linked_count"]) == (TENANT, 1, 1)
    assert [(r["user"], r["graph_ids"]) for r in shown["user_rows"]] == [("ann", ["g-ann"])]


def test_a_tenant_without_users_has_an_empty_table(redis_client: redis.Redis) -> None:
    settings = Settings(process=ProcessSettings(), tenants=(tenant_settings(),))

    [shown] = page.page_model(redis_client, settings, NOW)["tenants"]

    assert (shown["user_count"], shown["user_rows"], shown["transitions"]) == (0, [], [])
