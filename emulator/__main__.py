"""`python -m emulator`: serve the Graph emulator on its own port until interrupted."""

from __future__ import annotations

import argparse
import json
import logging
import math
import secrets
import shutil
import signal
import threading
from pathlib import Path

from emulator.control import ControlClient
from emulator.server import EmulatorServer

DEMO_TENANT_ID = "0d3e5b1c-7a42-4c1e-9f5a-0e3a1d2c4b5f"
DEMO_CLIENT_ID = "5a1c2e3d-4b6f-4e8a-9c0d-1e2f3a4b5c6d"
DEMO_ROLES = ["User.Read.All", "Presence.Read.All", "Presence.ReadWrite.All"]
USERS_PER_SUBSCRIPTION = 650

CONTROL_API = """\
control API (JSON, no auth, loopback only; paths under /_emulator):
  GET    /health                                  liveness
  GET    /tenants                                 tenants with app ids and user counts
  POST   /tenants                                 {"id"}: add a tenant
  POST   /tenants/{tid}/apps                      {"client_id","secret","certificate"(PEM),
                                                   "redirect_uris","roles"}: register an app
  POST   /tenants/{tid}/users                     {"users":[{...}]} or {"count","prefix",
                                                   "domain","start"}: seed users in bulk
  POST   /tenants/{tid}/service-accounts          {"userPrincipalName","password"}: a user
                                                   that can sign in
  PATCH  /tenants/{tid}/users/{uid}               change displayName, mail, mailNickname, ...
  DELETE /tenants/{tid}/users/{uid}[?permanent=true]  soft (or hard) delete
  POST   /tenants/{tid}/users/{uid}/restore       undo a soft delete
  POST   /tenants/{tid}/users/{uid}/revoke        revoke refresh tokens (-> invalid_grant)
  POST   /tenants/{tid}/users/{uid}/require-interaction  {"reason": "interaction_required" |
                                                   "mfa" | "consent"} until the next sign-in
  GET    /tokens[?tenant_id=&app_id=&user_id=]    claims of the access tokens issued
  GET    /clock, POST /clock/advance {"seconds"}  the emulated clock
  GET    /settings, PATCH /settings {...}         token lifetimes, delta settings, ...
  GET|POST /callback                              echoes a sign-in redirect as JSON
  POST   /presence                                {"id"|"userIds","availability","activity",
                                                   ...}: set presence for one user or many
  GET    /presence/{user_id}                      a user's presence sessions and aggregate
  GET    /subscriptions                           subscriptions, all tenants
  POST   /subscriptions/{id}/lifecycle            {"lifecycleEvent"}: send one
  GET    /deliveries[?kind=&url=], DELETE /deliveries   POSTs made to subscribers
  GET    /delivery/health, GET /delivery/idle     per-URL slow/drop state; wait until idle
  GET    /faults, DELETE /faults                  the fault switches
  POST   /faults/route {"kind": "throttle"|"error"|"latency", "path", "count", ...}
  POST   /faults/delivery {"kind": "drop"|"duplicate"|"delay"|"reorder", "count", ...}
  details and examples: docs/emulator.md

sign-in without a person: add login_hint=<userPrincipalName> to the authorize URL.
msal: authority=https://HOST:PORT/<tenant id>, instance_discovery=False, and an
http_client that trusts the CA file written by --ca-out.
"""


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="An offline stand-in for Microsoft Graph and the identity platform.",
        epilog=CONTROL_API,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="port (default 8443, 0: any)")
    parser.add_argument(
        "--seed",
        choices=["demo", "none"],
        default="demo",
        help="demo: one tenant, one app, --users users and service accounts (default)",
    )
    parser.add_argument("--users", type=int, default=50, help="demo users to seed (default 50)")
    parser.add_argument(
        "--ca-out", type=Path, help="copy the generated CA certificate (PEM) to this file"
    )
    parser.add_argument(
        "--seed-out",
        type=Path,
        help="write the demo tenant, app and credentials as JSON to this file (mode 600)",
    )
    parser.add_argument("--http", action="store_true", help="plain http instead of TLS")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser.parse_args()


def _seed_demo(server: EmulatorServer, users: int) -> dict[str, object]:
    secret, password = secrets.token_urlsafe(24), secrets.token_urlsafe(16)
    with ControlClient(server.base_url, server.ca_path) as control:
        control.seed_tenant(DEMO_TENANT_ID)
        control.seed_app(
            DEMO_TENANT_ID,
            client_id=DEMO_CLIENT_ID,
            secret=secret,
            redirect_uris=[
                "http://127.0.0.1:8000/auth/callback",
                "http://localhost:8000/auth/callback",
                f"{server.base_url}/_emulator/callback",
            ],
            roles=DEMO_ROLES,
        )
        control.seed_users(DEMO_TENANT_ID, count=users)
        accounts = [
            f"svc-presence-{n + 1}@contoso.test"
            for n in range(max(1, math.ceil(users / USERS_PER_SUBSCRIPTION)))
        ]
        for upn in accounts:
            control.add_service_account(DEMO_TENANT_ID, upn, password, "Presence service")
    return {
        "tenant_id": DEMO_TENANT_ID,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": secret,
        "service_accounts": accounts,
        "service_account_password": password,
        "authority": server.authority(DEMO_TENANT_ID),
        "graph_url": server.graph_url,
    }


def main() -> None:
    args = _arguments()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    server = EmulatorServer(
        host=args.host, port=args.port, tls=not args.http, log_level=args.log_level
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        if args.ca_out and server.ca_path:
            shutil.copyfile(server.ca_path, args.ca_out)
        if args.seed == "demo":
            demo = _seed_demo(server, args.users)
            if args.seed_out:
                args.seed_out.touch(mode=0o600)
                args.seed_out.write_text(json.dumps(demo, indent=2))
            public = {k: v for k, v in demo.items() if "secret" not in k and "password" not in k}
            print(f"demo seed: {json.dumps(public)}", flush=True)
        print(f"CA certificate: {args.ca_out or server.ca_path}", flush=True)
        # Tools and tests wait for this line.
        print(f"Graph emulator ready at {server.base_url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
