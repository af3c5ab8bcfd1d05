"""The recorded Asterisk 20 system: its AMI traffic (recordings/), its manager user, hints."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from emulator.ami.rules import ManagerUser

RECORDINGS = Path(__file__).parent / "recordings"


def recorded(name: str) -> list[dict[str, str]]:
    """A recording, one dict per AMI event in wire order, without the recorder's `_t`."""
    path = RECORDINGS / f"{name}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("_")} for line in lines]


def recorded_call() -> list[dict[str, str]]:
    """The recorded call 200 -> 201: every event from the first Newchannel to the last Hangup."""
    events = recorded("ami-call-events")
    kinds = [e["Event"] for e in events]
    first = kinds.index("Newchannel")
    last = len(kinds) - 1 - kinds[::-1].index("Hangup")
    return events[first : last + 1]


def renumbered(events: Iterable[Mapping[str, str]], tag: str) -> list[dict[str, str]]:
    """The same call again with other channel ids, so replays can overlap."""
    out = []
    for event in events:
        copy = dict(event)
        for key, value in event.items():
            is_id = key.endswith(("Uniqueid", "Linkedid")) and "Bridge" not in key
            if is_id or (key.endswith("Channel") and "-" in value):
                copy[key] = f"{value}{tag}"
        out.append(copy)
    return out


# The manager user of the recorded system.
RECORDED_USER = ManagerUser.of(
    "checksecret",
    read="system,call,log,verbose,agent,user,config,dtmf,reporting,cdr,dialplan",
    write="system,call,agent,user,config,command,reporting,originate",
)
# The hints of the recorded system (context `internal`).
RECORDED_HINTS = {
    ("internal", "200"): "SIP/200&Custom:200,CustomPresence:200",
    ("internal", "201"): "SIP/201,CustomPresence:201",
}
