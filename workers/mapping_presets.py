"""The shipped mapping presets, as data in the same shape an operator writes in the tenants file.

docs/mapping.md shows each one as a table; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from core.settings import MappingPreset, RuleSettings

AVAILABLE: Final = "Available"
AWAY: Final = "Away"
BUSY: Final = "Busy"
DO_NOT_DISTURB: Final = "Do Not Disturb"
ON_CALL: Final = "On Call"
TEAMS_MEETING: Final = "Teams Meeting"

# Teams reports Offline/PresenceUnknown while people still sit at their desk phone, and
# for a moment when a client restarts: the field learned to leave the PBX alone then.
_IGNORE_OFFLINE = RuleSettings(availability=["Offline", "PresenceUnknown"], profile=None)

# Focusing is not in Graph's documented list but appears in newer pages and in the field.
_DND_ACTIVITIES = ["Presenting", "DoNotDisturb", "UrgentInterruptionsOnly", "Focusing"]

# pascom's MS365 connector switches to a sticky "Teams Meeting" client profile and touches
# nothing else; the state machine restores the profile from before when the meeting ends.
PASCOM: Final = (
    RuleSettings(
        activity=["InAMeeting", "InACall", "InAConferenceCall", "Presenting"],
        profile=TEAMS_MEETING,
        sticky=True,
    ),
)

# gloCOM mirrors Teams (Bicom's own sync). "On Call" is sticky so that a call which is also
# a meeting (Teams alternating InACall / InAMeeting) does not flap between On Call and Busy.
# Order is precedence: call > do not disturb > busy > away > available.
GLOCOM: Final = (
    _IGNORE_OFFLINE,
    RuleSettings(activity=["InACall", "InAConferenceCall"], profile=ON_CALL, sticky=True),
    RuleSettings(activity=_DND_ACTIVITIES, profile=DO_NOT_DISTURB),
    RuleSettings(availability=["DoNotDisturb"], profile=DO_NOT_DISTURB),
    RuleSettings(activity=["InAMeeting", "Busy"], profile=BUSY),
    RuleSettings(availability=["Busy", "BusyIdle"], profile=BUSY),
    RuleSettings(activity=["Away", "BeRightBack"], profile=AWAY),
    RuleSettings(availability=["Away", "BeRightBack"], profile=AWAY),
    RuleSettings(availability=["Available", "AvailableIdle"], profile=AVAILABLE),
)

# Four profiles most PBXs have; do not disturb outranks busy because it also stops calls.
SIMPLE: Final = (
    _IGNORE_OFFLINE,
    RuleSettings(activity=_DND_ACTIVITIES, profile=DO_NOT_DISTURB),
    RuleSettings(availability=["DoNotDisturb"], profile=DO_NOT_DISTURB),
    RuleSettings(activity=["InACall", "InAConferenceCall", "InAMeeting", "Busy"], profile=BUSY),
    RuleSettings(availability=["Busy", "BusyIdle"], profile=BUSY),
    RuleSettings(activity=["Away", "BeRightBack"], profile=AWAY),
    RuleSettings(availability=["Away", "BeRightBack"], profile=AWAY),
    RuleSettings(availability=["Available", "AvailableIdle"], profile=AVAILABLE),
)

PRESETS: Final[Mapping[MappingPreset, tuple[RuleSettings, ...]]] = MappingProxyType(
    {"pascom": PASCOM, "glocom": GLOCOM, "simple": SIMPLE}
)


def preset_rules(name: MappingPreset) -> tuple[RuleSettings, ...]:
    """The rules of a shipped preset."""
    return PRESETS[name]
