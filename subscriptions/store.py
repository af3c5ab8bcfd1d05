"""What the clock reads of the directory's records: the users its subscriptions must cover.

The subscription records themselves are `core.state.subscriptions`.
"""

from __future__ import annotations

from redis import Redis

from core.state import links


def linked_users(redis: Redis, tenant: str) -> list[str]:
    """The enabled, linked Graph users of the tenant (the directory sync writes the links)."""
    return links.linked_graph_ids(redis, tenant)

