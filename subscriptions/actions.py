"""The Graph actions on one account's presence subscription: create, renew, delete, report.

Graph's answers are handled as documented: 404 on renewal means gone (recreate), 409 on create
means the account already holds one (adopt it when we know its clientState, else delete and
recreate). A renewal that fails for a passing reason is owed (`core.state.subscriptions`) and
retried until the subscription expires.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from core import certificates
from core.errors import BridgeError, GraphError
from core.graph import format_datetime
from core.notification_crypto import generate_encryption_certificate
from core.state import subscriptions as sub_state
from core.state.subscriptions import SubscriptionRecord
from core.timestamps import parse_graph_datetime
from subscriptions import planner
from subscriptions.tenant_view import TenantView

log = logging.getLogger(__name__)

NOTIFICATIONS_PATH = "/graph/notifications"
LIFECYCLE_PATH = "/graph/lifecycle"
# Graph's maximum for presence is 60 minutes and it refuses more with a 400; a minute less
# absorbs clock skew between this host and Graph.
LIFETIME_SECONDS = 59 * 60.0
CERTIFICATE_VALID_DAYS = 365
CERTIFICATE_ROTATE_AFTER_SECONDS = 180 * 24 * 3600.0


@dataclass
class ActionReport:
    """What the actions on a tenant's subscriptions did in one reconcile, renewal or reaction."""

    tenant: str
    created: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    deferred: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    polled: int = 0
    latency_bound: float | None = None

    @property
    def gap(self) -> bool:
        """Whether some users may have missed notifications (a resync sweep is owed)."""
        return bool(self.recreated or self.created or self.adopted)

    def summary(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant, "created": len(self.created), "renewed": len(self.renewed),
            "adopted": len(self.adopted), "recreated": len(self.recreated),
            "deleted": len(self.deleted), "deferred": self.deferred, "failed": self.failed,
            "polled": self.polled, "latency_bound": self.latency_bound,
        }  # fmt: skip


def _expiry(subscription: dict[str, Any], fallback: float) -> float:
    value = subscription.get("expirationDateTime")
    if isinstance(value, str):
        try:
            return parse_graph_datetime(value).timestamp()
        except ValueError:
            pass
    return fallback


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _base_url(ctx: TenantView) -> str:
    return str(ctx.tenant.public_base_url).rstrip("/")


def _certificate(ctx: TenantView, now: float) -> certificates.Certificate:
    """The tenant's current notification certificate, made or rotated when due."""
    current = certificates.current_certificate(ctx.redis, ctx.name)
    if current is not None and now - current.created_at < CERTIFICATE_ROTATE_AFTER_SECONDS:
        return current
    pem, cert_b64, thumbprint = generate_encryption_certificate(
        f"presence-bridge {ctx.name}", valid_days=CERTIFICATE_VALID_DAYS
    )
    # Unique per certificate, so a notification names exactly the key that decrypts it.
    made = certificates.Certificate(f"{thumbprint[:16].lower()}-{int(now)}", cert_b64, now)
    certificates.add_certificate(ctx.redis, ctx.cipher, ctx.name, made, pem)
    log.info("tenant %s: new notification certificate %s", ctx.name, made.certificate_id)
    return made


def _ids_of(resource: str) -> set[str]:
    """User ids named by a presence resource (quoted or not, maybe URL-encoded)."""
    text = unquote_plus(resource)
    start, end = text.find("("), text.rfind(")")
    if start < 0 or end < start:
        return {text.rstrip("/").rsplit("/", 1)[-1]}
    return {p.strip().strip("'\"") for p in text[start + 1 : end].split(",") if p.strip()}


def create(
    ctx: TenantView,
    account: str,
    user_ids: tuple[str, ...],
    report: ActionReport,
    *,
    resolve_conflict: bool = True,
) -> SubscriptionRecord:
    now = ctx.now()
    client_state = secrets.token_urlsafe(32)  # 256 random bits; Graph allows 128 chars
    body: dict[str, Any] = {
        "changeType": "updated",
        "notificationUrl": _base_url(ctx) + NOTIFICATIONS_PATH,
        "lifecycleNotificationUrl": _base_url(ctx) + LIFECYCLE_PATH,
        "resource": planner.resource_for(user_ids),
        "expirationDateTime": format_datetime(_when(now + LIFETIME_SECONDS)),
        "clientState": client_state,
    }
    certificate_id = None
    if ctx.tenant.rich_notifications:
        cert = _certificate(ctx, now)
        certificate_id = cert.certificate_id
        body.update(includeResourceData=True, encryptionCertificate=cert.certificate_b64,
                    encryptionCertificateId=cert.certificate_id)  # fmt: skip
    try:
        created = ctx.graph(account, fresh_token=True).create_subscription(body)
    except GraphError as exc:
        if exc.status != 409 or not resolve_conflict:
            raise
        return _resolve_conflict(ctx, account, user_ids, report)
    record = SubscriptionRecord(
        str(created["id"]), ctx.name, sub_state.client_state_digest(client_state), account,
        user_ids, _expiry(created, now + LIFETIME_SECONDS), now, now, certificate_id,
    )  # fmt: skip
    sub_state.save(ctx.redis, record, ctx.fence)
    report.created.append(account)
    return record


