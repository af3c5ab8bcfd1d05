"""Reconcile a tenant's presence subscriptions: desired (the plan) against actual (Redis, Graph).

One subscription per healthy service account, created with a lifecycle URL and a fresh
clientState, renewed by PATCH well before its 60 minutes are up. Graph's answers are handled
as documented: 404 on renewal means gone (recreate), 409 on create means the account already
holds one (adopt it when we know its clientState, else delete and recreate), 429 defers the
account for `Retry-After`, 5xx backs it off exponentially. A chunk whose users changed is
deleted and recreated, since a subscription's resource cannot be PATCHed.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol
from urllib.parse import unquote_plus

from redis import Redis

from core.errors import BridgeError, GraphError
from core.graph import DEFAULT_MAX_ATTEMPTS, GraphClient, format_datetime
from core.notification_crypto import generate_encryption_certificate
from core.settings import TenantSettings
from core.timestamps import parse_graph_datetime
from core.token_cache import CacheCipher
from subscriptions import planner, polling, store
from subscriptions.sweep import CallBudget

log = logging.getLogger(__name__)

NOTIFICATIONS_PATH = "/graph/notifications"
LIFECYCLE_PATH = "/graph/lifecycle"
# Graph's maximum for presence is 60 minutes and it refuses more with a 400; a minute less
# absorbs clock skew between this host and Graph.
LIFETIME_SECONDS = 59 * 60.0
RENEW_WITHIN_SECONDS = 20 * 60.0  # renew when this close to expiry (reconcile runs every minute)
RETRY_AFTER_DEFAULT_SECONDS = 60.0  # a 429 without Retry-After
BACKOFF_BASE_SECONDS = 30.0  # after a 5xx: 30 s, 60 s, 120 s... up to the cap
BACKOFF_MAX_SECONDS = 15 * 60.0
CERTIFICATE_VALID_DAYS = 365
CERTIFICATE_ROTATE_AFTER_SECONDS = 180 * 24 * 3600.0


class Auth(Protocol):
    """What reconcile needs of `core.auth.TenantAuth`."""

    def healthy_accounts(self) -> list[str]: ...

    def delegated_token(self, account: str, *, fresh: bool = False) -> str: ...

    def app_token(self, *, fresh: bool = False) -> str: ...


@dataclass
class Context:
    """One tenant's view for the clock: its settings, tokens, Redis and time."""

    redis: Redis
    tenant: TenantSettings
    auth: Auth
    cipher: CacheCipher
    verify: str | bool | ssl.SSLContext = True
    now: Callable[[], float] = time.time
    budget: CallBudget = field(default_factory=CallBudget)
    _clients: dict[tuple[str | None, bool], GraphClient] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.tenant.name

    def graph(self, account: str | None = None, *, fresh_token: bool = False) -> GraphClient:
        """Graph as `account` (delegated) or as the app (None); cached for the context.

        `fresh_token` gets a new delegated token for every request. Graph keeps the token a
        create or renewal was made with as the subscription's own, and holds deliveries once
        it expires, so those calls must not use a cached token that is about to.
        """
        key = (account, fresh_token)
        client = self._clients.get(key)
        if client is None:
            auth = self.auth
            if account is None:
                provider: Callable[[], str] = auth.app_token
                fresh: Callable[[], str] = lambda: auth.app_token(fresh=True)  # noqa: E731
                attempts = DEFAULT_MAX_ATTEMPTS
            else:
                name = account
                fresh = lambda: auth.delegated_token(name, fresh=True)  # noqa: E731
                provider = fresh if fresh_token else lambda: auth.delegated_token(name)  # noqa: E731
                # No sleeping retries inside a reconcile: a failing account is deferred and
                # the next round (a minute later) tries again, so one account never stalls all.
                attempts = 1
            client = GraphClient(
                str(self.tenant.graph_base_url), provider, fresh_token=fresh,
                verify=self.verify, max_attempts=attempts,
            )  # fmt: skip
            self._clients[key] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


@dataclass
class Report:
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


def _base_url(ctx: Context) -> str:
    return str(ctx.tenant.public_base_url).rstrip("/")


