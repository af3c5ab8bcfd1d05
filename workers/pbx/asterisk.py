"""The `asterisk` adapter: Do Not Disturb that routes, and CustomPresence for phones that show
it, written over AMI and read back from Asterisk itself.

DND is FreePBX's own: AstDB `DND/<ext>` = `YES` (its dialplan sends callers to the busy
treatment), plus the `Custom:DND<ext>` device state its hints carry so BLF keys light up.
Presence is `PRESENCE_STATE(CustomPresence:<ext>)` = `state,subtype,message`: Asterisk only
accepts its seven states, splits the value at commas and base64-decodes the message when a
fourth part contains an `e`, so the message is sanitised and the result is read back.
One adapter serves one Asterisk and is used by one thread at a time.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr, ValidationError

from core.asterisk_options import AsteriskOptions, ProfileTarget
from core.errors import ConfigError, PbxError, options_error
from workers.pbx.ami import AmiClient, AmiConnectionError, AmiEndpoint, AmiRefused
from workers.pbx.ami_wire import ActionResult
from workers.pbx.base import PbxUserRecord, ProfileChange

DND_FAMILY = "DND"
DND_ON = "YES"
DEVICE_ON, DEVICE_OFF = "BUSY", "UNAVAILABLE"  # what FreePBX writes to Custom:DND<ext>
MAX_MESSAGE_CHARS = 200  # Asterisk decodes at most 255 bytes; an AMI line at most 1024
_EXTENSION = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
_SPACES = re.compile(r"\s+")
# Permanent refusals that name a missing manager.conf write class: say which one.
_NEEDS = {
    "DBPut": "system",
    "DBDel": "system",
    "Setvar": "call",
    "DBGet": "system or reporting",
    "PresenceState": "call or reporting",
}
# Refusals worth retrying: the AstDB write failed, or Asterisk is on its way down.
_TRANSIENT_REASONS = {"Failed to update entry", "Asterisk is shutting down"}


@dataclass(frozen=True)
class AsteriskState:
    """What Asterisk shows for one extension; None where that half is not used."""

    dnd: bool | None
    state: str | None
    message: str | None


def sanitise_message(text: str) -> str:
    """A message Asterisk stores and shows verbatim: no commas, no control characters."""
    cleaned = "".join(" " if unicodedata.category(ch).startswith(("C", "Z")) else ch for ch in text)
    cleaned = cleaned.replace(",", ";")  # a comma would start the subtype/options fields
    cleaned = _SPACES.sub(" ", cleaned).strip()
    return cleaned[:MAX_MESSAGE_CHARS].rstrip()


class AsteriskAdapter:
    name = "asterisk"

    def __init__(
        self,
        options: AsteriskOptions | Mapping[str, Any],
        secret: SecretStr | None,
        extensions: Mapping[str, str] | None = None,
        *,
        client_factory: Callable[[AmiEndpoint, str], AmiClient] | None = None,
    ) -> None:
        """`extensions` maps PBX usernames to extensions (pbx_users[].extension)."""
        if isinstance(options, AsteriskOptions):
            self.options = options  # validated with the settings
        else:
            try:
                self.options = AsteriskOptions.model_validate(dict(options))
            except ValidationError as exc:
                raise options_error(exc, "pbx.options") from None
        if secret is None:
            raise ConfigError(["pbx.secret: the AMI user's secret is required"])
        self._secret = secret
        self._extensions = dict(extensions or {})
        self._factory = client_factory or (lambda e, s: AmiClient(e, s, events="off"))
        self._client: AmiClient | None = None

    def __repr__(self) -> str:
        o = self.options
        where = f"{o.username}@{o.host}:{o.port}"
        return f"AsteriskAdapter({where}, dnd={o.dnd}, presence={o.presence})"

    # --- the PbxAdapter protocol -------------------------------------------------------------

    def list_users(self) -> list[PbxUserRecord] | None:
        return None  # AMI has no user directory; the tenants file lists users

    def apply_profile(self, change: ProfileChange) -> None:
        ext = self.extension_of(change.user)
        target = self.target_for(change.profile)
        if self.options.dnd:
            self._write_dnd(ext, target.dnd)
        if self.options.presence:
            message = sanitise_message(target.message or change.profile)
            self._setvar(f"PRESENCE_STATE({self.provider_of(ext)})", f"{target.state},,{message}")
            if self.options.verify:
                shown = self._read_presence(ext)
                if shown != (target.state, message):
                    raise PbxError(
                        f"asterisk: {self.provider_of(ext)} shows {shown!r} after writing "
                        f"{(target.state, message)!r}",
                        transient=False,
                    )

    def read_profile(self, user: str) -> str | None:
        """The profile whose target matches what Asterisk shows; None when none does."""
        return self.profile_for(self.read_state(user))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- reading -----------------------------------------------------------------------------

    def read_state(self, user: str) -> AsteriskState:
        ext = self.extension_of(user)
        dnd = None
        if self.options.dnd:
            found = self._call("DBGet", {"Family": DND_FAMILY, "Key": ext}, missing_ok=True)
            value = found.events[0].get("Val") if found is not None and found.events else None
            dnd = (value or "").upper() == DND_ON
        state = message = None
        if self.options.presence:
            state, message = self._read_presence(ext)
        return AsteriskState(dnd=dnd, state=state, message=message)

    def profile_for(self, shown: AsteriskState) -> str | None:
        """Exact match first, then state alone, then DND alone (the half that routes)."""

        def dnd_ok(t: ProfileTarget) -> bool:
            return shown.dnd is None or t.dnd == shown.dnd

        rows = list(self.options.profiles.items())
        if shown.state is not None:
            for name, t in rows:
                if (
                    dnd_ok(t)
                    and t.state == shown.state
                    and (sanitise_message(t.message or name) == shown.message)
                ):
                    return name
            for name, t in rows:
                if dnd_ok(t) and t.state == shown.state:
                    return name
        if shown.dnd is not None:
            for name, t in rows:
                if t.dnd == shown.dnd:
                    return name
        return None

    def profiles_for(self, shown: AsteriskState) -> list[str]:
        """Every profile `profile_for` could name from what is known (the halves not None)."""
        rows = [(n, t) for n, t in self.options.profiles.items()
                if shown.dnd is None or t.dnd == shown.dnd]  # fmt: skip
        if shown.state is not None:
            same = [(n, t) for n, t in rows if t.state == shown.state]
            exact = [n for n, t in same if sanitise_message(t.message or n) == shown.message]
            return exact or [n for n, _ in same]
        return [n for n, _ in rows]

    # --- helpers -----------------------------------------------------------------------------

    def extension_of(self, user: str) -> str:
        ext = self._extensions.get(user, user)
        if not _EXTENSION.match(ext):
            # It is spliced into AstDB keys and function arguments: no '/', ',', ')' or ':'.
            raise PbxError(f"asterisk: {user!r} has no usable extension ({ext!r})", transient=False)
        return ext

    def target_for(self, profile: str) -> ProfileTarget:
        target = self.options.profiles.get(profile, self.options.default)
        if target is None:
            raise PbxError(
                f"asterisk: no target for profile {profile!r}; add it to pbx.options.profiles "
                "or set pbx.options.default",
                transient=False,
            )
        return target

    def provider_of(self, ext: str) -> str:
        """The CustomPresence provider of an extension (its PresenceStateChange `Presentity`)."""
        return self.options.presence_provider.format(extension=ext)

    def dnd_devices_of(self, ext: str) -> list[str]:
        """The device states that carry an extension's DND (FreePBX's per-device ones aside)."""
        return [template.format(extension=ext) for template in self.options.dnd_device_states]

    def _write_dnd(self, ext: str, on: bool) -> None:
        if on:
            self._call("DBPut", {"Family": DND_FAMILY, "Key": ext, "Val": DND_ON})
        elif self._call("DBGet", {"Family": DND_FAMILY, "Key": ext}, missing_ok=True):
            # DBDel of a key that is not there is an error in Asterisk: only delete a real one.
            self._call("DBDel", {"Family": DND_FAMILY, "Key": ext})
        devices = self.dnd_devices_of(ext)
        if self.options.dnd_per_device:
            devices += [f"Custom:DEVDND{d}" for d in self._freepbx_devices(ext)]
        for device in devices:
            self._setvar(f"DEVICE_STATE({device})", DEVICE_ON if on else DEVICE_OFF)

    def _freepbx_devices(self, ext: str) -> list[str]:
        """The devices FreePBX lists for a user; none on a plain Asterisk."""
        found = self._call("DBGet", {"Family": "AMPUSER", "Key": f"{ext}/device"}, missing_ok=True)
        value = found.events[0].get("Val") if found is not None and found.events else None
        return [d for d in (value or "").split("&") if _EXTENSION.match(d)]

    def _read_presence(self, ext: str) -> tuple[str, str]:
        answer = self._call("PresenceState", {"Provider": self.provider_of(ext)})
        assert answer is not None
        # The answer's first Message: is its own ("Presence State"); PresenceMessage is ours.
        return (answer.get("State") or "", answer.get("PresenceMessage") or "")

    def _setvar(self, variable: str, value: str) -> None:
        self._call("Setvar", {"Variable": variable, "Value": value})

    def _session(self) -> AmiClient:
        if self._client is None:
            client = self._factory(self.options, self._secret.get_secret_value())
            client.connect()
            self._client = client
        return self._client

    def _call(
        self, action: str, headers: Mapping[str, str], *, missing_ok: bool = False
    ) -> ActionResult | None:
        """One action; a broken reused session is reopened once (every write is idempotent)."""
        for attempt in (1, 2):
            reused = self._client is not None
            try:
                return self._session().action(action, headers)
            except AmiConnectionError as exc:
                self._client = None
                if reused and attempt == 1:
                    continue
                raise PbxError(f"asterisk: {exc}", transient=True) from exc
            except AmiRefused as exc:
                if exc.action == "Login":
                    self._client = None
                    raise PbxError(f"asterisk: {exc}", transient=False) from exc
                if missing_ok and exc.reason == "Database entry not found":
                    return None
                hint = ""
                if exc.reason == "Permission denied" and action in _NEEDS:
                    hint = f" (the manager user needs write = {_NEEDS[action]})"
                transient = exc.reason in _TRANSIENT_REASONS
                raise PbxError(f"asterisk: {exc}{hint}", transient=transient) from exc
        raise AssertionError("unreachable")
