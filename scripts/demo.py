"""The `make run` demo: with no tenants file, a Graph emulator plays a demo tenant.

It seeds 50 users and a service account, writes a tenants file for them (builtin adapter,
static links), signs the service account in through the bridge's own /oauth flow once the
web process answers, and plays the "office day" scenario at 60x speed.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from core.settings import LAUNCHER_VARIABLES
from core.standard_webhooks import SECRET_PREFIX, new_secret

DEMO_USERS = 50
SPEED = "60"  # an office hour per minute


def emulator_command(root: Path, demo_dir: Path, port: int, web_port: str) -> str:
    callback = f"http://127.0.0.1:{web_port}/oauth/callback"
    return (
        f"{sys.executable} -m emulator --port {port} --seed demo --users {DEMO_USERS} "
        f"--scenario office-day --speed {SPEED} --redirect-uri {callback} "
        f"--demo-out {demo_dir / 'demo.json'} --ca-out {demo_dir / 'ca.pem'} --log-level warning"
    )


def wait_for(path: Path, seconds: float) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the emulator did not write {path}")
        time.sleep(0.1)  # a file written by another process: nothing to await
    time.sleep(0.1)
    return dict(json.loads(path.read_text()))


def tenants_toml(seed: dict[str, object], web_port: str) -> str:
    users = "\n".join(
        f'[[tenants.pbx_users]]\nusername = "user{n + 1:02d}"\nextension = "{201 + n}"\n'
        f'graph_id = "{user_id}"\n'
        for n, user_id in enumerate(seed["user_ids"])  # type: ignore[arg-type]
    )
    accounts = ", ".join(f'"{a}"' for a in seed["service_accounts"])  # type: ignore[attr-defined]
    return f"""# Written by `make run` for the demo (a real site: docs/configuration.md).
[[tenants]]
name = "demo"
tenant_id = "{seed["tenant_id"]}"
client_id = "{seed["client_id"]}"
login_base_url = "{seed["login_base_url"]}"
graph_base_url = "{seed["graph_base_url"]}"
public_base_url = "http://127.0.0.1:{web_port}"
service_accounts = [{accounts}]

[tenants.mapping]
preset = "glocom"
hold_seconds = 5

[tenants.pbx]
adapter = "builtin"

{users}"""


def prepare(demo_dir: Path, web_port: str) -> dict[str, str]:
    """Secrets of the demo (kept in .run/demo, mode 600) and the environment for the bridge."""
    demo_dir.mkdir(parents=True, exist_ok=True)
    secrets_file = demo_dir / "secrets.json"
    if secrets_file.exists():
        values = json.loads(secrets_file.read_text())
    else:
        values = {
            "cache_key": Fernet.generate_key().decode(),
            "admin_api_key": secrets.token_urlsafe(24),
            "pbx_secret": secrets.token_urlsafe(24),
            "events_secret": new_secret(),
        }
        secrets_file.write_text(json.dumps(values))
        os.chmod(secrets_file, 0o600)
    if not values["events_secret"].startswith(SECRET_PREFIX):  # kept from before Standard Webhooks
        values["events_secret"] = new_secret()
        secrets_file.write_text(json.dumps(values))
    (demo_dir / "demo.json").unlink(missing_ok=True)
    return {
        "PRESENCE_BRIDGE_CACHE_KEY": values["cache_key"],
        "PRESENCE_BRIDGE_ADMIN_API_KEY": values["admin_api_key"],
        "PRESENCE_BRIDGE_TENANT_DEMO_PBX_SECRET": values["pbx_secret"],
        "PRESENCE_BRIDGE_TENANT_DEMO_PBX_EVENTS_SECRET": values["events_secret"],
        "PRESENCE_BRIDGE_CA_BUNDLE": str(demo_dir / "ca.pem"),
        "PRESENCE_BRIDGE_TENANTS_FILE": str(demo_dir / "tenants.toml"),
        "PRESENCE_BRIDGE_RECONCILE_EVERY": "10",  # the subscription follows the sign-in quickly
    }


def configure(demo_dir: Path, web_port: str) -> dict[str, str]:
    """Once the emulator wrote its seed: the tenants file and the tenant's client secret."""
    seed = wait_for(demo_dir / "demo.json", 30)
    (demo_dir / "tenants.toml").write_text(tenants_toml(seed, web_port))
    return {"PRESENCE_BRIDGE_TENANT_DEMO_CLIENT_SECRET": str(seed["client_secret"])}


def write_env(path: Path, env: dict[str, str]) -> None:
    """The bridge's variables for `presence-bridge` (cli/env_file.py); secrets, hence mode 600."""
    launcher = {f"PRESENCE_BRIDGE_{name}" for name in LAUNCHER_VARIABLES}
    ours = {k: v for k, v in env.items() if k.startswith("PRESENCE_BRIDGE_") and k not in launcher}
    lines = [f"{k}={v}\n" for k, v in sorted(ours.items()) if "\n" not in v]
    # Created 600 before a byte is written, and narrowed again if it existed already.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)
        file.write("# Written by `make run` for `presence-bridge` (docs/cli.md); holds secrets.\n")
        file.writelines(lines)


def sign_in(demo_dir: Path, web_base: str, admin_key: str) -> list[str]:
    """Sign the demo's service accounts in, as an administrator would in a browser."""
    from emulator.control_client import ControlClient  # the demo only; never the bridge

    seed = json.loads((demo_dir / "demo.json").read_text())
    done = []
    with ControlClient(str(seed["login_base_url"]), demo_dir / "ca.pem") as control:
        for account in seed["service_accounts"]:
            started = httpx.post(
                f"{web_base}/oauth/login",
                params={"tenant": "demo", "account": account},
                headers={"X-API-Key": admin_key},
                timeout=30,
            )
            if started.status_code not in (200, 302, 303):
                started.raise_for_status()
            control.sign_in(started.json()["auth_uri"])  # login_hint names the account
            done.append(account)
    return done
