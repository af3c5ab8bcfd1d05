"""BLF dialogs per extension -> calls per PBX user, with no I/O.

Each watched extension reports its dialogs (RFC 4235). A dialog counts as a call while it
is `confirmed` (or also while it rings, with busy_from="ringing"); a PBX user is on a call
from the first counting dialog of that call on any of their extensions until the last one
ends. The call id is the SIP Call-ID when the PBX names it (the same for both parties, as
Asterisk's Linkedid is), else the extension and the dialog id (Asterisk reuses "200" for
every call of extension 200: a repeat after the call ended is a new call to the bridge).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.asterisk_options import BusyFrom
from workers.callstate.channels import CallEvent
from workers.callstate.dialog_info import RINGING_STATES, Dialog

CALL_ID_PREFIX = "blf:"  # marks the calls this source reported, among all a user is on


def call_id_of(extension: str, dialog: Dialog) -> str:
    return CALL_ID_PREFIX + (dialog.call_id or f"{extension}/{dialog.id}")


def owned_call_ids(call_ids: Iterable[str]) -> list[str]:
    """The ids among a user's active calls that a blf source reported (for `known_calls`)."""
    return [c for c in call_ids if c.startswith(CALL_ID_PREFIX)]


@dataclass
class _Call:
    started_at: float
    extensions: set[str] = field(default_factory=set)  # whose dialogs count toward it


class DialogTracker:
    """Feed it each extension's dialogs as they stand; it answers with calls started/ended."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        busy_from: BusyFrom = "answer",
        max_call_seconds: float | None = 4 * 3600,
        known_calls: Mapping[str, Iterable[str]] | None = None,
        now: float = 0.0,
    ) -> None:
        """`users` maps extensions to PBX users; `known_calls` (PBX user -> call ids) are the
        calls a source reported before it restarted that the bridge still holds: one still
        in the first state of the user's extensions is taken over silently, any other is
        ended once every extension of that user has reported.
        """
        self._users = dict(users)
        self._busy_from = busy_from
        self._max = max_call_seconds
        self._legs: dict[str, dict[str, bool]] = {}  # extension -> call id -> expired
        self._calls: dict[tuple[str, str], _Call] = {}
        self._unsettled: dict[str, set[str]] = {}  # user -> extensions yet to report
        self._orphans: list[CallEvent] = []
        for user, call_ids in (known_calls or {}).items():
            extensions = {e for e, u in self._users.items() if u == user}
            for call_id in owned_call_ids(call_ids):
                if extensions:
                    self._calls[(user, call_id)] = _Call(started_at=now)
                    self._unsettled[user] = extensions
                else:
                    self._orphans.append(CallEvent("call_ended", user, call_id, "resync"))

    def take_orphans(self) -> list[CallEvent]:
        """Known calls of users none of whose extensions is watched any more: they end now."""
        out, self._orphans = self._orphans, []
        return out

    def user_of(self, extension: str) -> str | None:
        return self._users.get(extension)

    def active(self) -> dict[str, list[str]]:
        """PBX user -> the ids of the calls they are on."""
        out: dict[str, list[str]] = {}
        for user, call_id in sorted(self._calls):
            out.setdefault(user, []).append(call_id)
        return out

    def counts(self, dialog: Dialog) -> bool:
        if dialog.state == "confirmed":
            return True
        return self._busy_from == "ringing" and dialog.state in RINGING_STATES

    def update(
        self, extension: str, dialogs: Iterable[Dialog], now: float, reason: str = ""
    ) -> list[CallEvent]:
        """The extension's dialogs now (all of them, not a change); `reason` overrides why."""
        user = self.user_of(extension)
        if user is None:
            return []
        counting: dict[str, Dialog] = {}
        for dialog in dialogs:
            if self.counts(dialog):
                counting.setdefault(call_id_of(extension, dialog), dialog)
        legs = self._legs.setdefault(extension, {})
        out: list[CallEvent] = []
        for call_id in [c for c in legs if c not in counting]:
            expired = legs.pop(call_id)
            if not expired:
                out += self._release(user, extension, call_id, reason or "hangup")
        for call_id, dialog in counting.items():
            if call_id in legs:
                continue
            legs[call_id] = False
            call = self._calls.get((user, call_id))
            if call is not None:
                call.extensions.add(extension)  # another extension of this call, or taken over
                continue
            self._calls[(user, call_id)] = _Call(started_at=now, extensions={extension})
            cause = reason or ("answer" if dialog.state == "confirmed" else "ringing")
            out.append(CallEvent("call_started", user, call_id, cause))
        return out + self._settle(user, extension)

    def forget(self, extension: str) -> list[CallEvent]:
        """The extension's dialogs can no longer be known (its subscription was refused)."""
        user = self.user_of(extension)
        if user is None:
            return []
        out: list[CallEvent] = []
        for call_id, expired in self._legs.pop(extension, {}).items():
            if not expired:
                out += self._release(user, extension, call_id, "resync")
        return out + self._settle(user, extension)

    def expire(self, now: float) -> list[CallEvent]:
        """End calls older than the maximum call length: a last guard against a lost NOTIFY."""
        if self._max is None:
            return []
        out: list[CallEvent] = []
        for key, call in list(self._calls.items()):
            if now - call.started_at < self._max:
                continue
            for extension in call.extensions:
                self._legs[extension][key[1]] = True  # ignored until that dialog ends
            del self._calls[key]
            out.append(CallEvent("call_ended", key[0], key[1], "max_call_length"))
        return out

    def _release(self, user: str, extension: str, call_id: str, reason: str) -> list[CallEvent]:
        call = self._calls.get((user, call_id))
        if call is None:
            return []
        call.extensions.discard(extension)
        if call.extensions:
            return []
        del self._calls[(user, call_id)]
        return [CallEvent("call_ended", user, call_id, reason)]

    def _settle(self, user: str, extension: str) -> list[CallEvent]:
        """Once all of a user's extensions reported, known calls nobody took over end."""
        waiting = self._unsettled.get(user)
        if waiting is None:
            return []
        waiting.discard(extension)
        if waiting:
            return []
        del self._unsettled[user]
        out: list[CallEvent] = []
        for key, call in list(self._calls.items()):
            if key[0] == user and not call.extensions:
                del self._calls[key]
                out.append(CallEvent("call_ended", user, key[1], "resync"))
        return out
