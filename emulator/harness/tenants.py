"""Tenants files for tests and benchmarks, written the way an operator writes them."""

from __future__ import annotations

from pathlib import Path

TENANT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
ALL_ROLES = ["User.Read.All", "Presence.Read.All", "Presence.ReadWrite.All"]  # the app's grants


def tenant_toml(
    name: str = "contoso",
    *,
    extra: str = "",
    pbx: str = 'adapter = "builtin"',
    tenant_id: str = TENANT_ID,
    client_id: str = CLIENT_ID,
    login: str = "https://login.microsoftonline.com",
    graph: str = "https://graph.microsoft.com",
    public: str = "https://bridge.example.com",
) -> str:
    return f"""
[[tenants]]
name = "{name}"
tenant_id = "{tenant_id}"
client_id = "{client_id}"
login_base_url = "{login}"
graph_base_url = "{graph}"
public_base_url = "{public}"
{extra}
[tenants.pbx]
{pbx}
"""


def write_env(tmp_path: Path, toml: str, **env: str) -> dict[str, str]:
    path = tmp_path / "tenants.toml"
    path.write_text(toml)
    return {"PRESENCE_BRIDGE_TENANTS_FILE": str(path), **env}


def secret_env(name: str, what: str) -> str:
    return f"PRESENCE_BRIDGE_TENANT_{name.upper().replace('-', '_')}_{what}"
