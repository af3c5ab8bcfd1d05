"""Start the Procfile's processes together (what `make run` does), and stop them together.

Prints where the web process listens once it answers. If any process exits, the others
are stopped and the exit code says which failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_procfile(path: Path) -> list[tuple[str, str]]:
    entries = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries.append((name.strip(), command.strip()))
    return entries


def pump(name: str, stream: object) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:>8} | {line}")
        sys.stdout.flush()


def wait_healthy(url: str, procs: dict[str, subprocess.Popen[str]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
                return bool(response.status == 200)
        except OSError:
            time.sleep(0.2)  # the web process is still starting; it has no event to await
    return False


def main() -> int:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if "REDIS_URL" in env:
        env.setdefault("PRESENCE_BRIDGE_REDIS_URL", env["REDIS_URL"])
    env.setdefault("PYTHONUNBUFFERED", "1")
    host = env.setdefault("PRESENCE_BRIDGE_HOST", "127.0.0.1")
    port = env.setdefault("PRESENCE_BRIDGE_PORT", "8000")
    procs: dict[str, subprocess.Popen[str]] = {}
    for name, command in read_procfile(ROOT / "Procfile"):
        procs[name] = subprocess.Popen(  # noqa: S602 (the Procfile is ours)
            command,
            shell=True,
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=pump, args=(name, procs[name].stdout), daemon=True).start()

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    base = f"http://{host}:{port}"
    if wait_healthy(f"{base}/healthz", procs, timeout=60):
        print(
            f"Presence Bridge is running: web on {base} (health: {base}/readyz, "
            f"metrics: {base}/metrics). Ctrl-C stops it.",
            flush=True,
        )
    code = 0
    while not stopping.is_set():
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            print(
                f"run: process {dead[0]} exited with {procs[dead[0]].returncode}; stopping",
                flush=True,
            )
            code = 1
            break
        stopping.wait(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
