"""`python -m emulator`: serve the Graph emulator on its own port until interrupted."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import threading
from pathlib import Path

from emulator.demo import (
    DEMO_REDIRECT_URIS,
    PASSWORD_ENV,
    SCENARIOS,
    SECRET_ENV,
    ScenarioRunner,
    seed_demo,
)
from emulator.server import EmulatorServer

CONTROL_API = """\
control API (JSON, no auth, loopback only; paths under /_emulator):
  identity and directory
  GET    /health                                  liveness
  GET    /tenants                                 tenants with app ids and user counts
  POST   /tenants                                 {"id"}: add a tenant
  POST   /tenants/{tid}/apps                      {"client_id","secret","certificate"(PEM),
                                                   "redirect_uris","roles"}: register an app
  POST   /tenants/{tid}/users                     {"users":[{...}]} or {"count","prefix",
                                                   "domain","start"}: seed users in bulk
  POST   /tenants/{tid}/service-accounts          {"userPrincipalName","password"}: a user
                                                   that can sign in with a password
  PATCH  /tenants/{tid}/users/{uid}               change displayName, mail, mailNickname, ...
  DELETE /tenants/{tid}/users/{uid}[?permanent=true]  soft (or hard) delete
  POST   /tenants/{tid}/users/{uid}/restore       undo a soft delete
  POST   /tenants/{tid}/users/{uid}/revoke        revoke refresh tokens (-> invalid_grant)
  POST   /tenants/{tid}/users/{uid}/require-interaction  {"reason": "interaction_required" |
                                                   "mfa" | "consent"} until the next sign-in
  GET    /tokens[?tenant_id=&app_id=&user_id=]    claims of the access tokens issued
  GET    /clock, POST /clock/advance {"seconds"}  the emulated clock (forward only)
  GET    /settings, PATCH /settings {...}         lifetimes, delta and delivery settings
  GET|POST /callback                              echoes a sign-in redirect as JSON
  presence and notifications
  POST   /presence                                {"id","availability","activity"} or
                                                   {"userIds":[...],...} or {"changes":[...]};
                                                   options "session", "expirationDuration",
                                                   "preferred", "clear"
  GET    /presence/{user_id}                      a user's presence sessions and aggregate
  GET    /subscriptions                           live subscriptions, all tenants
  POST   /subscriptions/{id}/lifecycle            {"lifecycleEvent": "reauthorizationRequired"
                                                   | "subscriptionRemoved" | "missed"}
  GET    /deliveries[?kind=&url=], DELETE /deliveries   POSTs made to subscribers
  GET    /delivery/health                         per-URL state: normal, slow or drop
  GET    /delivery/idle                           whether every notification has been sent
  faults
  GET    /faults, DELETE /faults                  the fault switches; clear them all
  POST   /faults/routes {"kind": "throttle"|"error"|"latency", "path" (regex), "method",
                         "count", "status", "retryAfter", "latency"}
  POST   /faults/delivery {"kind": "drop"|"duplicate"|"delay"|"reorder", "count", "seconds"}
  details and curl examples: docs/emulator.md

sign-in without a person: add login_hint=<userPrincipalName> to the authorize URL, or post
a service account's username and password to the sign-in form it shows.
msal: authority=https://HOST:PORT/<tenant id>, instance_discovery=False, and an
http_client that trusts the CA file printed at start (or written by --ca-out).

demo (--seed demo): tenant "demo", client id 5a1c2e3d-4b6f-4e8a-9c0d-1e2f3a4b5c6d, users
with stable ids, one service account per 650 users (svc-presence-N@contoso.test).
The client secret is $EMULATOR_DEMO_CLIENT_SECRET and the service-account password
$EMULATOR_DEMO_PASSWORD when set; otherwise both are generated, then written to --demo-out
or, without it, printed at start.
"""


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="An offline stand-in for Microsoft Graph and the identity platform.",
        epilog=CONTROL_API,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="port (default 8443, 0: any free)")
    parser.add_argument(
        "--seed",
        choices=["demo", "none"],
        default="demo",
        help="demo: tenant 'demo', one app, --users users and service accounts (default)",
    )
    parser.add_argument("--users", type=int, default=50, help="demo users to seed (default 50)")
    parser.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "none"],
        default="none",
        help="with --seed demo: once a subscription exists in the demo tenant, play this "
        "presence scenario (office-day: meetings, calls, away, DND at office rates; "
        "steady: --rate changes per second); default none",
    )
    parser.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="scenario time per real time (60: an office hour per minute); the emulator's "
        "clock, tokens and subscriptions keep real time (default 1)",
    )
    parser.add_argument(
        "--rate",
        type=_positive,
        default=10.0,
        help="changes per scenario second for --scenario steady (default 10)",
    )
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        metavar="URL",
        help="sign-in redirect URI of the demo app; repeatable "
        f"(default {' and '.join(DEMO_REDIRECT_URIS)})",
    )
    parser.add_argument(
        "--ca-out", type=Path, help="copy the generated CA certificate (PEM) to this file"
    )
    parser.add_argument(
        "--demo-out",
        "--seed-out",
        dest="demo_out",
        type=Path,
        help="write the demo ids, URLs and credentials as JSON to this file (mode 600)",
    )
    parser.add_argument("--http", action="store_true", help="plain http instead of TLS")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def _write_private(path: Path, text: str) -> None:
    # Created 600 before anything is written, so the credentials are never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> None:
    command = parser()
    args = command.parse_args(argv)
    if args.scenario != "none" and args.seed != "demo":
        command.error("--scenario needs --seed demo")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    server = EmulatorServer(
        host=args.host, port=args.port, tls=not args.http, log_level=args.log_level
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner: ScenarioRunner | None = None
    with server:
        if args.ca_out and server.ca_path:
            shutil.copyfile(server.ca_path, args.ca_out)
        if args.seed == "demo":
            with server.control() as control:
                demo = seed_demo(
                    control,
                    users=args.users,
                    base_url=server.base_url,
                    redirect_uris=args.redirect_uris,
                )
            if args.demo_out:
                _write_private(args.demo_out, json.dumps(demo, indent=2))
                print(f"demo values: {args.demo_out}", flush=True)
            public = {k: v for k, v in demo.items() if k != "user_ids"}
            for key, env in (
                ("client_secret", SECRET_ENV),
                ("service_account_password", PASSWORD_ENV),
            ):
                if args.demo_out or os.environ.get(env):
                    public.pop(key)  # the caller set it, or it is in the file
            print(f"demo seed: {json.dumps(public)}", flush=True)
            if args.scenario != "none":
                runner = ScenarioRunner(
                    server.world,
                    str(demo["tenant_id"]),
                    list(demo["user_ids"]),
                    scenario=args.scenario,
                    speed=args.speed,
                    rate=args.rate,
                ).start()
                print(
                    f"scenario {args.scenario} at {args.speed:g}x starts with the first "
                    "subscription in the demo tenant",
                    flush=True,
                )
        ca = args.ca_out or server.ca_path
        print(f"CA certificate: {ca or 'none (plain http)'}", flush=True)
        # Tools and tests wait for this line.
        print(f"Graph emulator ready at {server.base_url}", flush=True)
        stop.wait()
        if runner is not None:
            runner.stop()


if __name__ == "__main__":
    main()
