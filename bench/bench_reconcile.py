"""Reconcile benchmark (issue 4): 100,000 linked users over 154 service accounts, in the emulator.

One reconcile creates every subscription (650 users each; each create runs Graph's validation
handshake against the real webhook), then the emulator's clock moves 45 minutes and a second
reconcile renews every one by PATCH. Requests are sequential, one per account, so far inside
Graph's limits; the figures count any 429 the emulator answered. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import uuid

from _common import ROOT, RedisServer, emit, machine

sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from pydantic import HttpUrl, SecretStr  # noqa: E402

from core.auth import Authenticator  # noqa: E402
from core.settings import ProcessSettings, Settings, TenantSettings, load_settings  # noqa: E402
from core.state import links  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402
from subscriptions import reconcile as rc  # noqa: E402
from subscriptions.context import Context  # noqa: E402
from tests.webserver import ServedApp  # noqa: E402
from webhook.app import create_app  # noqa: E402

ROLES = ["User.Read.All", "Presence.Read.All", "Presence.ReadWrite.All"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args(argv)
    n_accounts = math.ceil(args.users / 650)

    with RedisServer() as redis_server, EmulatorServer() as emulator, emulator.control() as ctl:
        redis = redis_server.client
        web_settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": redis_server.url})
        with ServedApp(create_app(web_settings)) as web:
            tenant_id = ctl.seed_tenant(str(uuid.uuid4()))
            secret = uuid.uuid4().hex
            app = ctl.seed_app(tenant_id, secret=secret, roles=ROLES,
                               redirect_uris=[f"{web.url}/oauth/callback"])  # fmt: skip
            started = time.perf_counter()
            ids = ctl.seed_users(tenant_id, count=args.users)
            upns = [f"svc{n:04d}@contoso.test" for n in range(n_accounts)]
            for upn in upns:
                ctl.add_service_account(tenant_id, upn, uuid.uuid4().hex, "svc")
            links.replace(redis, "bench", {u: [u] for u in ids})
            tenant = TenantSettings(
                name="bench", tenant_id=tenant_id, client_id=app["client_id"],
                client_secret=SecretStr(secret), login_base_url=HttpUrl(emulator.base_url),
                graph_base_url=HttpUrl(emulator.base_url), public_base_url=HttpUrl(web.url),
                service_accounts=upns,
            )  # fmt: skip
            cache_key = SecretStr(Fernet.generate_key().decode())
            process = ProcessSettings(redis_url=redis_server.url, ca_bundle=emulator.ca_path,
                                      cache_key=cache_key)  # fmt: skip
            settings = Settings(process=process, tenants=(tenant,))
            with Authenticator(settings, redis) as auth:
                for upn in upns:
                    fields = ctl.sign_in(auth.start_sign_in("bench", upn), submit=False)
                    auth.finish_sign_in(fields)
                setup_s = time.perf_counter() - started
                print(f"seeded and signed in {n_accounts} accounts in {setup_s:.1f}s", flush=True)
                ctx = Context(redis, tenant, auth.tenant("bench"), auth.cipher(),
                                 verify=str(emulator.ca_path),
                                 now=emulator.world.clock.now)  # fmt: skip
                try:
                    t0 = time.perf_counter()
                    created = rc.reconcile(ctx)
                    create_s = time.perf_counter() - t0
                    print(f"created {len(created.created)} in {create_s:.2f}s", flush=True)
                    ctl.advance_clock(45 * 60)
                    t0 = time.perf_counter()
                    renewed = rc.reconcile(ctx)
                    renew_s = time.perf_counter() - t0
                    print(f"renewed {len(renewed.renewed)} in {renew_s:.2f}s", flush=True)
                finally:
                    ctx.close()
            with emulator.world.lock:
                live = [s for s in emulator.world.subscriptions.values()
                        if s.tenant_id == tenant_id]  # fmt: skip
            reports = (created, renewed)
            throttled = sum(1 for r in reports for v in r.deferred.values() if "429" in v)
    emit({
        "bench": "reconcile", "users": args.users, "accounts": n_accounts,
        "subscriptions": len(live), "max_ids": max((len(s.user_ids) for s in live), default=0),
        "created": len(created.created), "create_s": round(create_s, 3),
        "creates_per_s": round(len(created.created) / create_s, 1) if create_s else None,
        "renewed": len(renewed.renewed), "renew_s": round(renew_s, 3),
        "renewals_per_s": round(len(renewed.renewed) / renew_s, 1) if renew_s else None,
        "polled": renewed.polled, "failed": len(created.failed) + len(renewed.failed),
        "throttled_429": throttled, "setup_s": round(setup_s, 1), **machine(),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
