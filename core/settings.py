"""Settings: environment variables plus a tenants file, validated once into frozen objects.

Secrets come only from the environment and are `SecretStr`, so reprs and errors hide them.
Every problem is reported at once, each with its key path, in one `ConfigError`; so is a
`PRESENCE_BRIDGE_*` variable that nothing reads (a typo must not silently drop a setting).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import standard_webhooks
from core.asterisk_options import AmiSourceOptions, AsteriskOptions
from core.blf_options import BlfSourceOptions
from core.errors import ConfigError

ENV_PREFIX = "PRESENCE_BRIDGE_"
TENANT_SECRETS = (
    "CLIENT_SECRET",
    "CERT_PASSPHRASE",
    "PBX_SECRET",
    "CALLSTATE_SECRET",
    "PBX_EVENTS_SECRET",
)
# The names PaaS platforms (Heroku, Dokku, Render) set, used when ours are unset.
PLATFORM_VARIABLES = {f"{ENV_PREFIX}REDIS_URL": "REDIS_URL", f"{ENV_PREFIX}PORT": "PORT"}
# Read by `make run` (scripts/run.py) before it starts the processes.
LAUNCHER_VARIABLES = ("DEMO", "DEMO_DIR", "RUN_DIR")
GRAPH_ATTRIBUTES = ("userPrincipalName", "mail", "mailNickname", "onPremisesSamAccountName")
PBX_ATTRIBUTES = ("username", "email", "extension")
# A guess at a key this long (of random characters) is hopeless; a short one is refused at boot.
MIN_ADMIN_KEY_CHARS = 32
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# The shipped mapping presets (workers/mapping_presets.py holds their rules).
MappingPreset = Literal["pascom", "glocom", "simple"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CertificateCredential(_Frozen):
    """An app certificate: PEM private key on disk, its SHA-1 thumbprint (hex)."""

    private_key_path: Path
    thumbprint: str = Field(pattern=r"^[0-9A-Fa-f]{40}$")
    public_certificate_path: Path | None = None
    passphrase: SecretStr | None = None


class RuleSettings(_Frozen):
    """One mapping rule: Teams availability/activity (any listed; empty = any) -> profile."""

    availability: list[str] = []
    activity: list[str] = []
    profile: str | None = None  # None: leave the PBX profile unchanged
    sticky: bool = False


class MappingSettings(_Frozen):
    preset: MappingPreset = "simple"
    rules: list[RuleSettings] = []  # tried before the preset's rules
    hold_seconds: float = Field(default=15.0, ge=0, le=600)


class MatchingSettings(_Frozen):
    graph_attribute: Literal[
        "userPrincipalName", "mail", "mailNickname", "onPremisesSamAccountName"
    ] = "userPrincipalName"
    pbx_attribute: Literal["username", "email", "extension"] = "username"
    strip_domain: bool = False


class PbxUser(_Frozen):
    """A PBX user from the tenants file (the directory when the adapter cannot list users)."""

    username: str
    email: str | None = None
    extension: str | None = None
    enabled: bool | None = None  # per-user override; None follows the tenant
    graph_id: str | None = None  # a static link to a Graph user id, for small sites


class AmiCallState(_Frozen):
    """`[tenants.pbx.callstate]` with `source = "ami"`: Asterisk's own calls over AMI."""

    source: Literal["ami"]
    options: AmiSourceOptions
    secret: SecretStr | None = None  # from PRESENCE_BRIDGE_TENANT_<NAME>_CALLSTATE_SECRET


class BlfCallState(_Frozen):
    """`[tenants.pbx.callstate]` with `source = "blf"`: SIP dialog events (BLF) per extension."""

    source: Literal["blf"]
    options: BlfSourceOptions
    secret: SecretStr | None = None  # the digest password, when the PBX challenges SUBSCRIBE


# Where the PBX's own calls are read (PBX -> Teams); `source` picks the options' type.
CallStateSettings = Annotated[AmiCallState | BlfCallState, Field(discriminator="source")]
CALL_SOURCES = ("ami", "blf")


