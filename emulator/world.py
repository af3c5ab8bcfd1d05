"""The emulator's whole state: tenants, apps, users, presence, subscriptions, deliveries.

One `World` per emulator instance; every route reads and writes it under `world.lock`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from emulator.clock import Clock


@dataclass
class App:
    client_id: str
    tenant_id: str
    secret: str | None = None
    certificate_thumbprints: dict[str, bytes] = field(default_factory=dict)  # hex -> PEM cert
    redirect_uris: list[str] = field(default_factory=list)
    # Application permissions granted (roles), e.g. "Presence.ReadWrite.All", "User.Read.All".
    roles: list[str] = field(default_factory=list)


@dataclass
class User:
    id: str
    tenant_id: str
    userPrincipalName: str
    displayName: str = ""
    mail: str | None = None
    mailNickname: str | None = None
    onPremisesSamAccountName: str | None = None
    password: str | None = None  # set for service accounts that can sign in
    deleted: bool = False
    version: int = 0  # bumped by every change; delta tokens compare against it

    def graph_json(self, select: list[str] | None = None) -> dict[str, Any]:
        full = {
            "id": self.id,
            "userPrincipalName": self.userPrincipalName,
            "displayName": self.displayName,
            "mail": self.mail,
            "mailNickname": self.mailNickname,
            "onPremisesSamAccountName": self.onPremisesSamAccountName,
        }
        if select:
            return {k: full.get(k) for k in ["id", *select] if k in full}
        # Graph omits mailNickname and onPremisesSamAccountName unless selected.
        return {k: full[k] for k in ("id", "userPrincipalName", "displayName", "mail")}


@dataclass
class PresenceSession:
    session_id: str  # an app's client id, or "teams:<n>" for a Teams client
    availability: str
    activity: str
    expires_at: float | None


@dataclass
class UserPresence:
    sessions: dict[str, PresenceSession] = field(default_factory=dict)
    preferred: tuple[str, str] | None = None
    preferred_expires_at: float | None = None
    availability: str = "Offline"  # the aggregate last published
    activity: str = "Offline"
    sequence: int = 0


@dataclass
class Subscription:
    id: str
    tenant_id: str
    app_id: str
    creator_id: str  # signed-in user id (delegated) or app id
    resource: str
    user_ids: list[str]  # the presence ids the resource covers
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expiration: float
    include_resource_data: bool = False
    encryption_certificate: str | None = None  # base64 DER
    encryption_certificate_id: str | None = None
    latest_supported_tls_version: str = "v1_2"
    token_expires_at: float = 0.0  # the access token that created or renewed it


@dataclass
class Delivery:
    """One POST the emulator made (or tried) to a subscriber."""

    url: str
    body: dict[str, Any]
    attempt: int
    status: int | None  # None: no answer in time
    sent_at: float
    elapsed: float
    kind: str  # "notification", "lifecycle", "validation"


@dataclass
class Tenant:
    id: str
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    presence: dict[str, UserPresence] = field(default_factory=dict)
    version: int = 0  # last user version handed out


@dataclass
class World:
    clock: Clock = field(default_factory=Clock)
    tenants: dict[str, Tenant] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    tokens_issued: list[dict[str, Any]] = field(default_factory=list)
    # Refresh tokens: token -> (tenant id, app id, user id, scopes, issued at).
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoked_users: set[str] = field(default_factory=set)
    settings: dict[str, Any] = field(default_factory=dict)  # lifetimes, horizons, faults
    lock: threading.RLock = field(default_factory=threading.RLock)

    def tenant(self, tenant_id: str) -> Tenant:
        return self.tenants.setdefault(tenant_id, Tenant(id=tenant_id))


_T = TypeVar("_T")


def extension(world: World, key: str, factory: Callable[[], _T]) -> _T:
    """Per-world state a module keeps beside the shared model, created on first use.

    Stored on the instance rather than as a field so modules can add state without
    changing the model every other module relies on.
    """
    with world.lock:
        store: dict[str, Any] = world.__dict__.setdefault("_extensions", {})
        if key not in store:
            store[key] = factory()
        value: _T = store[key]
        return value
