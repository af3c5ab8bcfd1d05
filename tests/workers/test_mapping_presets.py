"""Every Teams availability x activity pair, per shipped preset, against hand-written tables."""

from __future__ import annotations

from typing import get_args

import pytest

from core.settings import MappingPreset, MappingSettings
from workers.mapping import LEAVE_UNCHANGED, Decision, compile_rules
from workers.mapping_presets import PRESETS

# Graph's documented availability and activity values, written out here on purpose.
AVAILABILITIES = (
    "Available",
    "AvailableIdle",
    "Away",
    "BeRightBack",
    "Busy",
    "BusyIdle",
    "DoNotDisturb",
    "Offline",
    "PresenceUnknown",
)
ACTIVITIES = (
    "Available",
    "Away",
    "BeRightBack",
    "Busy",
    "DoNotDisturb",
    "InACall",
    "InAConferenceCall",
    "Inactive",
    "InAMeeting",
    "Offline",
    "OffWork",
    "OutOfOffice",
    "PresenceUnknown",
    "Presenting",
    "UrgentInterruptionsOnly",
)

CODES = {
    "-": LEAVE_UNCHANGED,
    "A": Decision("Available"),
    "W": Decision("Away"),
    "B": Decision("Busy"),
    "D": Decision("Do Not Disturb"),
    "C": Decision("On Call", sticky=True),
    "M": Decision("Teams Meeting", sticky=True),
}

# Columns follow ACTIVITIES: Available Away BeRightBack Busy DoNotDisturb InACall
# InAConferenceCall Inactive InAMeeting Offline OffWork OutOfOffice PresenceUnknown
# Presenting UrgentInterruptionsOnly.
TABLES = {
    "pascom": """
        Available        - - - - - M M - M - - - - M -
        AvailableIdle    - - - - - M M - M - - - - M -
        Away             - - - - - M M - M - - - - M -
        BeRightBack      - - - - - M M - M - - - - M -
        Busy             - - - - - M M - M - - - - M -
        BusyIdle         - - - - - M M - M - - - - M -
        DoNotDisturb     - - - - - M M - M - - - - M -
        Offline          - - - - - M M - M - - - - M -
        PresenceUnknown  - - - - - M M - M - - - - M -
    """,
    "glocom": """
        Available        A W W B D C C A B A A A A D D
        AvailableIdle    A W W B D C C A B A A A A D D
        Away             W W W B D C C W B W W W W D D
        BeRightBack      W W W B D C C W B W W W W D D
        Busy             B B B B D C C B B B B B B D D
        BusyIdle         B B B B D C C B B B B B B D D
        DoNotDisturb     D D D D D C C D D D D D D D D
        Offline          - - - - - - - - - - - - - - -
        PresenceUnknown  - - - - - - - - - - - - - - -
    """,
    "simple": """
        Available        A W W B D B B A B A A A A D D
        AvailableIdle    A W W B D B B A B A A A A D D
        Away             W W W B D B B W B W W W W D D
        BeRightBack      W W W B D B B W B W W W W D D
        Busy             B B B B D B B B B B B B B D D
        BusyIdle         B B B B D B B B B B B B B D D
        DoNotDisturb     D D D D D D D D D D D D D D D
        Offline          - - - - - - - - - - - - - - -
        PresenceUnknown  - - - - - - - - - - - - - - -
    """,
}


def parse_table(text: str) -> dict[tuple[str, str], Decision]:
    expected: dict[tuple[str, str], Decision] = {}
    for line in text.strip().splitlines():
        availability, *codes = line.split()
        assert len(codes) == len(ACTIVITIES), availability
        for activity, code in zip(ACTIVITIES, codes, strict=True):
            expected[(availability, activity)] = CODES[code]
    assert set(a for a, _ in expected) == set(AVAILABILITIES)
    return expected


CASES = [
    pytest.param(preset, availability, activity, decision, id=f"{preset}-{availability}-{activity}")
    for preset, text in TABLES.items()
    for (availability, activity), decision in parse_table(text).items()
]

RULE_SETS = {
    "pascom": compile_rules(MappingSettings(preset="pascom")),
    "glocom": compile_rules(MappingSettings(preset="glocom")),
    "simple": compile_rules(MappingSettings(preset="simple")),
}


def test_every_pair_is_covered() -> None:
    assert len(CASES) == 3 * len(AVAILABILITIES) * len(ACTIVITIES)


@pytest.mark.parametrize(("preset", "availability", "activity", "expected"), CASES)
def test_preset_maps_pair(
    preset: str, availability: str, activity: str, expected: Decision
) -> None:
    assert RULE_SETS[preset].decide(availability, activity) == expected


@pytest.mark.parametrize(("preset", "availability", "activity", "expected"), CASES)
def test_preset_maps_camel_case_spelling(
    preset: str, availability: str, activity: str, expected: Decision
) -> None:
    # Graph's newest reference pages spell values in camelCase.
    camel = (availability[0].lower() + availability[1:], activity[0].lower() + activity[1:])
    assert RULE_SETS[preset].decide(*camel) == expected


@pytest.mark.parametrize("preset", sorted(TABLES))
def test_preset_leaves_unknown_values_unchanged(preset: str) -> None:
    assert RULE_SETS[preset].decide("Focusing", "SomethingNew") == LEAVE_UNCHANGED


@pytest.mark.parametrize("preset", ["glocom", "simple"])
def test_focusing_activity_means_do_not_disturb(preset: str) -> None:
    assert RULE_SETS[preset].decide("DoNotDisturb", "Focusing") == Decision("Do Not Disturb")


def test_every_preset_the_settings_accept_is_shipped() -> None:
    assert set(PRESETS) == set(get_args(MappingPreset))
