"""`make run`'s runner starts web, worker and clock with no tenants, and they stay healthy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_all_processes_start_healthy_without_tenants(redis_url: str, redis_client) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_BRIDGE_")}
    env.update(REDIS_URL=redis_url, PRESENCE_BRIDGE_PORT=str(port))
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
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        while ready.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # the worker's first heartbeat; polled, nothing to await
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.json() == {"status": "ready", "redis": True, "worker": True}
        assert redis_client.exists("pb:heartbeat:clock") == 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