def _resolve_conflict(
    ctx: TenantView, account: str, user_ids: tuple[str, ...], report: ActionReport
) -> SubscriptionRecord:
    """409: the account already holds a presence subscription of this app. Adopt or replace it."""
    client = ctx.graph(account)
    wanted = set(user_ids)
    notification_url = _base_url(ctx) + NOTIFICATIONS_PATH
    for existing in client.list_subscriptions():  # delegated: only this account's, this app's
        sid = str(existing.get("id"))
        same = (
            _ids_of(str(existing.get("resource", ""))) == wanted
            and existing.get("notificationUrl") == notification_url
            and existing.get("lifecycleNotificationUrl") is not None
        )
        # clientState is never listed: adoptable only if the webhook already knows it.
        known = sub_state.read(ctx.redis, sid) if same else None
        if known is not None and known.tenant == ctx.name:
            now = ctx.now()
            certificate_id = existing.get("encryptionCertificateId") or known.certificate_id
            record = SubscriptionRecord(sid, ctx.name, known.client_state_digest, account,
                                        user_ids, _expiry(existing, now), now, now,
                                        certificate_id)  # fmt: skip
            sub_state.save(ctx.redis, record, ctx.fence)
            report.adopted.append(account)
            log.info("tenant %s: adopted subscription %s of %s", ctx.name, sid, account)
            return renew(ctx, record, report)
        log.info("tenant %s: deleting unusable subscription %s of %s", ctx.name, sid, account)
        client.delete_subscription(sid)
        old = sub_state.read(ctx.redis, sid)
        if old is not None and old.managed:
            sub_state.forget(ctx.redis, old, ctx.fence)
    # The conflicting one is gone; a second 409 now is an error for this round.
    created = create(ctx, account, user_ids, report, resolve_conflict=False)
    report.recreated.append(account)
    return created


def renew(ctx: TenantView, record: SubscriptionRecord, report: ActionReport) -> SubscriptionRecord:
    """PATCH a new expiry (which also reauthorizes); 404 means gone, so recreate."""
    now = ctx.now()
    body: dict[str, Any] = {"expirationDateTime": format_datetime(_when(now + LIFETIME_SECONDS))}
    certificate_id = record.certificate_id
    if ctx.tenant.rich_notifications:
        cert = _certificate(ctx, now)
        if cert.certificate_id != record.certificate_id:
            # Rotation rides on the renewal; the old key stays until nothing names it.
            body.update(encryptionCertificate=cert.certificate_b64,
                        encryptionCertificateId=cert.certificate_id)  # fmt: skip
            certificate_id = cert.certificate_id
    try:
        renewed = ctx.graph(record.account, fresh_token=True).patch(
            f"/subscriptions/{record.subscription_id}", body
        )
    except BridgeError as exc:
        if not isinstance(exc, GraphError) or exc.status != 404:
            if exc.transient:
                sub_state.owe_renewal(ctx.redis, ctx.name, record, now, ctx.fence)
            raise
        log.info("tenant %s: subscription %s is gone; recreating", ctx.name, record.subscription_id)
        sub_state.forget(ctx.redis, record, ctx.fence)
        report.recreated.append(record.account)
        return create(ctx, record.account, record.user_ids, report)
    updated = replace(record, expires_at=_expiry(renewed, now + LIFETIME_SECONDS),
                      renewed_at=now, certificate_id=certificate_id)  # fmt: skip
    sub_state.save(ctx.redis, updated, ctx.fence)
    report.renewed.append(record.account)
    return updated


def delete(ctx: TenantView, record: SubscriptionRecord, report: ActionReport) -> None:
    """Delete at Graph (404 counts as done) and forget it."""
    ctx.graph(record.account).delete_subscription(record.subscription_id)
    sub_state.forget(ctx.redis, record, ctx.fence)
    report.deleted.append(record.account)
