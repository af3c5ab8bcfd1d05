"""Asterisk channels -> calls per PBX user, with no I/O.

Asterisk reports each leg of a call as a channel (`Newchannel`, `Newstate`, `Hangup`), with
its own `Uniqueid` and a `Linkedid` shared by the legs of one call. A channel belongs to a
PBX user through its endpoint: `SIP/200-00000005` is endpoint `SIP/200`, resource `200`.
A user is on a call from the moment one of their channels counts (answered, or from its
creation when ringing counts) until the last such channel of that call hangs up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from core.asterisk_options import BusyFrom

CHANNEL_UP = 6  # ChannelState of an answered channel ("Up")
CallEventType = Literal["call_started", "call_ended"]


@dataclass(frozen=True)
class CallEvent:
    type: CallEventType
    user: str
    call_id: str
    reason: str  # why: "answer", "ringing", "hangup", "resync", "max_call_length"

    def as_item(self) -> dict[str, str]:
        """The shape `/pbx/events` accepts and `process_pbx_events` reads."""
        return {"type": self.type, "user": self.user, "call_id": self.call_id}


@dataclass
class _Channel:
    uniqueid: str
    name: str
    user: str
    linkedid: str
    state: int
    call: tuple[str, str] | None = None  # (user, call id) it counts toward
    expired: bool = False  # its call was ended by the maximum call length


@dataclass
class _Call:
    started_at: float
    channels: set[str] = field(default_factory=set)


def endpoint_of(channel: str) -> str:
    """`PJSIP/alice-desk-0000002a` -> `PJSIP/alice-desk`: drop the per-channel counter."""
    head, sep, _ = channel.rpartition("-")
    return head if sep and "/" in head else channel


def _state(value: str | None) -> int:
    try:
        return int(value or "0")
    except ValueError:
        return 0


class ChannelTracker:
    """Feed it AMI events as dicts; it answers with the calls that started or ended."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        busy_from: BusyFrom = "answer",
        max_call_seconds: float | None = 4 * 3600,
        ignore_prefixes: Iterable[str] = ("Local/",),
    ) -> None:
        """`users` maps an extension (`200`) or an endpoint (`PJSIP/alice-desk`) to a user."""
        self._users = dict(users)
        self._busy_from = busy_from
        self._max = max_call_seconds
        self._ignore = tuple(ignore_prefixes)
        self._channels: dict[str, _Channel] = {}
        self._calls: dict[tuple[str, str], _Call] = {}

    def user_of(self, channel: str) -> str | None:
        if not channel or channel.startswith(self._ignore):
            return None  # Local/ legs mirror real ones; counting them would count a call twice
        endpoint = endpoint_of(channel)
        if endpoint in self._users:
            return self._users[endpoint]
        return self._users.get(endpoint.partition("/")[2] or endpoint)

    def active(self) -> dict[str, list[str]]:
        """PBX user -> the ids of the calls they are on."""
        out: dict[str, list[str]] = {}
        for user, call_id in sorted(self._calls):
            out.setdefault(user, []).append(call_id)
        return out

    def on_event(self, event: Mapping[str, str], now: float) -> list[CallEvent]:
        kind = event.get("Event")
        uniqueid = event.get("Uniqueid") or ""
        if not uniqueid:
            return []
        if kind == "Hangup":
            channel = self._channels.pop(uniqueid, None)
            return self._release(channel, "hangup")
        if kind in ("Newchannel", "Newstate"):
            return self._upsert(event, now)
        return []

    def restore(self, calls: Iterable[tuple[str, str, float]]) -> None:
        """Calls reported before this tracker existed: (user, call id, started at).

        They count, with no channel yet, until the next `reconcile`: a channel of theirs in
        the snapshot joins them without a second start; one that has none is ended.
        """
        for user, call_id, started_at in calls:
            self._calls.setdefault((user, call_id), _Call(started_at=started_at))

    def reconcile(self, snapshot: Iterable[Mapping[str, str]], now: float) -> list[CallEvent]:
        """Align with a `CoreShowChannels` list: what is gone ended, what is there counts."""
        entries = [e for e in snapshot if e.get("Uniqueid")]
        present = {e["Uniqueid"] for e in entries}
        out: list[CallEvent] = []
        for uniqueid in [u for u in self._channels if u not in present]:
            out += self._release(self._channels.pop(uniqueid), "resync")
        for entry in entries:
            out += self._upsert(entry, now, reason="resync")
        # Only restored calls can be without channels; ended after the starts above, so a
        # call whose id changed meanwhile (a transfer) never leaves the user idle in between.
        for key in [k for k, call in self._calls.items() if not call.channels]:
            del self._calls[key]
            out.append(CallEvent("call_ended", key[0], key[1], "resync"))
        return out

    def expire(self, now: float) -> list[CallEvent]:
        """End calls older than the maximum call length: a last guard against a lost Hangup."""
        if self._max is None:
            return []
        out: list[CallEvent] = []
        for key, call in list(self._calls.items()):
            if now - call.started_at < self._max:
                continue
            for uniqueid in call.channels:
                channel = self._channels[uniqueid]
                channel.call, channel.expired = None, True
            del self._calls[key]
            out.append(CallEvent("call_ended", key[0], key[1], "max_call_length"))
        return out

    def _upsert(self, event: Mapping[str, str], now: float, reason: str = "") -> list[CallEvent]:
        uniqueid = event["Uniqueid"]
        channel = self._channels.get(uniqueid)
        if channel is None:
            name = event.get("Channel") or ""
            user = self.user_of(name)
            if user is None:
                return []
            channel = _Channel(
                uniqueid=uniqueid,
                name=name,
                user=user,
                linkedid=event.get("Linkedid") or uniqueid,
                state=_state(event.get("ChannelState")),
            )
            self._channels[uniqueid] = channel
        else:
            channel.state = _state(event.get("ChannelState"))
            channel.linkedid = event.get("Linkedid") or channel.linkedid
        counts = self._busy_from == "ringing" or channel.state == CHANNEL_UP
        if not counts or channel.call is not None or channel.expired:
            return []
        # The call id is fixed when the channel starts counting, so a Linkedid that changes
        # later (transfers) cannot orphan the start of this call.
        key = (channel.user, channel.linkedid)
        channel.call = key
        call = self._calls.get(key)
        if call is not None:
            call.channels.add(uniqueid)
            return []
        self._calls[key] = _Call(started_at=now, channels={uniqueid})
        cause = reason or ("answer" if channel.state == CHANNEL_UP else "ringing")
        return [CallEvent("call_started", key[0], key[1], cause)]

    def _release(self, channel: _Channel | None, reason: str) -> list[CallEvent]:
        if channel is None or channel.call is None:
            return []
        key, channel.call = channel.call, None
        call = self._calls.get(key)
        if call is None:
            return []
        call.channels.discard(channel.uniqueid)
        if call.channels:
            return []
        del self._calls[key]
        return [CallEvent("call_ended", key[0], key[1], reason)]
