"""Reconcile benchmark (issue 4): 100,000 linked users over 154 service accounts, in the emulator.

One reconcile creates every subscription (650 users each; each create runs Graph's validation
handshake against the real webhook), then the emulator's clock moves 45 minutes and a second
reconcile renews every one by PATCH. Requests are sequential, one per account, so far inside
Graph's limits; the figures count any 429 the emulator answered. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit, machine

sys.path.insert(0, str(ROOT))


from core.graph_tokens import GraphTokens  # noqa: E402
from core.state import links  # noqa: E402
from emulator.harness.bridge import TENANT, BridgeSite  # noqa: E402
from emulator.harness.redis_server import RedisServer  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402
from subscriptions import reconcile as rc  # noqa: E402
from subscriptions.tenant_view import TenantView  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args(argv)
    n_accounts = math.ceil(args.users / 650)

    with RedisServer() as redis_server, EmulatorServer() as emulator:
        redis = redis_server.client
        started = time.perf_counter()
        site = BridgeSite(emulator, redis, redis_server.url(),
                          Path(tempfile.mkdtemp(prefix="pb-bench-reconcile-")),
                          users=args.users, accounts=n_accounts)  # fmt: skip
        ctl, tenant_id = site.control, site.tenant_id
        with site.serve_web(), contextlib.closing(site):
            links.replace(redis, TENANT, {u: [u] for u in site.graph_ids})
            tenant = site.settings.tenant(TENANT)
            assert tenant is not None
            with GraphTokens(site.settings, redis) as auth:
                for upn in site.accounts:
                    site.sign_in(auth, upn)
                setup_s = time.perf_counter() - started
                print(f"seeded and signed in {n_accounts} accounts in {setup_s:.1f}s", flush=True)
                ctx = TenantView(redis, tenant, auth.tenant(TENANT), auth.cipher(),
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