def _certificate(ctx: Context, now: float) -> store.Certificate:
    """The tenant's current notification certificate, made or rotated when due."""
    current = store.current_certificate(ctx.redis, ctx.name)
    if current is not None and now - current.created_at < CERTIFICATE_ROTATE_AFTER_SECONDS:
        return current
    pem, cert_b64, thumbprint = generate_encryption_certificate(
        f"presence-bridge {ctx.name}", valid_days=CERTIFICATE_VALID_DAYS
    )
    # Unique per certificate, so a notification names exactly the key that decrypts it.
    made = store.Certificate(f"{thumbprint[:16].lower()}-{int(now)}", cert_b64, now)
    store.add_certificate(ctx.redis, ctx.cipher, ctx.name, made, pem)
    log.info("tenant %s: new notification certificate %s", ctx.name, made.certificate_id)
    return made


def _ids_of(resource: str) -> set[str]:
    """User ids named by a presence resource (quoted or not, maybe URL-encoded)."""
    text = unquote_plus(resource)
    start, end = text.find("("), text.rfind(")")
    if start < 0 or end < start:
        return {text.rstrip("/").rsplit("/", 1)[-1]}
    return {p.strip().strip("'\"") for p in text[start + 1 : end].split(",") if p.strip()}


# ---- the four Graph actions -------------------------------------------------------------------


def create(
    ctx: Context,
    account: str,
    user_ids: tuple[str, ...],
    report: Report,
    *,
    resolve_conflict: bool = True,
) -> store.Record:
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
    record = store.Record(
        str(created["id"]), ctx.name, account, user_ids,
        _expiry(created, now + LIFETIME_SECONDS), now, now, certificate_id,
    )  # fmt: skip
    store.save(ctx.redis, record, client_state)
    report.created.append(account)
    return record


def _resolve_conflict(
    ctx: Context, account: str, user_ids: tuple[str, ...], report: Report
) -> store.Record:
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
        if same and store.registered_for(ctx.redis, sid, ctx.name):
            now = ctx.now()
            record = store.Record(sid, ctx.name, account, user_ids, _expiry(existing, now),
                                  now, now, existing.get("encryptionCertificateId"))  # fmt: skip
            store.save(ctx.redis, record)
            report.adopted.append(account)
            log.info("tenant %s: adopted subscription %s of %s", ctx.name, sid, account)
            return renew(ctx, record, report)
        log.info("tenant %s: deleting unusable subscription %s of %s", ctx.name, sid, account)
        client.delete_subscription(sid)
        old = store.by_id(ctx.redis, sid)
        if old is not None:
            store.forget(ctx.redis, old)
    # The conflicting one is gone; a second 409 now is an error for this round.
    created = create(ctx, account, user_ids, report, resolve_conflict=False)
    report.recreated.append(account)
    return created


def renew(ctx: Context, record: store.Record, report: Report) -> store.Record:
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
    except GraphError as exc:
        if exc.status != 404:
            raise
        log.info("tenant %s: subscription %s is gone; recreating", ctx.name, record.subscription_id)
        store.forget(ctx.redis, record)
        report.recreated.append(record.account)
        return create(ctx, record.account, record.user_ids, report)
    updated = store.Record(
        record.subscription_id, ctx.name, record.account, record.user_ids,
        _expiry(renewed, now + LIFETIME_SECONDS), record.created_at, now, certificate_id,
    )  # fmt: skip
    store.save(ctx.redis, updated)
    report.renewed.append(record.account)
    return updated


def delete(ctx: Context, record: store.Record, report: Report) -> None:
    """Delete at Graph (404 counts as done) and forget it."""
    ctx.graph(record.account).delete_subscription(record.subscription_id)
    store.forget(ctx.redis, record)
    report.deleted.append(record.account)


def _defer(ctx: Context, account: str, exc: BridgeError, report: Report) -> None:
    now = ctx.now()
    retry_after = getattr(exc, "retry_after", None)
    if getattr(exc, "status", None) == 429:
        delay = float(retry_after) if retry_after is not None else RETRY_AFTER_DEFAULT_SECONDS
    else:
        failures = store.failures(ctx.redis, ctx.name, account)
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0**failures)
        if retry_after is not None:
            delay = max(delay, float(retry_after))
    store.backoff(ctx.redis, ctx.name, account, now + delay, str(exc))
    report.deferred[account] = str(exc)
    log.warning("tenant %s: account %s deferred %.0fs: %s", ctx.name, account, delay, exc)


