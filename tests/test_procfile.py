"""The Procfile's processes on a platform: its PORT, its REDIS_URL, nothing of ours set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis
from rq import Worker

from core.state import callstate, coordination
from emulator.harness.ports import free_port
from emulator.harness.processes import Service
from emulator.harness.tenants import secret_env, tenant_toml, write_env

ROOT = Path(__file__).resolve().parents[1]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.partition(":") for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): command.strip() for name, _, command in entries}


def platform_env(**extra: str) -> dict[str, str]:
    """What a Heroku-style platform gives a dyno: PATH, its own variables, none of ours."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    return {"PATH": path, "PYTHONUNBUFFERED": "1", **extra}


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start(name: str, env: dict[str, str], ready: Callable[[], bool], what: str) -> Service:
    # The Procfile's line through a shell, as the platform runs it.
    return Service(["/bin/sh", "-c", procfile()[name]], env, ready, what)


def test_web_listens_on_the_platform_port_on_every_interface(redis_url: str) -> None:
    port = free_port()
    web = start(
        "web",
        platform_env(PORT=str(port), REDIS_URL=redis_url),
        lambda: answers(f"http://127.0.0.1:{port}/healthz"),
        "the web process",
    )
    try:
        # 127.0.0.2 reaches only a socket bound to every interface, never one on 127.0.0.1.
        assert answers(f"http://127.0.0.2:{port}/healthz")
    finally:
        web.stop()


def test_web_reads_redis_from_redis_url(redis_url: str, redis_client: redis.Redis) -> None:
    port = free_port()
    web = start(
        "web",
        platform_env(PORT=str(port), REDIS_URL=redis_url),
        lambda: answers(f"http://127.0.0.1:{port}/healthz"),
        "the web process",
    )
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["redis"] is True
        # The machine's own Redis on 6379 would answer too: the web process must be on ours.
        own = redis_client.client_id()
        assert [c for c in redis_client.client_list() if int(c["id"]) != own]
    finally:
        web.stop()


def test_worker_reads_redis_from_redis_url(redis_url: str, redis_client: redis.Redis) -> None:
    worker = start(
        "worker",
        platform_env(REDIS_URL=redis_url),
        lambda: bool(Worker.all(connection=redis_client)),
        "the worker",
    )
    worker.stop()


def test_clock_reads_redis_from_redis_url(redis_url: str, redis_client: redis.Redis) -> None:
    clock = start(
        "clock",
        platform_env(REDIS_URL=redis_url),
        lambda: coordination.alive(redis_client, coordination.Process.CLOCK),
        "the clock",
    )
    clock.stop()


def test_the_cli_reads_redis_from_redis_url(redis_url: str, redis_client: redis.Redis) -> None:
    result = subprocess.run(  # noqa: S603 - our own console script
        [str(Path(sys.executable).parent / "presence-bridge"), "check", "--json"],
        env=platform_env(REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = {r["check"]: r for r in json.loads(result.stdout)["results"]}
    assert found["redis"]["status"] == "ok", result.stdout
    # Not the machine's own Redis on the default port: ours, named by its port.
    assert f":{urlsplit(redis_url).port}/" in found["redis"]["message"]


def test_callstate_reads_redis_from_redis_url(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # A blf source toward a port nothing answers on: leading it writes its status to Redis.
    options = (
        f'{{ host = "127.0.0.1", port = {free_port()}, domain = "pbx.test", from_user = "bridge" }}'
    )
    toml = tenant_toml(extra='[[tenants.pbx_users]]\nusername = "alice"\nextension = "200"\n')
    toml += f'[tenants.pbx.callstate]\nsource = "blf"\noptions = {options}\n'
    env = write_env(tmp_path, toml, **{secret_env("contoso", "CLIENT_SECRET"): "s"})
    callstate_process = start(
        "callstate",
        platform_env(REDIS_URL=redis_url, **env),
        lambda: callstate.status(redis_client, "contoso", "blf") is not None,
        "the call-state process",
    )
    callstate_process.stop()
