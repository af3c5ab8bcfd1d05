"""RQ entry points: few and thin. Each takes small JSON values and may run twice."""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from core import keys

NOTIFICATION_LOG_MAXLEN = 10_000


def _record(tenant: str, items: list[dict[str, Any]]) -> int:
    job = get_current_job()
    assert job is not None, "runs inside an RQ job"
    pipe = job.connection.pipeline(transaction=False)
    for entry in items:
        pipe.xadd(
            keys.tenant_notifications(tenant),
            {"kind": entry["kind"], "subscriptionId": entry["item"].get("subscriptionId", ""),
             "userId": entry["item"].get("userId", "")},
            maxlen=NOTIFICATION_LOG_MAXLEN, approximate=True,
        )
    pipe.execute()
    return len(items)


def process_notifications(tenant: str, items: list[dict[str, Any]]) -> int:
    """Change notifications of one tenant."""
    return _record(tenant, items)


def process_lifecycle(tenant: str, items: list[dict[str, Any]]) -> int:
    """Lifecycle notifications of one tenant (reauthorizationRequired, subscriptionRemoved, missed)."""
    return _record(tenant, items)
