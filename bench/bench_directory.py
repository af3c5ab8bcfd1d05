"""Directory benchmark (issue 4): a 100,000-user tenant, full import and delta rounds.

Starts the Graph emulator in-process (real uvicorn, TLS, loopback) and a private redis-server,
seeds a tenant with --users users and a tenants file directory of the same size (matched by
userPrincipalName), then measures with the bridge's token provider (core.graph_tokens) and
the full import (list with $top=999, then matching and the links hash), a delta round
carrying --changes changes (updates, soft deletes, hard deletes, adds), and an idle delta
round. The emulator shares this process's GIL, so the figures are an upper bound on the
bridge's own cost. The last line printed is one JSON object with every figure.

    .venv/bin/python bench/bench_directory.py [--users 100000] [--changes 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from _common import ROOT, emit, machine

sys.path.insert(0, str(ROOT))

from pydantic import HttpUrl, SecretStr  # noqa: E402

from core.graph_tokens import TenantTokens  # noqa: E402
from core.settings import PbxUser, ProcessSettings, TenantSettings  # noqa: E402
from core.state import directory  # noqa: E402
from core.state.directory import SyncReport  # noqa: E402
from emulator.control import ControlClient  # noqa: E402
from emulator.harness.redis_server import RedisServer  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402
from workers.directory_sync import sync_directory  # noqa: E402

DOMAIN = "contoso.test"
# Graph's directory throttling for a tenant above 500 users: 8,000 resource units per 10 s
# per app and tenant; GET /users costs 2 RU, 1 with $select (Graph's throttling limits page).
RU_PER_10S = 8_000
RU_PER_PAGE = 1
SEED_CHUNK = 20_000


def seed(control: ControlClient, users: int) -> tuple[str, str, str, list[str]]:
    tenant_id = control.seed_tenant(str(uuid.uuid4()))
    secret = uuid.uuid4().hex
    app = control.seed_app(tenant_id, secret=secret, roles=["User.Read.All"])
    ids: list[str] = []
    for start in range(0, users, SEED_CHUNK):
        count = min(SEED_CHUNK, users - start)
        ids += control.seed_users(tenant_id, count=count, start=start, domain=DOMAIN)
    return tenant_id, str(app["client_id"]), secret, ids


def change(control: ControlClient, tenant_id: str, ids: list[str], changes: int) -> dict[str, int]:
    """Spread `changes` over the kinds a delta round brings, on users far apart."""
    updates, soft, hard = changes * 7 // 10, changes // 10, changes // 10
    adds = changes - updates - soft - hard
    step = max(1, len(ids) // changes)
    picked = ids[::step][: updates + soft + hard]
    for n, user_id in enumerate(picked[:updates]):
        control.update_user(tenant_id, user_id, displayName=f"Renamed {n}")
    for user_id in picked[updates : updates + soft]:
        control.delete_user(tenant_id, user_id)
    for user_id in picked[updates + soft :]:
        control.delete_user(tenant_id, user_id, permanent=True)
    if adds:
        control.seed_users(tenant_id, count=adds, start=len(ids), domain=DOMAIN)
    return {"updated": updates, "soft_deleted": soft, "hard_deleted": hard, "added": adds}


def timed(run: Any) -> tuple[SyncReport, float]:
    start = time.perf_counter()
    report = run()
    return report, time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=1_000)
    args = parser.parse_args(argv)

    with RedisServer() as redis_server, EmulatorServer() as emulator, emulator.control() as ctl:
        started = time.perf_counter()
        tenant_id, client_id, secret, ids = seed(ctl, args.users)
        seed_s = time.perf_counter() - started
        print(f"seeded {len(ids)} users in {seed_s:.1f}s", flush=True)
        settings = TenantSettings(
            name="bench",
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=SecretStr(secret),
            login_base_url=HttpUrl(emulator.base_url),
            graph_base_url=HttpUrl(emulator.base_url),
            public_base_url=HttpUrl("https://bridge.example.com"),
            pbx_users=[PbxUser(username=f"user{n:06d}@{DOMAIN}") for n in range(args.users)],
        )
        redis = redis_server.client
        process = ProcessSettings(ca_bundle=emulator.ca_path)
        auth = TenantTokens(settings, process, redis)  # the bridge's own msal token provider
        try:
            with auth.graph_client() as graph:
                full, full_s = timed(lambda: sync_directory(settings, redis, graph))
                print(f"full import: {full_s:.2f}s, {full.pages} pages", flush=True)
                kinds = change(ctl, tenant_id, ids, args.changes)
                delta, delta_s = timed(lambda: sync_directory(settings, redis, graph))
                print(f"delta round ({args.changes} changes): {delta_s:.2f}s", flush=True)
                idle, idle_s = timed(lambda: sync_directory(settings, redis, graph))
                print(f"idle delta round: {idle_s:.2f}s", flush=True)
        finally:
            auth.close()
        memory = redis.memory_usage(directory.users_key("bench")) or 0

    assert full.mode == "full" and delta.mode == "delta" and idle.mode == "delta"
    assert delta.upserted == kinds["updated"] + kinds["added"]
    assert delta.soft_deleted == kinds["soft_deleted"]
    assert delta.hard_deleted == kinds["hard_deleted"]
    figures = {
        "bench": "directory",
        "users": args.users,
        "seed_s": round(seed_s, 2),
        "full_import_s": round(full_s, 3),
        "full_import_pages": full.pages,
        "full_import_users_per_s": round(full.graph_users / full_s),
        "full_import_linked_pbx": full.linked_pbx,
        "full_import_graph_s": round(full.import_seconds, 3),
        "full_import_match_s": round(full.match_seconds, 3),
        # The whole import's cost against one 10 s window of the directory budget.
        "full_import_ru": full.pages * RU_PER_PAGE,
        "ru_budget_per_10s": RU_PER_10S,
        "delta_changes": kinds,
        "delta_round_s": round(delta_s, 3),
        "delta_round_pages": delta.pages,
        "delta_linked_pbx": delta.linked_pbx,
        "delta_round_graph_s": round(delta.import_seconds, 3),
        "delta_round_match_s": round(delta.match_seconds, 3),
        "idle_delta_round_s": round(idle_s, 3),
        "idle_delta_round_pages": idle.pages,
        "users_hash_bytes": memory,
        "machine": machine(),
    }
    emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
