"""Typed options of the Asterisk parts: the AMI connection, the `asterisk` adapter and the
`ami` call-state source. The settings validate them at start with every other problem.
"""

from __future__ import annotations

import ssl
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_PORT = 5038  # 5039 is the usual TLS port (manager.conf tlsbindaddr)
_HOST = r"^[A-Za-z0-9.:\[\]-]+$"
_MANAGER_USER = r"^[A-Za-z0-9._@-]+$"
# Asterisk writes only Custom: device states and CustomPresence: providers.
_CUSTOM_DEVICE = r"^Custom:[A-Za-z0-9_.+{}-]+$"
_PROVIDER = r"^CustomPresence:[A-Za-z0-9_.+{}-]+$"

PresenceState = Literal["not_set", "unavailable", "available", "away", "xa", "chat", "dnd"]
PRESENCE_STATES: frozenset[str] = frozenset(get_args(PresenceState))
BusyFrom = Literal["answer", "ringing"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AmiEndpoint(_Frozen):
    """Where and as whom to log in. The secret is passed separately and never stored here."""

    host: str = Field(pattern=_HOST)
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    username: str = Field(pattern=_MANAGER_USER)
    tls: bool = False
    tls_ca_file: str | None = None  # else the system's trust store
    tls_server_name: str | None = None  # else `host`
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    timeout: float = Field(default=5.0, gt=0, le=60)  # one action, answer included

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.tls_ca_file)

    @property
    def server_name(self) -> str:
        return self.tls_server_name or self.host


class ProfileTarget(_Frozen):
    """What one bridge profile looks like on Asterisk."""

    dnd: bool
    state: PresenceState
    message: str | None = None  # None: the profile's name


def _targets(*rows: tuple[str, bool, PresenceState]) -> dict[str, ProfileTarget]:
    return {name: ProfileTarget(dnd=dnd, state=state) for name, dnd, state in rows}


# Every profile the shipped mapping presets produce. Order matters for reading back: the
# first target that matches what Asterisk shows names the profile.
DEFAULT_PROFILES = _targets(
    ("Available", False, "available"),
    ("Away", False, "away"),
    ("Do Not Disturb", True, "dnd"),
    ("Teams Meeting", True, "dnd"),
    ("Busy", True, "dnd"),
    ("On Call", True, "dnd"),
)


def _with_extension(template: str) -> str:
    if "{extension}" not in template:
        raise ValueError(f"{template!r} must contain {{extension}}")
    return template


class AsteriskOptions(AmiEndpoint):
    """`[tenants.pbx.options]` for the `asterisk` adapter."""

    dnd: bool = True  # write FreePBX DND (routes calls)
    dnd_device_states: list[Annotated[str, Field(pattern=_CUSTOM_DEVICE)]] = Field(
        default_factory=lambda: ["Custom:DND{extension}"]
    )
    # FreePBX also lights Custom:DEVDND<device> for each device in AstDB AMPUSER/<ext>/device.
    dnd_per_device: bool = True
    presence: bool = True  # write CustomPresence (shown by Digium/Sangoma phones only)
    presence_provider: str = Field(default="CustomPresence:{extension}", pattern=_PROVIDER)
    profiles: dict[str, ProfileTarget] = Field(default_factory=lambda: dict(DEFAULT_PROFILES))
    default: ProfileTarget | None = None  # for a profile not in `profiles`; else an error
    verify: bool = True  # read presence back after writing it

    @field_validator("dnd_device_states")
    @classmethod
    def _devices_name_the_extension(cls, value: list[str]) -> list[str]:
        return [_with_extension(v) for v in value]

    @field_validator("presence_provider")
    @classmethod
    def _provider_names_the_extension(cls, value: str) -> str:
        return _with_extension(value)


class AmiSourceOptions(AmiEndpoint):
    """`[tenants.pbx.callstate.options]` of the `ami` call-state source."""

    busy_from: BusyFrom = "answer"
    max_call_seconds: float = Field(default=4 * 3600, gt=0)
    ignore_channels: list[str] = Field(default_factory=lambda: ["Local/"])
    ping_interval: float = Field(default=20.0, gt=0, le=600)
    backoff_initial: float = Field(default=0.5, gt=0, le=60)
    backoff_max: float = Field(default=30.0, gt=0, le=3600)
    stable_after: float = Field(default=30.0, ge=0)  # a connection this old resets the backoff