def guarded(ctx: Context, account: str, report: Report, action: Callable[[], object]) -> bool:
    """Run one account's Graph action; a failure defers or records it, never stops the rest."""
    try:
        action()
    except BridgeError as exc:
        if exc.transient:
            _defer(ctx, account, exc, report)
        else:
            # A permanent refusal (403, sign-in needed...) is retried next round, not faster.
            report.failed[account] = str(exc)
            log.warning("tenant %s: account %s failed: %s", ctx.name, account, exc)
        return False
    store.clear_backoff(ctx.redis, ctx.name, account)
    return True


# ---- the reconcile round -------------------------------------------------------------------------


def reconcile(ctx: Context) -> Report:
    """Bring the tenant's subscriptions to the plan; renew what is due; record who is polled."""
    report = Report(ctx.name)
    records = store.load(ctx.redis, ctx.name)
    if not ctx.tenant.enabled:
        for record in records.values():
            guarded(ctx, record.account, report, partial(delete, ctx, record, report))
        _write_status(ctx, report, {}, [], store.load(ctx.redis, ctx.name))
        return report

    users = store.linked_users(ctx.redis, ctx.name)
    configured = {a.strip().lower() for a in ctx.tenant.service_accounts}
    healthy = [a for a in ctx.auth.healthy_accounts() if a in configured]
    current = {a: r.user_ids for a, r in records.items()}
    plan = planner.plan(users, healthy, current)

    # Accounts that lost their health or were removed: try to delete (their token may no
    # longer work; then Graph ends the subscription within the hour anyway).
    for account in plan.dropped_accounts:
        dropped = records.pop(account)
        if not guarded(ctx, account, report, partial(delete, ctx, dropped, report)):
            store.forget(ctx.redis, dropped)
    now = ctx.now()
    for account, chunk in plan.chunks.items():
        if store.backoff_until(ctx.redis, ctx.name, account) > now:
            report.deferred.setdefault(account, "backing off")
            continue
        guarded(ctx, account, report,
                partial(_converge, ctx, account, chunk, records.get(account), report))  # fmt: skip
    _write_status(ctx, report, plan.chunks, list(plan.polled), store.load(ctx.redis, ctx.name))
    return report


def _converge(
    ctx: Context, account: str, chunk: tuple[str, ...], record: store.Record | None, report: Report
) -> None:
    if record is not None and set(record.user_ids) != set(chunk):
        delete(ctx, record, report)  # the resource cannot be PATCHed
        record = None
    if record is None:
        if chunk:
            create(ctx, account, chunk, report)
        return
    if record.expires_at - ctx.now() <= RENEW_WITHIN_SECONDS:
        renew(ctx, record, report)


def renew_expiring(ctx: Context) -> Report:
    """Only renewals (and 404 recreations): the `renew` command, for cron-driven sites."""
    report = Report(ctx.name)
    now = ctx.now()
    for account, record in store.load(ctx.redis, ctx.name).items():
        if record.expires_at - now > RENEW_WITHIN_SECONDS:
            continue
        if store.backoff_until(ctx.redis, ctx.name, account) > now:
            report.deferred[account] = "backing off"
            continue
        guarded(ctx, account, report, partial(renew, ctx, record, report))
    return report


def _write_status(
    ctx: Context,
    report: Report,
    chunks: Mapping[str, tuple[str, ...]],
    polled: list[str],
    records: dict[str, store.Record],
) -> None:
    now = ctx.now()
    # Users whose subscription is not live (deferred, failed) are polled until it is.
    uncovered = [
        uid
        for account, chunk in chunks.items()
        if account not in records or records[account].expires_at <= now
        for uid in chunk
    ]
    polled = sorted(set(polled) | set(uncovered))
    report.polled = len(polled)
    report.latency_bound = polling.latency_bound(len(polled)) if polled else None
    in_use = {r.certificate_id for r in records.values() if r.certificate_id}
    store.prune_certificates(ctx.redis, ctx.name, in_use, now)
    status = {
        "reconciled_at": now,
        "accounts": {
            a: {"subscription": r.subscription_id, "users": len(r.user_ids),
                "expires_at": r.expires_at, "renewed_at": r.renewed_at}
            for a, r in sorted(records.items())
        },
        "subscribed": sum(len(r.user_ids) for r in records.values()),
        "polled": len(polled),
        "polling_latency_bound": report.latency_bound,
        "deferred": report.deferred,
        "failed": report.failed,
    }  # fmt: skip
    store.write_status(ctx.redis, ctx.name, status, polled)
