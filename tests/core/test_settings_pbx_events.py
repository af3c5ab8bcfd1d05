"""The `/pbx/events` secrets: a list of Standard Webhooks secrets, and the old scheme's one."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import load_settings
from core.standard_webhooks import new_secret, parse_secrets

VARIABLE = "PRESENCE_BRIDGE_PBX_EVENTS_SECRET"


def test_several_secrets_load_in_their_order() -> None:
    current, previous = new_secret(), new_secret()
    secret = load_settings({VARIABLE: f"{current},{previous}"}).process.pbx_events_secret
    assert secret is not None
    assert parse_secrets(secret.get_secret_value()) == (
        parse_secrets(current) + parse_secrets(previous)
    )


def test_no_secret_leaves_the_route_closed() -> None:
    assert load_settings({}).process.pbx_events_secret is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("pbx-events-secret-that-is-long-enough", "the secret does not start with 'whsec_'"),
        ("whsec_c2hvcnQ=", "the secret must decode to 24 to 64 bytes"),
        (f"{new_secret()},my-previous-key", "secret 2 of 2 does not start with 'whsec_'"),
        ("", "empty"),
    ],
)
def test_a_bad_secret_stops_the_boot_with_a_remedy_and_without_its_text(
    value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({VARIABLE: value})
    [problem] = caught.value.problems
    assert problem.startswith(f"{VARIABLE}: ") and reason in problem
    assert "openssl rand -base64 32" in problem
    assert "PRESENCE_BRIDGE_PBX_EVENTS_LEGACY_SECRET" in problem
    for part in value.split(","):
        assert not part or part not in problem


def test_the_legacy_secret_is_a_known_setting_of_any_form() -> None:
    settings = load_settings({"PRESENCE_BRIDGE_PBX_EVENTS_LEGACY_SECRET": "anything-goes"})
    legacy = settings.process.pbx_events_legacy_secret
    assert legacy is not None and legacy.get_secret_value() == "anything-goes"
    assert "anything-goes" not in repr(settings)
