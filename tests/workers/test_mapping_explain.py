"""`explain`: the same decision as `decide`, and the rule that made it."""

from __future__ import annotations

from itertools import product

import pytest

from core.settings import MappingSettings, RuleSettings
from workers.mapping import (
    DOCUMENTED_ACTIVITY,
    DOCUMENTED_AVAILABILITY,
    LEAVE_UNCHANGED,
    Decision,
    compile_rules,
    decide,
    explain,
)
from workers.mapping_presets import PRESETS


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_explain_decides_what_decide_decides_for_every_documented_pair(preset: str) -> None:
    ruleset = compile_rules(MappingSettings.model_validate({"preset": preset}))
    values = [*DOCUMENTED_AVAILABILITY, *DOCUMENTED_ACTIVITY, "Focusing", "SomethingNew", None]
    mismatched = [
        (a, b)
        for a, b in product(values, values)
        if explain(ruleset, a, b).decision != decide(ruleset, a, b)
    ]
    assert mismatched == []


def test_explain_names_the_first_rule_that_matches() -> None:
    mapping = MappingSettings(
        preset="simple",
        rules=[
            RuleSettings(activity=["InAMeeting"], profile="Meeting"),
            RuleSettings(availability=["Busy"], profile="Mine"),
        ],
    )
    assert explain(compile_rules(mapping), "busy", "INACALL").index == 1


def test_explain_points_into_the_preset_after_the_tenants_rules() -> None:
    mapping = MappingSettings(
        preset="pascom", rules=[RuleSettings(availability=["Away"], profile="Away")]
    )
    explained = explain(compile_rules(mapping), "Busy", "InACall")
    assert (explained.index, explained.decision) == (1, Decision("Teams Meeting", sticky=True))


def test_explain_without_a_matching_rule_leaves_the_profile_unchanged() -> None:
    explained = explain(compile_rules(MappingSettings(preset="pascom")), "Away", "Away")
    assert (explained.index, explained.decision) == (None, LEAVE_UNCHANGED)
