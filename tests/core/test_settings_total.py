"""The tenants file is outside input: any TOML (and any text) gives settings or one ConfigError
that lists its problems, never another exception (hypothesis, tests/conftest.py's profile)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from core.settings import load_settings
from emulator.harness.tenants import secret_env

KEYS = [
    "name", "tenant_id", "client_id", "public_base_url", "graph_base_url", "login_base_url",
    "enabled", "rich_notifications", "service_accounts", "mapping", "matching", "pbx",
    "pbx_users", "certificate", "adapter", "options", "callstate", "source", "preset", "rules",
    "hold_seconds", "username", "extension", "graph_id", "availability", "profile", "sticky",
    "client_secret", "pbx_events_secret", "secret", "host", "port", "base_url", "actions",
]  # fmt: skip
VALID = {
    "name": "contoso",
    "tenant_id": "11111111-2222-3333-4444-555555555555",
    "client_id": "c",
    "public_base_url": "https://bridge.example.com",
    "pbx": {"adapter": "builtin"},
}


def toml_value(value: Any) -> str:
    """TOML for a decoded value (inline tables, arrays); strings as JSON strings, which TOML
    reads the same, unless a lone surrogate makes the file invalid: also worth feeding."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["builtin", "http", "sip", "asterisk", "ami", "blf", "pascom", "x-y"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
# A valid tenant with some fields replaced or added: the validators past the first check run.
tenants = st.builds(
    lambda base, changes: {**base, **changes},
    st.just(VALID),
    st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
)
documents = st.one_of(
    st.lists(tenants | values, max_size=3).map(
        lambda ts: "".join(
            "[[tenants]]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in t.items())
            if isinstance(t, dict)
            else f"tenants = {toml_value(t)}\n"
            for t in ts
        )
    ),
    st.dictionaries(st.sampled_from(["tenants", *KEYS]), values, max_size=3).map(
        lambda d: "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in d.items())
    ),
    st.text(max_size=200),
)


@given(document=documents)
def test_any_tenants_file_gives_settings_or_one_config_error(tmp_path: Path, document: str) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(document, encoding="utf-8", errors="surrogatepass")
    env = {
        "PRESENCE_BRIDGE_TENANTS_FILE": str(path),
        secret_env("contoso", "CLIENT_SECRET"): "s",
    }
    try:
        load_settings(env)
    except ConfigError as exc:
        assert str(exc)
