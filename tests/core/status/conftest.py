"""A tenant's settings for the status readers' tests."""

from __future__ import annotations

from pydantic import HttpUrl, SecretStr

from core.settings import TenantSettings

TENANT = "contoso"
NOW = 1_700_000_000.0


def tenant_settings(**changes: object) -> TenantSettings:
    base = TenantSettings(
        name=TENANT, tenant_id="t", client_id="c", client_secret=SecretStr("s"),
        public_base_url=HttpUrl("https://bridge.example.test"),
    )  # fmt: skip
    return base.model_copy(update=changes)
