"""Graph emulator benchmark (issue 3): 100,000 users, 200 subscriptions, a real subscriber.

The emulator runs in this process (real uvicorn, TLS, loopback) and gets its tokens the real
way (msal: auth code flow per signed-in user). The subscriber is a minimal ASGI app answering
202, under uvicorn in a separate process (this script with --subscriber), so it does not
share the emulator's GIL. Phases:

1. burst: every user changes once (100,000 changes from the steady scenario, applied through
   the presence model as fast as it takes them); figures: scenario rate (changes/s absorbed)
   and delivery rate (notifications/s acknowledged with 2xx, first change to last 2xx);
2. fixed rate: --rate changes/s for --seconds, paced; checks delivery keeps up (backlog
   drained within a second of the last change).

The last line printed is one JSON object with every figure.

    .venv/bin/python bench/bench_emulator.py [--users 100000] [--subscriptions 200]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from _common import PYTHON, ROOT, cpu_seconds, emit, machine

sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import msal  # noqa: E402
import orjson  # noqa: E402

from emulator.delivery import engine_for, graph_time  # noqa: E402
from emulator.demo import ScenarioRunner  # noqa: E402
from emulator.harness.ports import free_port, port_open  # noqa: E402
from emulator.harness.processes import Service, private_env  # noqa: E402
from emulator.scenario import Action, changes_at_rate  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402

TENANT = "bench"
SCOPES = ["https://graph.microsoft.com/Presence.Read.All"]


# -- the subscriber (a separate process) --------------------------------------------------------


def subscriber_app() -> Any:
    """Answers Graph's handshake, 202 to notifications; GET /count gives the items received."""
    received = {"items": 0, "posts": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        query = scope["query_string"].decode()
        if scope["method"] == "GET":
            status, payload, kind = 200, orjson.dumps(received), b"application/json"
        elif query.startswith("validationToken="):
            token = urllib.parse.unquote_plus(query.split("=", 1)[1].split("&", 1)[0])
            status, payload, kind = 200, token.encode(), b"text/plain"
        else:
            received["items"] += len(orjson.loads(body)["value"])
            received["posts"] += 1
            status, payload, kind = 202, b"", b"text/plain"
        headers = [(b"content-type", kind), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_subscriber(port: int) -> None:
    import uvicorn

    uvicorn.run(
        subscriber_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
        lifespan="off",
    )


def subscriber_count(base: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/count", timeout=5) as response:  # noqa: S310 - loopback
        counts: dict[str, int] = orjson.loads(response.read())
        return counts


# -- the emulator side ----------------------------------------------------------------------------


def delivered(server: EmulatorServer) -> int:
    engine = engine_for(server.world)
    return sum(health.delivered for health in list(engine.health.values()))


def wait_delivered(server: EmulatorServer, target: int, timeout: float) -> float:
    """Monotonic time when `target` items were acknowledged; polled, as no event exists."""
    deadline = time.monotonic() + timeout
    while delivered(server) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {delivered(server)} of {target} delivered in {timeout} s")
        time.sleep(0.005)
    return time.monotonic()


def setup(
    server: EmulatorServer, users: int, subscriptions: int, sub_base: str, shared_url: bool
) -> list[str]:
    """Seed the tenant and create the subscriptions with msal tokens; return the user ids."""
    with server.control() as control, server.msal_session() as http:
        control.seed_tenant(TENANT)
        secret = os.urandom(16).hex()
        callback = f"{server.base_url}/_emulator/callback"
        control.seed_app(
            TENANT,
            client_id="bench-app",
            secret=secret,
            redirect_uris=[callback],
            roles=["Presence.Read.All"],
        )
        ids: list[str] = control.seed_users(TENANT, count=users)
        app = msal.ConfidentialClientApplication(
            "bench-app", client_credential=secret, **server.msal_options(TENANT, http)
        )
        assert server.tls is not None
        per = len(ids) // subscriptions
        with httpx.Client(verify=server.tls.client_context(), timeout=30) as graph:
            for n in range(subscriptions):
                # One presence subscription per (signed-in user, app): a user each.
                flow = app.initiate_auth_code_flow(
                    SCOPES,
                    redirect_uri=callback,
                    login_hint=ids[n],
                    response_mode="form_post",
                )
                fields = control.sign_in(flow["auth_uri"], submit=False)
                token = app.acquire_token_by_auth_code_flow(flow, fields)["access_token"]
                covered = ids[n * per : (n + 1) * per]
                body = {
                    "changeType": "updated",
                    "notificationUrl": f"{sub_base}/notify" + ("" if shared_url else f"/{n}"),
                    "resource": "/communications/presences?$filter=id in ({})".format(
                        ",".join(f"'{i}'" for i in covered)
                    ),
                    "expirationDateTime": graph_time(server.world.clock.now() + 3600),
                }
                response = graph.post(
                    f"{server.graph_url}/subscriptions",
                    json=body,
                    headers={"authorization": f"Bearer {token}"},
                )
                if response.status_code != 201:
                    raise RuntimeError(f"subscription {n}: {response.status_code} {response.text}")
        return ids[: per * subscriptions]


def burst(
    server: EmulatorServer, runner: ScenarioRunner, stream: Iterator[Action], count: int
) -> dict[str, Any]:
    before = delivered(server)
    actions = list(itertools.islice(stream, count))
    cpu0 = cpu_seconds([os.getpid()])
    start = time.monotonic()
    for action in actions:
        runner.apply(action)
    produced = time.monotonic() - start
    done = wait_delivered(server, before + len(actions), timeout=90)
    cpu = cpu_seconds([os.getpid()]) - cpu0
    return {
        "changes": len(actions),
        "scenario_changes_per_s": round(len(actions) / produced),
        "delivered_per_s": round(len(actions) / (done - start)),
        "seconds": round(done - start, 2),
        "emulator_cpu_cores": round(cpu / (done - start), 2),
    }


def fixed_rate(
    server: EmulatorServer,
    runner: ScenarioRunner,
    stream: Iterator[Action],
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    before = delivered(server)
    actions = list(itertools.islice(stream, int(rate * seconds)))
    start = time.monotonic()
    behind = 0.0
    for n, action in enumerate(actions):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            behind = max(behind, -delay)
        runner.apply(action)
    last = time.monotonic()
    done = wait_delivered(server, before + len(actions), timeout=60)
    return {
        "rate": rate,
        "changes": len(actions),
        "producer_max_lag_s": round(behind, 3),
        "drain_after_last_change_s": round(done - last, 3),
        "kept_up": done - last < 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2_000.0, help="fixed-rate phase, changes/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="fixed-rate phase length")
    parser.add_argument(
        "--shared-url", action="store_true", help="one notification URL for all subscriptions"
    )
    parser.add_argument("--subscriber", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        serve_subscriber(args.subscriber)
        return

    port = free_port()
    sub_base = f"http://127.0.0.1:{port}"

    subscriber = Service(
        [PYTHON, __file__, "--subscriber", str(port)],
        private_env({}),
        lambda: port_open(port),
        "subscriber",
    )
    try:
        with EmulatorServer() as server:
            # Keep the bounded delivery log small: the benchmark reads counters, not bodies.
            server.world.settings["deliveries_kept"] = 1_000
            started = time.monotonic()
            ids = setup(server, args.users, args.subscriptions, sub_base, args.shared_url)
            setup_s = time.monotonic() - started
            runner = ScenarioRunner(server.world, TENANT, ids, scenario="steady")
            # One stream for both phases: each user walks on through its cycle of states, so
            # every change is a real change of the aggregate (and one notification).
            stream = changes_at_rate(ids, per_second=1.0, duration=float("inf"), seed=1)
            first = burst(server, runner, stream, len(ids))
            steady = fixed_rate(server, runner, stream, args.rate, args.seconds)
            received = subscriber_count(sub_base)
            engine = engine_for(server.world)
            dropped = len(engine.dropped)
    finally:
        subscriber.stop()
    figures = {
        "benchmark": "emulator",
        "machine": machine(),
        "users": args.users,
        "subscriptions": args.subscriptions,
        "shared_url": args.shared_url,
        "setup_s": round(setup_s, 1),
        "burst": first,
        "fixed_rate": steady,
        "subscriber_items": received["items"],
        "subscriber_posts": received["posts"],
        "items_per_post": round(received["items"] / max(1, received["posts"]), 1),
        "dropped": dropped,
        "target_delivered_per_s": 2_000,
        "target_met": first["delivered_per_s"] >= 2_000 and steady["kept_up"],
    }
    print(
        f"burst: {first['changes']} changes absorbed at {first['scenario_changes_per_s']}/s, "
        f"delivered at {first['delivered_per_s']}/s; fixed {args.rate:g}/s kept up: "
        f"{steady['kept_up']}",
        flush=True,
    )
    emit(figures)


if __name__ == "__main__":
    main()
