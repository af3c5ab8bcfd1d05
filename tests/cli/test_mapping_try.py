"""`presence-bridge mapping try`: the presets' and a tenant's decision and the rule behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner, Result

from cli.app import app
from cli.exit_codes import ExitCode
from emulator.harness.tenants import secret_env, tenant_toml, write_env

TENANT = "contoso"
OWN_RULES = """
[tenants.mapping]
preset = "glocom"
hold_seconds = 20
[[tenants.mapping.rules]]
availability = ["Away"]
profile = "Lunch"
"""
CALLSTATE = """
[tenants.pbx.callstate]
source = "ami"
[tenants.pbx.callstate.options]
host = "127.0.0.1"
port = 5038
username = "bridge"
"""


def tenant_env(tmp_path: Path, extra: str = OWN_RULES, pbx_extra: str = "") -> dict[str, str]:
    toml = tenant_toml(TENANT, extra=extra, pbx='adapter = "builtin"' + pbx_extra)
    secrets = {secret_env(TENANT, "CLIENT_SECRET"): "s3cret"}
    if pbx_extra:  # a call-state source needs its own secret
        secrets[secret_env(TENANT, "CALLSTATE_SECRET")] = "s3cret"
    return write_env(tmp_path, toml, **secrets)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["mapping", "try", *args], env={**(env or {}), "COLUMNS": "200"})


def as_json(result: Result) -> Any:
    assert result.exit_code == ExitCode.OK, result.output
    return orjson.loads(result.stdout)


def test_each_preset_decides_and_names_its_rule() -> None:
    report = as_json(run("--availability", "Busy", "--activity", "InACall", "--json"))
    decided = {
        name: (p["profile"], p["sticky"], p["rule"]["number"])
        for name, p in report["presets"].items()
    }
    assert decided == {
        "pascom": ("Teams Meeting", True, 1),
        "glocom": ("On Call", True, 2),
        "simple": ("Busy", False, 4),
    }


def test_the_text_form_shows_each_presets_rule() -> None:
    result = run("--availability", "Busy", "--activity", "InACall")
    assert "glocom: On Call (sticky); glocom rule 2: availability any, activity InACall" in (
        result.stdout
    )


def test_a_preset_with_no_matching_rule_leaves_the_profile_unchanged() -> None:
    report = as_json(run("--availability", "Away", "--activity", "Away", "--json"))
    assert report["presets"]["pascom"] == {"profile": None, "sticky": False, "rule": None}


def test_an_undocumented_value_is_accepted_and_marked() -> None:
    result = run("--availability", "Busy", "--activity", "Focusing", "--json")
    report = as_json(result)
    assert report["undocumented"] == ["activity 'Focusing' is not a documented value"]


def test_documented_values_in_any_case_are_not_marked() -> None:
    report = as_json(run("--availability", "busy", "--activity", "INACALL", "--json"))
    assert report["undocumented"] == []


def test_the_tenants_own_rule_wins_before_its_preset(tmp_path: Path) -> None:
    env = tenant_env(tmp_path)
    report = as_json(run("--availability", "Away", "--activity", "Away", "--tenant", TENANT,
                         "--json", env=env))  # fmt: skip
    assert (report["profile"], report["rule"]["source"], report["rule"]["number"]) == (
        "Lunch",
        "tenant",
        1,
    )


def test_the_tenants_preset_rule_is_numbered_within_the_preset(tmp_path: Path) -> None:
    env = tenant_env(tmp_path)
    report = as_json(run("--availability", "Busy", "--activity", "InACall", "--tenant", TENANT,
                         "--json", env=env))  # fmt: skip
    assert (report["profile"], report["rule"]["source"], report["rule"]["number"]) == (
        "On Call",
        "glocom",
        2,
    )


def test_a_sticky_decision_explains_the_hold(tmp_path: Path) -> None:
    env = tenant_env(tmp_path)
    result = run("--availability", "Busy", "--activity", "InACall", "--tenant", TENANT, env=env)
    assert "waits hold_seconds (20 s)" in result.stdout


def test_a_tenant_with_call_state_is_told_its_own_call_presence_is_not_mapped_back(
    tmp_path: Path,
) -> None:
    env = tenant_env(tmp_path, pbx_extra=CALLSTATE)
    report = as_json(run("--availability", "Busy", "--activity", "InACall", "--tenant", TENANT,
                         "--json", env=env))  # fmt: skip
    assert any("not mapped back" in note for note in report["notes"])


def test_an_unknown_tenant_is_a_usage_error(tmp_path: Path) -> None:
    env = tenant_env(tmp_path)
    result = run("--availability", "Busy", "--activity", "InACall", "--tenant", "nope", env=env)
    assert (result.exit_code, "unknown tenant 'nope'" in result.output) == (ExitCode.USAGE, True)


def test_both_values_are_required() -> None:
    result = run("--availability", "Busy")
    assert (result.exit_code, "--activity" in result.output) == (ExitCode.USAGE, True)


def test_a_change_during_offline_is_said_to_wait_the_hold(tmp_path: Path) -> None:
    env = tenant_env(tmp_path)
    report = as_json(run("--availability", "Offline", "--activity", "OffWork", "--tenant", TENANT,
                         "--json", env=env))  # fmt: skip
    assert any(
        "during Offline/PresenceUnknown waits hold_seconds (20 s)" in n for n in report["notes"]
    )
