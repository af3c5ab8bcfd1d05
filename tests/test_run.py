"""`make run`'s runner starts web, worker and clock with no tenants, and they stay healthy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from emulator.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_all_processes_start_healthy_without_tenants(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_BRIDGE_")}
    env.update(REDIS_URL=redis_url, PRESENCE_BRIDGE_PORT=str(port), PRESENCE_BRIDGE_DEMO="0")
    env.update(PRESENCE_BRIDGE_RUN_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "scripts/run.py"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Presence Bridge is running" in line:
                break
        assert f"http://127.0.0.1:{port}" in lines[-1], "".join(lines)
        deadline = time.monotonic() + 30
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json() == {
            "status": "ready",
            "redis": True,
        }
        health = httpx.get(f"http://127.0.0.1:{port}/health/system")
        while health.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # the worker's and clock's first heartbeats; polled, nothing to await
            health = httpx.get(f"http://127.0.0.1:{port}/health/system")
        assert health.json()["status"] == "healthy", health.json()  # worker and clock alive
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_demo_turns_teams_presence_into_pbx_profiles(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """`make run` with no tenants file: emulator, sign-in, subscription, office day, profiles."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_BRIDGE_")}
    env.update(
        REDIS_URL=redis_url,
        PRESENCE_BRIDGE_PORT=str(port),
        PRESENCE_BRIDGE_DEMO_DIR=str(tmp_path / "demo"),
        PRESENCE_BRIDGE_RUN_DIR=str(tmp_path),
    )
    proc = subprocess.Popen(
        [sys.executable, "scripts/run.py"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("PBX profiles:") or proc.poll() is not None:
                break
        text = "".join(lines)
        assert "service account signed in: svc-presence-1@contoso.test" in text, text[-3000:]
        key = json.loads((tmp_path / "demo" / "secrets.json").read_text())["pbx_secret"]
        url = f"http://127.0.0.1:{port}/api/v1/tenants/demo/users"
        deadline = time.monotonic() + 90
        profiles: list[dict[str, object]] = []
        while not profiles and time.monotonic() < deadline:
            time.sleep(0.5)  # the office day plays at 60x; poll the PBX's view of it
            profiles = httpx.get(url, headers={"X-API-Key": key}).json()["value"]
        assert profiles, "no PBX profile within 90 s"
        assert redis_client.scard("pb:tenant:demo:subs") == 1
        assert_the_cli_finds_the_demo(tmp_path, env)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def assert_the_cli_finds_the_demo(run_dir: Path, env: dict[str, str]) -> None:
    """`presence-bridge` with nothing exported reads the demo's `.run/env` (mode 600)."""
    assert (run_dir / "env").stat().st_mode & 0o777 == 0o600
    bare = {k: v for k, v in env.items() if k not in ("REDIS_URL", "PRESENCE_BRIDGE_PORT")}
    done = subprocess.run(  # noqa: S603 - our own entry point
        [str(Path(sys.executable).parent / "presence-bridge"), "status", "--json"],
        cwd=ROOT, env=bare, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert f"using the environment in {run_dir / 'env'}" in done.stderr
    assert [t["name"] for t in json.loads(done.stdout)["tenants"]] == ["demo"], done.stderr