class PbxSettings(_Frozen):
    adapter: Literal["builtin", "sip", "http", "asterisk"] = "builtin"
    # Typed here for `asterisk` (asterisk_options); the other adapters validate their own.
    options: dict[str, Any] = {}
    secret: SecretStr | None = None  # from PRESENCE_BRIDGE_TENANT_<NAME>_PBX_SECRET
    callstate: CallStateSettings | None = None
    _asterisk: AsteriskOptions | None = PrivateAttr(default=None)

    @field_validator("options")
    @classmethod
    def _asterisk_options_valid(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # A field validator, so these problems are listed with those of the other fields; its
        # ValidationError keeps each problem's key path below `options`.
        if info.data.get("adapter") == "asterisk":
            AsteriskOptions.model_validate(value)
        return value

    @model_validator(mode="after")
    def _typed_options(self) -> PbxSettings:
        if self.adapter == "asterisk":
            self._asterisk = AsteriskOptions.model_validate(self.options)
        return self

    @property
    def asterisk_options(self) -> AsteriskOptions:
        if self._asterisk is None:
            raise ValueError(f"the {self.adapter} adapter has no Asterisk options")
        return self._asterisk


class TenantSettings(_Frozen):
    name: str
    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    certificate: CertificateCredential | None = None
    login_base_url: HttpUrl = HttpUrl("https://login.microsoftonline.com")
    graph_base_url: HttpUrl = HttpUrl("https://graph.microsoft.com")
    public_base_url: HttpUrl
    enabled: bool = True
    rich_notifications: bool = False
    service_accounts: list[str] = []  # UPNs of the delegated accounts that hold subscriptions
    mapping: MappingSettings = MappingSettings()
    matching: MatchingSettings = MatchingSettings()
    pbx: PbxSettings = PbxSettings()
    pbx_users: list[PbxUser] = []
    # `POST /pbx/events` for this tenant only: Standard Webhooks `whsec_` secrets, from
    # PRESENCE_BRIDGE_TENANT_<NAME>_PBX_EVENTS_SECRET, comma-separated (several: rotation).
    pbx_events_secret: SecretStr | None = None

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lowercase letters, digits and '-' (at most 63)")
        return value

    @field_validator("pbx_events_secret")
    @classmethod
    def _tenant_standard_webhooks_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        return _checked_standard_webhooks_secrets(value)

    @model_validator(mode="after")
    def _one_credential(self) -> TenantSettings:
        if self.client_secret is None and self.certificate is None:
            raise ValueError(
                f"needs a client secret ({secret_env_name(self.name, 'CLIENT_SECRET')}) "
                "or a [certificate] table"
            )
        return self

    def pbx_extensions(self) -> dict[str, str]:
        """PBX username -> extension, for the users the tenants file gives one."""
        return {u.username: u.extension for u in self.pbx_users if u.extension}

    def users_by_extension(self) -> dict[str, str]:
        """Extension (the username when none is given) -> PBX username, for call sources."""
        return {(u.extension or u.username): u.username for u in self.pbx_users}

    @property
    def authority(self) -> str:
        return f"{str(self.login_base_url).rstrip('/')}/{self.tenant_id}"


class TenantsFile(_Frozen):
    tenants: list[TenantSettings] = []

    @model_validator(mode="after")
    def _unique_names(self) -> TenantsFile:
        names = [t.name for t in self.tenants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tenant names must be unique: {', '.join(dupes)}")
        return self


class ProcessSettings(BaseSettings):
    """Settings of the processes themselves, from PRESENCE_BRIDGE_* variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    tenants_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    web_workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cache_key: SecretStr | None = None  # encrypts token caches at rest (Fernet key)
    admin_api_key: SecretStr | None = None
    # `GET /metrics` wants `Authorization: Bearer <this>` when set; open when unset.
    metrics_token: SecretStr | None = None
    # Addresses (or networks, or `*`) of the TLS proxy whose X-Forwarded-Proto and
    # X-Forwarded-For the web process believes: the scheme and client address it reports.
    forwarded_allow_ips: str = "127.0.0.1"
    # `POST /pbx/events`, deprecated fallback: Standard Webhooks `whsec_` secrets, comma-
    # separated, that sign events of every tenant without its own PBX_EVENTS_SECRET.
    pbx_events_secret: SecretStr | None = None
    # The old `X-Presence-Bridge-Signature` scheme's secret, accepted for one release only.
    pbx_events_legacy_secret: SecretStr | None = None
    ca_bundle: Path | None = None  # extra CA for Graph/login (the emulator's)
    coalesce_window_ms: int = Field(default=100, ge=0, le=10_000)
    # The clock's schedules, in seconds.
    reconcile_every: float = Field(default=60.0, ge=5, le=1800)
    directory_every: float = Field(default=300.0, ge=10, le=86_400)
    sweep_every: float = Field(default=300.0, ge=10, le=86_400)
    pbx_reconcile_every: float = Field(default=60.0, ge=5, le=3600)
    # A call-state listener that dies is replaced by another host after this long.
    callstate_lock_seconds: float = Field(default=15.0, ge=1, le=300)
    # Graph echoes a bulk subscription's resource (up to 650 ids, ~26 KB) in every item, so
    # a batch of 100 changes is ~2.7 MB: a 1 MiB cap would 413 real traffic into 4 h of retries.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)

    @field_validator("admin_api_key")
    @classmethod
    def _long_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_ADMIN_KEY_CHARS} characters "
                "(make one with `openssl rand -hex 32`)"
            )
        return value

    @field_validator("metrics_token")
    @classmethod
    def _token_given(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty: unset it to leave /metrics open, or give a token")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item[:64]!r} is not an IP address or network (comma-separated, or *)"
                ) from None
        return value

    @field_validator("pbx_events_secret")
    @classmethod
    def _standard_webhooks_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        return _checked_standard_webhooks_secrets(value)


def _checked_standard_webhooks_secrets(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        try:
            standard_webhooks.parse_secrets(value.get_secret_value())
        except ValueError as exc:
            raise ValueError(
                f"{exc} (make one with `echo whsec_$(openssl rand -base64 32)`; the secret "
                f"of the old X-Presence-Bridge-Signature goes in "
                f"{ENV_PREFIX}PBX_EVENTS_LEGACY_SECRET)"
            ) from None
    return value


class Settings(BaseModel):
    """Everything a process needs, built once at start."""

    model_config = ConfigDict(frozen=True)

    process: ProcessSettings
    tenants: tuple[TenantSettings, ...] = ()

    def tenant(self, name: str) -> TenantSettings | None:
        return next((t for t in self.tenants if t.name == name), None)


def secret_env_name(tenant: str, what: str) -> str:
    return f"{ENV_PREFIX}TENANT_{tenant.upper().replace('-', '_')}_{what}"


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for i, part in enumerate(loc):
        if i and loc[i - 1] == "callstate" and part in CALL_SOURCES:
            continue  # the union's tag: `source` already says which
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(root)"


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    return [f"{_loc(prefix, tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]


def _inject_secrets(raw: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Put env secrets into the raw tenants; secrets written in the file are refused."""
    problems: list[str] = []
    tenants = raw.get("tenants", [])
    if not isinstance(tenants, list):
        return problems
    for i, tenant in enumerate(tenants):
        if not isinstance(tenant, dict):
            continue
        for key in ("client_secret", "pbx_events_secret"):
            if key in tenant:
                problems.append(
                    f"tenants[{i}].{key}: secrets belong in the environment, not the file"
                )
        name = str(tenant.get("name", ""))
        secret = env.get(secret_env_name(name, "CLIENT_SECRET"))
        if secret:
            tenant["client_secret"] = secret
        events_secret = env.get(secret_env_name(name, "PBX_EVENTS_SECRET"))
        if events_secret:
            tenant["pbx_events_secret"] = events_secret
        pbx_secret = env.get(secret_env_name(name, "PBX_SECRET"))
        if pbx_secret:
            tenant.setdefault("pbx", {})
            if isinstance(tenant["pbx"], dict):
                tenant["pbx"]["secret"] = pbx_secret
        problems += _pbx_secrets(i, name, tenant.get("pbx"), env)
        passphrase = env.get(secret_env_name(name, "CERT_PASSPHRASE"))
        if passphrase and isinstance(tenant.get("certificate"), dict):
            tenant["certificate"]["passphrase"] = passphrase
    return problems


def _pbx_secrets(i: int, name: str, pbx: object, env: Mapping[str, str]) -> list[str]:
    """Put the call source's secret in; name each secret that is missing (AMI needs one)."""
    if not isinstance(pbx, dict):
        return []
    problems: list[str] = []
    if pbx.get("adapter") == "asterisk" and not pbx.get("secret"):
        variable = secret_env_name(name, "PBX_SECRET")
        problems.append(f"tenants[{i}].pbx.secret: the AMI user's secret is required ({variable})")
    callstate = pbx.get("callstate")
    if isinstance(callstate, dict):
        if "secret" in callstate:
            problems.append(
                f"tenants[{i}].pbx.callstate.secret: secrets belong in the environment, "
                "not the file"
            )
        variable = secret_env_name(name, "CALLSTATE_SECRET")
        if env.get(variable):
            callstate["secret"] = env[variable]
        elif callstate.get("source") == "ami":  # blf: only a PBX that challenges needs one
            problems.append(
                f"tenants[{i}].pbx.callstate.secret: the AMI user's secret is required ({variable})"
            )
    return problems


def _shared_events_secrets(
    process: ProcessSettings, tenants: tuple[TenantSettings, ...]
) -> list[str]:
    """A tenant's PBX-events secret must be its own: one another tenant holds signs for both."""
    holders: dict[bytes, str] = {}
    if process.pbx_events_secret is not None:
        for key in standard_webhooks.parse_secrets(process.pbx_events_secret.get_secret_value()):
            holders[key] = f"{ENV_PREFIX}PBX_EVENTS_SECRET"
    problems: list[str] = []
    for tenant in tenants:
        if tenant.pbx_events_secret is None:
            continue
        variable = secret_env_name(tenant.name, "PBX_EVENTS_SECRET")
        for key in standard_webhooks.parse_secrets(tenant.pbx_events_secret.get_secret_value()):
            other = holders.setdefault(key, variable)
            if other != variable:
                problems.append(f"{variable}: a secret also in {other}; each tenant needs its own")
    return problems


def _tenant_names(raw: dict[str, Any]) -> list[str]:
    tenants = raw.get("tenants", [])
    if not isinstance(tenants, list):
        return []
    return [str(t.get("name", "")) for t in tenants if isinstance(t, dict)]


def _unknown_variables(env: Mapping[str, str], tenant_names: list[str] | None) -> list[str]:
    """`PRESENCE_BRIDGE_*` names nothing reads, each with the closest known name if any.

    A tenant secret counts as known when its tenant is in the file; while the file cannot be
    read (reported on its own), every tenant secret does.
    """
    known = {name.upper() for name in ProcessSettings.model_fields} | set(LAUNCHER_VARIABLES)
    if tenant_names is not None:
        expected = (secret_env_name(n, s) for n in tenant_names for s in TENANT_SECRETS)
        known |= {name[len(ENV_PREFIX) :] for name in expected}
    problems: list[str] = []
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable[len(ENV_PREFIX) :]
        if name in known or (
            tenant_names is None and name.startswith("TENANT_") and name.endswith(TENANT_SECRETS)
        ):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        problems.append(f"{variable}: not a setting of presence-bridge{hint}")
    return problems


def _platform_settings(env: Mapping[str, str]) -> dict[str, str]:
    """What the platform's own variables set; a `PRESENCE_BRIDGE_*` one still wins."""
    found = {ours: env[theirs] for ours, theirs in PLATFORM_VARIABLES.items() if env.get(theirs)}
    if f"{ENV_PREFIX}PORT" in found:
        # A platform that gives a PORT routes to it from outside the container or dyno, so
        # the web process must listen on every interface there, not on loopback.
        found[f"{ENV_PREFIX}HOST"] = "0.0.0.0"  # noqa: S104
    return found


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings or raise one ConfigError that lists every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    process: ProcessSettings | None = None
    try:
        borrowed = _platform_settings(env)
        scoped = {**borrowed, **{k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}}
        process = _process_from(scoped)
    except ValidationError as exc:
        for e in exc.errors():
            name = f"{ENV_PREFIX}{str(e['loc'][0]).upper()}"
            source = name if name in env else PLATFORM_VARIABLES.get(name, name)
            problems.append(f"{source}: {e['msg']}")

    tenants: tuple[TenantSettings, ...] = ()
    path = env.get(f"{ENV_PREFIX}TENANTS_FILE") or None
    names: list[str] | None = [] if path is None else None  # None: not known (no readable file)
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            problems.append(f"{ENV_PREFIX}TENANTS_FILE: {path} does not exist")
            raw = None
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{path}: not valid TOML: {exc}")
            raw = None
        if raw is not None:
            names = _tenant_names(raw)
            problems += _inject_secrets(raw, env)
            try:
                tenants = tuple(TenantsFile.model_validate(raw).tenants)
            except ValidationError as exc:
                problems += _problems(exc, "")
    if process is not None:
        problems += _shared_events_secrets(process, tenants)
    needs_cache = any(t.service_accounts for t in tenants)
    if process is not None and needs_cache and process.cache_key is None:
        problems.append(f"{ENV_PREFIX}CACHE_KEY: required to keep service-account tokens")
    problems += _unknown_variables(env, names)
    if problems or process is None:
        raise ConfigError(problems)
    return Settings(process=process, tenants=tenants)


def load_or_exit(process_name: str) -> Settings:
    """A process's settings; else every problem on stderr and exit status 2 (a config error)."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"presence-bridge {process_name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _process_from(scoped: Mapping[str, str]) -> ProcessSettings:
    # BaseSettings reads os.environ itself; feed it the mapping we were given instead.
    values = {k[len(ENV_PREFIX) :].lower(): v for k, v in scoped.items()}
    known = set(ProcessSettings.model_fields)
    return ProcessSettings.model_validate({k: v for k, v in values.items() if k in known})
