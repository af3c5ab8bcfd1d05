"""Rule matching: order, wildcards, case, unknown values, the tenant's rules before the preset's."""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

import pytest

from core.settings import MappingSettings, RuleSettings, load_settings
from workers.mapping import (
    LEAVE_UNCHANGED,
    Decision,
    RuleSet,
    build_rule_set,
    compile_rules,
    decide,
    first_match,
    normalise,
    rule_from,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mapping.md"


def rules(*settings: RuleSettings) -> RuleSet:
    return build_rule_set(rule_from(s) for s in settings)


def test_availability_rule_matches_any_activity() -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], profile="Busy"))
    assert decide(ruleset, "Busy", "Anything") == Decision("Busy")


def test_activity_rule_matches_any_availability() -> None:
    ruleset = rules(RuleSettings(activity=["InAMeeting"], profile="Meeting"))
    assert decide(ruleset, "Whatever", "InAMeeting") == Decision("Meeting")


def test_rule_needs_both_lists_to_match() -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], activity=["InACall"], profile="Call"))
    assert decide(ruleset, "Busy", "InAMeeting") == LEAVE_UNCHANGED


def test_rule_with_both_lists_matches_pair() -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], activity=["InACall"], profile="Call"))
    assert decide(ruleset, "Busy", "InACall") == Decision("Call")


def test_rule_with_empty_lists_matches_everything() -> None:
    ruleset = rules(RuleSettings(profile="Catch All"))
    assert decide(ruleset, "Offline", "OffWork") == Decision("Catch All")


def test_first_matching_rule_wins() -> None:
    ruleset = rules(
        RuleSettings(activity=["InACall"], profile="On Call"),
        RuleSettings(availability=["Busy"], profile="Busy"),
    )
    assert decide(ruleset, "Busy", "InACall") == Decision("On Call")


def test_no_matching_rule_leaves_profile_unchanged() -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], profile="Busy"))
    assert decide(ruleset, "Available", "Available") == LEAVE_UNCHANGED


def test_rule_without_profile_stops_later_rules() -> None:
    ruleset = rules(
        RuleSettings(availability=["Offline"], profile=None),
        RuleSettings(profile="Catch All"),
    )
    assert decide(ruleset, "Offline", "Offline") == LEAVE_UNCHANGED


def test_sticky_flag_is_carried() -> None:
    ruleset = rules(RuleSettings(activity=["InAMeeting"], profile="Meeting", sticky=True))
    assert decide(ruleset, "Busy", "InAMeeting") == Decision("Meeting", sticky=True)


@pytest.mark.parametrize("profile", ["", "   "])
def test_blank_profile_leaves_unchanged(profile: str) -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], profile=profile, sticky=True))
    assert decide(ruleset, "Busy", "Busy") == LEAVE_UNCHANGED


def test_profile_name_is_kept_verbatim() -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], profile=" Büro  (Meeting) "))
    assert decide(ruleset, "Busy", "Busy").profile == " Büro  (Meeting) "


@pytest.mark.parametrize(
    ("availability", "activity"),
    [
        ("busy", "inacall"),
        ("BUSY", "INACALL"),
        ("bUsY", "inACall"),
        (" Busy ", "\tInACall\n"),
    ],
)
def test_input_values_match_case_insensitively(availability: str, activity: str) -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], activity=["InACall"], profile="Call"))
    assert decide(ruleset, availability, activity) == Decision("Call")


def test_rule_values_match_case_insensitively() -> None:
    ruleset = rules(RuleSettings(availability=["BUSY"], activity=["inacall"], profile="Call"))
    assert decide(ruleset, "Busy", "InACall") == Decision("Call")


def test_german_sharp_s_is_folded() -> None:
    # casefold, not lower: an operator's own value list may carry such spellings.
    ruleset = rules(RuleSettings(activity=["STRASSE"], profile="Street"))
    assert decide(ruleset, "Available", "straße") == Decision("Street")


@pytest.mark.parametrize("value", ["Focusing", "", "   ", "Busy!", None, 42, 3.5, ["Busy"]])
def test_unknown_values_fall_through_to_wildcard_rule(value: object) -> None:
    ruleset = rules(
        RuleSettings(availability=["Busy"], profile="Busy"),
        RuleSettings(activity=["InACall"], profile="Call"),
        RuleSettings(profile="Fallback"),
    )
    assert decide(ruleset, value, value) == Decision("Fallback")


@pytest.mark.parametrize("value", ["Focusing", "", None, 42])
def test_unknown_values_without_wildcard_leave_unchanged(value: object) -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], profile="Busy"))
    assert decide(ruleset, value, value) == LEAVE_UNCHANGED


