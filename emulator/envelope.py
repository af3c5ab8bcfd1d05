"""What Graph POSTs to a subscriber: notification items and their changeNotificationCollection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from emulator.crypto import encrypt_resource
from emulator.tokens import issuer, sign_jwt
from emulator.world import World

CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
VALIDATION_TOKEN_LIFETIME = 24 * 3600.0


@dataclass
class Item:
    url: str
    payload: dict[str, Any]
    kind: str  # "notification" or "lifecycle"
    subscription_id: str
    first_at: float
    # Rich notifications: the plain resource, encrypted when first sent.
    resource: dict[str, Any] | None = None
    certificate: str | None = None
    certificate_id: str | None = None
    audience: str | None = None
    tenant_id: str | None = None


TokenCache = dict[tuple[str, str], tuple[float, str]]  # (audience, tenant) -> (signed at, token)


def collection(world: World, items: list[Item], tokens: TokenCache) -> dict[str, Any]:
    """The changeNotificationCollection for `items`; rich ones encrypted, with validationTokens.

    `tokens` keeps validation tokens between calls.
    """
    value: list[dict[str, Any]] = []
    audiences: dict[tuple[str, str], None] = {}
    for item in items:
        payload = dict(item.payload)
        if item.resource is not None and item.certificate and item.certificate_id:
            payload["encryptedContent"] = encrypt_resource(
                item.resource, item.certificate, item.certificate_id
            )
            if item.audience and item.tenant_id:
                audiences[(item.audience, item.tenant_id)] = None
        value.append(payload)
    document: dict[str, Any] = {"value": value}
    if audiences:
        document["validationTokens"] = [
            validation_token(world, audience, tenant, tokens) for audience, tenant in audiences
        ]
    return document


def validation_token(
    world: World,
    audience: str,
    tenant_id: str,
    tokens: TokenCache,
) -> str:
    now = world.clock.now()
    cached = tokens.get((audience, tenant_id))
    if cached is not None and now - cached[0] < 3600:
        return cached[1]  # Graph reuses a token for many POSTs; re-sign hourly
    claims = {
        "aud": audience,
        "iss": issuer(world, tenant_id),
        "iat": int(now),
        "nbf": int(now) - 300,
        "exp": int(now + VALIDATION_TOKEN_LIFETIME),
        "azp": CHANGE_TRACKING_APP_ID,
        "appid": CHANGE_TRACKING_APP_ID,
        "tid": tenant_id,
        "ver": "2.0",
        "uti": uuid.uuid4().hex,
    }
    token = sign_jwt(world, claims)
    tokens[(audience, tenant_id)] = (now, token)
    return token
