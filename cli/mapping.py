"""`presence-bridge mapping try`: what the presets, or a tenant's rules, make of a Teams presence.

Pure apart from reading the settings for `--tenant`: nothing is written, Redis is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer
from rich.markup import escape

from cli.common import Session, err, out, print_json
from core.settings import MappingPreset, MappingSettings, RuleSettings, TenantSettings
from workers.mapping import (
    DOCUMENTED_ACTIVITY,
    DOCUMENTED_AVAILABILITY,
    compile_rules,
    explain,
    normalise,
)
from workers.mapping_presets import PRESETS, preset_rules

app = typer.Typer(help="See what the mapping decides for a Teams presence.", no_args_is_help=True)

# What the bridge itself sets in Teams while a PBX user is on a call (workers/call_presence.py).
CALL_PRESENCE = ("busy", "inacall")
# Teams reports these for a moment when a client restarts (workers/profile_state.py).
BLIP_VALUES = frozenset({"offline", "presenceunknown"})


@dataclass(frozen=True)
class Outcome:
    """One rule set's decision and the rule (from the tenants file or a preset) that made it."""

    profile: str | None
    sticky: bool
    source: str | None  # "tenant" or the preset's name; None when no rule matched
    number: int | None  # 1-based within its source
    rule: RuleSettings | None

    def as_dict(self) -> dict[str, Any]:
        matched = None
        if self.rule is not None:
            matched = {"source": self.source, "number": self.number, **self.rule.model_dump()}
        return {"profile": self.profile, "sticky": self.sticky, "rule": matched}


def outcome(mapping: MappingSettings, availability: str, activity: str) -> Outcome:
    explained = explain(compile_rules(mapping), availability, activity)
    decision, index = explained.decision, explained.index
    if index is None:
        return Outcome(decision.profile, decision.sticky, None, None, None)
    # compile_rules puts the tenant's own rules first, then the preset's, in order.
    own = len(mapping.rules)
    if index < own:
        return Outcome(decision.profile, decision.sticky, "tenant", index + 1, mapping.rules[index])
    rule = preset_rules(mapping.preset)[index - own]
    return Outcome(decision.profile, decision.sticky, mapping.preset, index - own + 1, rule)


def undocumented(availability: str, activity: str) -> list[str]:
    found = []
    if normalise(availability) not in DOCUMENTED_AVAILABILITY:
        found.append(f"availability {availability!r} is not a documented value")
    if normalise(activity) not in DOCUMENTED_ACTIVITY:
        found.append(f"activity {activity!r} is not a documented value")
    return found


def tenant_notes(
    tenant: TenantSettings, result: Outcome, availability: str, activity: str
) -> list[str]:
    """What the profile state machine and call presence add to the bare decision."""
    hold = tenant.mapping.hold_seconds
    notes = []
    if result.sticky:
        notes.append(
            "sticky: automatic decisions do not replace it while it lasts; when its condition "
            f"ends, the next profile waits hold_seconds ({hold:g} s): the one the rules then "
            "decide, or the one shown before it when they leave the profile unchanged"
        )
    if normalise(availability) in BLIP_VALUES or normalise(activity) in BLIP_VALUES:
        notes.append(
            f"a change decided during Offline/PresenceUnknown waits hold_seconds ({hold:g} s) "
            "and applies only if nothing else was decided meanwhile"
        )
    if tenant.pbx.callstate is not None and (normalise(availability), normalise(activity)) == (
        CALL_PRESENCE
    ):
        notes.append(
            "Busy/InACall is also what the bridge sets in Teams while this PBX user is on a "
            "call; that presence of its own is not mapped back onto the PBX"
        )
    return notes


def describe(result: Outcome) -> str:
    shown = result.profile or "leave unchanged"
    shown += " (sticky)" if result.sticky else ""
    if result.rule is None:
        return f"{shown}; no rule matched"
    where = "tenant rule" if result.source == "tenant" else f"{result.source} rule"
    return f"{shown}; {where} {result.number}: {rule_text(result.rule)}"


def rule_text(rule: RuleSettings) -> str:
    availability = ", ".join(rule.availability) or "any"
    activity = ", ".join(rule.activity) or "any"
    return f"availability {availability}, activity {activity}"


@app.command("try")
def try_(
    availability: str = typer.Option(..., "--availability", help="Teams availability, e.g. Busy."),
    activity: str = typer.Option(..., "--activity", help="Teams activity, e.g. InACall."),
    tenant: str | None = typer.Option(
        None, "--tenant", help="Use this tenant's rules (its own, then its preset's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """What each shipped preset, or the tenant's rules, decide for a presence, and which rule."""
    warnings = undocumented(availability, activity)
    report: dict[str, Any] = {
        "availability": availability,
        "activity": activity,
        "undocumented": warnings,
    }
    if tenant is None:
        results = {
            name: outcome(MappingSettings(preset=name), availability, activity)
            for name in _preset_names()
        }
        report["presets"] = {name: r.as_dict() for name, r in results.items()}
        lines = [f"  {name}: {describe(r)}" for name, r in results.items()]
    else:
        with Session() as session:
            settings = session.tenant(tenant)
        result = outcome(settings.mapping, availability, activity)
        notes = tenant_notes(settings, result, availability, activity)
        mapping = settings.mapping
        report |= {
            "tenant": settings.name,
            "preset": mapping.preset,
            "own_rules": len(mapping.rules),
            "hold_seconds": mapping.hold_seconds,
            **result.as_dict(),
            "notes": notes,
        }
        lines = [
            f"  tenant {settings.name} (preset {mapping.preset}, "
            f"{len(mapping.rules)} own rule(s)): {describe(result)}",
            *(f"  {note}" for note in notes),
        ]
    if as_json:
        print_json(report)
    else:
        out.print(escape(f"{availability}/{activity}"))
        for line in lines:
            out.print(escape(line))
    for warning in warnings:
        err.print(f"[yellow]note:[/yellow] {escape(warning)} (accepted: Graph adds new ones)")


def _preset_names() -> list[MappingPreset]:
    return list(PRESETS)