def test_unknown_activity_still_matches_on_availability() -> None:
    ruleset = rules(RuleSettings(availability=["Busy"], profile="Busy"))
    assert decide(ruleset, "Busy", "SomethingNew") == Decision("Busy")


def test_operator_can_name_values_graph_does_not_document() -> None:
    ruleset = rules(RuleSettings(activity=["Focusing"], profile="Focus"))
    assert decide(ruleset, "DoNotDisturb", "focusing") == Decision("Focus")


def test_tenant_rules_come_before_preset() -> None:
    mapping = MappingSettings(
        preset="pascom", rules=[RuleSettings(activity=["InAMeeting"], profile="Meeting Room")]
    )
    assert decide(compile_rules(mapping), "Busy", "InAMeeting") == Decision("Meeting Room")


def test_preset_still_applies_where_tenant_rules_do_not_match() -> None:
    mapping = MappingSettings(
        preset="pascom", rules=[RuleSettings(activity=["InAMeeting"], profile="Meeting Room")]
    )
    assert decide(compile_rules(mapping), "Busy", "InACall") == Decision(
        "Teams Meeting", sticky=True
    )


def test_tenant_rule_without_profile_silences_preset_rule() -> None:
    mapping = MappingSettings(preset="glocom", rules=[RuleSettings(availability=["Away"])])
    assert decide(compile_rules(mapping), "Away", "Away") == LEAVE_UNCHANGED


def test_tenant_rule_can_add_a_profile_the_preset_ignores() -> None:
    mapping = MappingSettings(
        preset="glocom", rules=[RuleSettings(availability=["Offline"], profile="Offline")]
    )
    assert decide(compile_rules(mapping), "Offline", "OffWork") == Decision("Offline")


def test_compiling_leaves_settings_untouched() -> None:
    mapping = MappingSettings(preset="simple", rules=[RuleSettings(availability=["Busy"])])
    compile_rules(mapping)
    assert mapping.rules == [RuleSettings(availability=["Busy"])]


# The compiled table must agree with trying the rules one by one, also for values the
# rules do not name (they share one column of the table).
_MIXED = (
    RuleSettings(availability=["Busy"], activity=["InACall", "Focusing"], profile="Call"),
    RuleSettings(availability=["DoNotDisturb"], profile=None),
    RuleSettings(activity=["InAMeeting"], profile="Meeting", sticky=True),
    RuleSettings(availability=["Away", "BeRightBack"], activity=["Away"], profile="Away"),
    RuleSettings(availability=["Available"], profile="Available"),
)
_VALUES = ["Busy", "DoNotDisturb", "Away", "BeRightBack", "Available", "Offline", "Nope", ""]
_ACTS = ["InACall", "Focusing", "InAMeeting", "Away", "Available", "Nope", ""]


@pytest.mark.parametrize(("availability", "activity"), list(product(_VALUES, _ACTS)))
def test_compiled_table_agrees_with_rule_order(availability: str, activity: str) -> None:
    compiled = [rule_from(s) for s in _MIXED]
    expected = first_match(compiled, normalise(availability), normalise(activity))
    assert decide(build_rule_set(compiled), availability, activity) == expected


def _docs_toml() -> str:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, "docs/mapping.md should hold exactly one TOML example"
    return str(blocks[0])


def _docs_rules(tmp_path: Path) -> RuleSet:
    path = tmp_path / "tenants.toml"
    path.write_text(_docs_toml(), encoding="utf-8")
    settings = load_settings(
        {
            "PRESENCE_BRIDGE_TENANTS_FILE": str(path),
            "PRESENCE_BRIDGE_TENANT_CONTOSO_CLIENT_SECRET": "not-a-real-secret",
        }
    )
    tenant = settings.tenant("contoso")
    assert tenant is not None
    return compile_rules(tenant.mapping)


@pytest.mark.parametrize(
    ("availability", "activity", "expected"),
    [
        ("Busy", "InAMeeting", Decision("Teams Meeting", sticky=True)),
        ("DoNotDisturb", "Presenting", Decision("Teams Meeting", sticky=True)),
        ("DoNotDisturb", "DoNotDisturb", Decision("DND")),
        ("Available", "OutOfOffice", Decision("Out of Office")),
        ("Away", "Away", LEAVE_UNCHANGED),
        ("Available", "Available", LEAVE_UNCHANGED),
    ],
)
def test_docs_example_loads_and_maps(
    tmp_path: Path, availability: str, activity: str, expected: Decision
) -> None:
    assert decide(_docs_rules(tmp_path), availability, activity) == expected
