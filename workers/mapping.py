"""Teams presence -> PBX profile: ordered rules, compiled once into a lookup table.

Pure: no I/O. Graph documents PascalCase values but its newest pages show camelCase and
new values appear over time, so matching is case-insensitive and never raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Final

from core.settings import MappingSettings, RuleSettings
from workers.mapping_presets import preset_rules


@dataclass(frozen=True, slots=True)
class Decision:
    """A PBX profile to show, or none (leave the PBX profile unchanged)."""

    profile: str | None = None
    sticky: bool = False


LEAVE_UNCHANGED: Final = Decision()


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule; values are normalised and an empty set matches any value."""

    availability: frozenset[str]
    activity: frozenset[str]
    decision: Decision

    def matches(self, availability: str | None, activity: str | None) -> bool:
        """Both arguments normalised; None is a value no list names, matched by "any" only."""
        return (not self.availability or availability in self.availability) and (
            not self.activity or activity in self.activity
        )


def normalise(value: object) -> str | None:
    """The form values are compared in; None (for a non-string) matches no list."""
    return value.strip().casefold() if isinstance(value, str) else None


def rule_from(settings: RuleSettings) -> Rule:
    # A blank profile name cannot exist on any PBX; treat it like "leave unchanged".
    profile = settings.profile if settings.profile and settings.profile.strip() else None
    decision = Decision(profile, settings.sticky) if profile is not None else LEAVE_UNCHANGED
    return Rule(
        availability=frozenset(v.strip().casefold() for v in settings.availability),
        activity=frozenset(v.strip().casefold() for v in settings.activity),
        decision=decision,
    )


def first_match(rules: Sequence[Rule], availability: str | None, activity: str | None) -> Decision:
    """The decision of the first rule that matches normalised values (the slow, plain path)."""
    for rule in rules:
        if rule.matches(availability, activity):
            return rule.decision
    return LEAVE_UNCHANGED


@dataclass(frozen=True)
class RuleSet:
    """Rules plus a table over every value they name; other values share one column."""

    rules: tuple[Rule, ...]
    _availabilities: frozenset[str] = field(repr=False)
    _activities: frozenset[str] = field(repr=False)
    # None stands for "a value no rule names": all such values match exactly the same rules.
    _table: Mapping[tuple[str | None, str | None], Decision] = field(repr=False)

    def decide(self, availability: object, activity: object) -> Decision:
        a, b = normalise(availability), normalise(activity)
        a = a if a in self._availabilities else None
        b = b if b in self._activities else None
        return self._table[(a, b)]


def build_rule_set(rules: Iterable[Rule]) -> RuleSet:
    ordered = tuple(rules)
    availabilities = frozenset(v for r in ordered for v in r.availability)
    activities = frozenset(v for r in ordered for v in r.activity)
    table: dict[tuple[str | None, str | None], Decision] = {}
    for a, b in product([*availabilities, None], [*activities, None]):
        table[(a, b)] = first_match(ordered, a, b)
    return RuleSet(ordered, availabilities, activities, table)


def compile_rules(mapping: MappingSettings) -> RuleSet:
    """The tenant's own rules first, then its preset's."""
    return build_rule_set(rule_from(r) for r in (*mapping.rules, *preset_rules(mapping.preset)))


def decide(rules: RuleSet, availability: object, activity: object) -> Decision:
    return rules.decide(availability, activity)


# Graph's documented values (docs: presence resource); others are accepted, as new ones appear.
DOCUMENTED_AVAILABILITY: Final = frozenset(
    v.casefold()
    for v in (
        "Available", "AvailableIdle", "Away", "BeRightBack", "Busy", "BusyIdle",
        "DoNotDisturb", "Offline", "PresenceUnknown",
    )
)  # fmt: skip
DOCUMENTED_ACTIVITY: Final = frozenset(
    v.casefold()
    for v in (
        "Available", "Away", "BeRightBack", "Busy", "DoNotDisturb", "InACall",
        "InAConferenceCall", "Inactive", "InAMeeting", "Offline", "OffWork", "OutOfOffice",
        "PresenceUnknown", "Presenting", "UrgentInterruptionsOnly",
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decision and the position in `RuleSet.rules` of the rule that made it (None: no rule)."""

    decision: Decision
    index: int | None


def explain(rules: RuleSet, availability: object, activity: object) -> Explanation:
    """What `decide` decides, and which rule matched: the plain first-match walk, for operators."""
    a, b = normalise(availability), normalise(activity)
    for index, rule in enumerate(rules.rules):
        if rule.matches(a, b):
            return Explanation(rule.decision, index)
    return Explanation(LEAVE_UNCHANGED, None)
