"""The profile a user sets on Asterisk, read from the AMI events it raises, with no I/O.

A phone or the dialplan that sets CustomPresence raises `PresenceStateChange` (the provider
in `Presentity`); FreePBX's DND codes (*76, *78, *79) set `DEVICE_STATE(Custom:DND<ext>)`,
which raises `DeviceStateChange`. Both are in the `call` read class. What each event shows is
kept per user and named by the `asterisk` adapter's own rules (`profile_for`), so a report
says what `read_profile` would read. An event sees one half (DND or presence): the report
lists every profile that half fits, so our own write, which raises the DND event before the
presence one, is known for ours in between (`ProfileReport.matches`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from core.errors import PbxError
from core.queue import ProfileReport
from workers.pbx.asterisk import DEVICE_ON, AsteriskAdapter, AsteriskState

SOURCE = "ami"
DND_OFF_STATES = frozenset({"NOT_INUSE", "UNAVAILABLE"})  # FreePBX's off, and the adapter's


class ProfileWatch:
    """Feed it every AMI event; it answers the report a user's own change makes, if any."""

    def __init__(self, adapter: AsteriskAdapter, users: Iterable[str]) -> None:
        self.adapter = adapter
        options = adapter.options
        self._devices: dict[str, str] = {}  # device state name (lower case) -> user
        self._providers: dict[str, str] = {}  # presence provider (lower case) -> user
        for user in users:
            try:
                ext = adapter.extension_of(user)
            except PbxError:
                continue  # the adapter refuses to write it too
            if options.dnd:
                self._devices.update({d.lower(): user for d in adapter.dnd_devices_of(ext)})
            if options.presence:
                self._providers[adapter.provider_of(ext).lower()] = user
        self._shown: dict[str, AsteriskState] = {}

    def on_event(self, event: Mapping[str, str], at: float) -> ProfileReport | None:
        kind = event.get("Event", "")
        if kind == "DeviceStateChange":
            user = self._devices.get(event.get("Device", "").lower())
            value = event.get("State", "").upper()
            if user is None or (value != DEVICE_ON and value not in DND_OFF_STATES):
                return None
            half = AsteriskState(dnd=value == DEVICE_ON, state=None, message=None)
            shown = replace(self._known(user), dnd=half.dnd)
        elif kind == "PresenceStateChange":
            user = self._providers.get(event.get("Presentity", "").lower())
            if user is None:
                return None
            half = AsteriskState(dnd=None, state=event.get("Status", "").lower(),
                                 message=event.get("Message", ""))  # fmt: skip
            shown = replace(self._known(user), state=half.state, message=half.message)
        else:
            return None
        self._shown[user] = shown
        profile = self.adapter.profile_for(shown)
        if profile is None:
            return None  # no profile looks like this: nothing to restore to
        matches = tuple(p for p in self.adapter.profiles_for(half) if p != profile)
        return ProfileReport(user, profile, SOURCE, at, on_pbx=True, matches=matches)

    def _known(self, user: str) -> AsteriskState:
        return self._shown.get(user) or AsteriskState(dnd=None, state=None, message=None)
