"""Typed options of the `blf` call-state source (SIP dialog events, RFC 4235). The settings
validate them at start with every other problem; workers/callstate/blf.py uses them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.asterisk_options import BusyFrom

_SIP_WORD = r"^[A-Za-z0-9.!%*_+`'~-]+$"
_HOST = r"^[A-Za-z0-9.:\[\]-]+$"


class BlfSourceOptions(BaseModel):
    """`[tenants.pbx.callstate.options]` of the `blf` call-state source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(pattern=_HOST)  # where SUBSCRIBEs go (the PBX or its proxy)
    port: int = Field(default=5060, ge=1, le=65535)
    transport: Literal["udp"] = "udp"
    domain: str = Field(pattern=_HOST)  # AOR host: sip:<extension>@<domain>
    from_user: str = Field(default="presence-bridge", pattern=_SIP_WORD)
    auth_user: str | None = Field(default=None, pattern=_SIP_WORD)  # digest; else from_user
    bind_host: str = Field(default="0.0.0.0", pattern=_HOST)  # noqa: S104 - NOTIFYs come in
    bind_port: int = Field(default=0, ge=0, le=65535)  # 0: any free port
    # The address NOTIFYs are sent to (Contact); default: the one that reaches `host`.
    contact_host: str | None = Field(default=None, pattern=_HOST)
    expires: int = Field(default=600, ge=10, le=86400)
    refresh_at: float = Field(default=0.8, gt=0.1, lt=1.0)  # share of the granted lifetime
    subscribes_per_second: float = Field(default=50.0, gt=0, le=10_000)
    timeout: float = Field(default=8.0, gt=0, le=64)  # one transaction, retransmits included
    t1: float = Field(default=0.5, gt=0, le=5)
    busy_from: BusyFrom = "answer"
    max_call_seconds: float = Field(default=4 * 3600, gt=0)
    retry_initial: float = Field(default=2.0, gt=0, le=3600)  # after a failed SUBSCRIBE
    retry_max: float = Field(default=300.0, gt=0, le=86400)  # also after a refusal (403/404)
    user_agent: str = Field(default="presence-bridge", max_length=100)
