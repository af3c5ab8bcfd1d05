"""Rich notifications: check every validation token, check dataSignature, then decrypt.

Anything that fails is dropped, counted and logged by reason only (no key material)."""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter
from typing import Any

import httpx

from core.notification_crypto import (
    NotificationRejected,
    decrypt_content,
    issuers_for,
    validate_tokens,
)
from core.settings import ProcessSettings, TenantSettings
from workers.pipeline import FROM_NOTIFICATION

log = logging.getLogger("workers.rich")
JWKS_TTL_SECONDS = 3600.0  # the identity platform rotates keys daily; an hour is plenty fresh
_jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def fetch_jwks(tenant: TenantSettings, process: ProcessSettings) -> dict[str, Any]:
    url = f"{tenant.authority}/discovery/v2.0/keys"
    cached = _jwks_cache.get(url)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    verify: ssl.SSLContext | bool = True
    if process.ca_bundle is not None:
        verify = ssl.create_default_context(cafile=str(process.ca_bundle))
    response = httpx.get(url, verify=verify, timeout=10)
    response.raise_for_status()
    jwks: dict[str, Any] = response.json()
    _jwks_cache[url] = (time.monotonic() + JWKS_TTL_SECONDS, jwks)
    return jwks


def open_items(
    items: list[dict[str, Any]],
    tenant: TenantSettings,
    jwks: dict[str, Any],
    private_keys: dict[str, bytes],
    now: float,
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Decrypted presence objects of the items that pass every check, marked as carried by a
    notification (`FROM_NOTIFICATION`): their sequence numbers are not Graph's word."""
    opened: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    for entry in items:
        try:
            validate_tokens(
                entry.get("validationTokens"),
                jwks=jwks,
                app_ids={tenant.client_id},
                tenant_id=tenant.tenant_id,
                now=now,
                issuers=issuers_for(str(tenant.login_base_url)),
            )
            presence = decrypt_content(entry["item"]["encryptedContent"], private_keys)
            opened.append({**presence, FROM_NOTIFICATION: True})
        except NotificationRejected as exc:
            rejected[f"dropped:rich_{exc.reason}"] += 1
    if rejected:
        log.warning(
            "rich notifications rejected", extra={"tenant": tenant.name, "reasons": dict(rejected)}
        )
    return opened, rejected
