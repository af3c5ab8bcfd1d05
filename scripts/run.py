"""Start the Procfile's processes together (what `make run` does), and stop them together.

Prints where the web process listens once it answers. If any process exits, the others
are stopped (each with every process it spawned) and the exit code says which failed. One
run per run directory (`.run/`, or PRESENCE_BRIDGE_RUN_DIR): a second one is refused before it
touches the first one's files. With no tenants file it runs the demo
(scripts/demo.py): the Graph emulator plays a tenant, and the bridge runs for real against it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import demo as demo_setup  # noqa: E402 (scripts/demo.py, beside this file)

Procs = dict[str, "subprocess.Popen[str]"]
LOCK_NAME = "run.lock"  # holds the runner's pid; flock'd while it runs (scripts/stop.sh reads it)


def hold_run_lock(run_dir: Path) -> int | None:
    """The lock's descriptor, kept open while this run lives; None when another run holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def holder(run_dir: Path) -> str:
    try:
        return (run_dir / LOCK_NAME).read_text().strip() or "?"
    except OSError:
        return "?"


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(name: str, command: str, env: dict[str, str], procs: Procs) -> None:
    procs[name] = subprocess.Popen(  # noqa: S602 (the Procfile is ours)
        command, shell=True, cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    threading.Thread(target=pump, args=(name, procs[name].stdout), daemon=True).start()


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host if host != "0.0.0.0" else "127.0.0.1", port), 1):  # noqa: S104
            return True
    except OSError:
        return False


def wait_healthy(url: str, procs: Procs, timeout: float) -> bool:
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


def announce_demo(demo_dir: Path, base: str, env: dict[str, str]) -> None:
    key = env["PRESENCE_BRIDGE_ADMIN_API_KEY"]
    try:
        accounts = demo_setup.sign_in(demo_dir, base, key)
    except Exception as exc:  # noqa: BLE001 - the demo goes on; the status page shows why
        print(f"demo: signing the service account in failed: {exc}", flush=True)
        accounts = []
    print(
        "Demo: the Graph emulator plays an office day for 50 users at 60x speed; "
        f"service account signed in: {', '.join(accounts) or 'none'}.\n"
        f"Status page: {base}/admin  (admin key: {key}, also in {demo_dir / 'secrets.json'})\n"
        f"PBX profiles: {base}/api/v1/tenants/demo/users  "
        f"(header X-API-Key: {env['PRESENCE_BRIDGE_TENANT_DEMO_PBX_SECRET']})",
        flush=True,
    )


def signal_group(proc: subprocess.Popen[str], signum: int) -> None:
    # The whole group, also when its leader is gone: a worker killed from outside leaves its
    # children (RQ's scheduler, uvicorn's workers) in the group it led.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)


def group_alive(proc: subprocess.Popen[str]) -> bool:
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_all(procs: Procs) -> None:
    for proc in procs.values():
        signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        while group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.1)  # the group's other members have no exit event to wait on
        signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=5)


def main() -> int:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if "REDIS_URL" in env:
        env.setdefault("PRESENCE_BRIDGE_REDIS_URL", env["REDIS_URL"])
    env.setdefault("PYTHONUNBUFFERED", "1")
    host = env.setdefault("PRESENCE_BRIDGE_HOST", "127.0.0.1")
    port = env.setdefault("PRESENCE_BRIDGE_PORT", "8000")
    run_dir = Path(env.get("PRESENCE_BRIDGE_RUN_DIR") or ROOT / ".run")
    demo_dir = Path(env.get("PRESENCE_BRIDGE_DEMO_DIR") or run_dir / "demo")
    demo = "PRESENCE_BRIDGE_TENANTS_FILE" not in env and env.get("PRESENCE_BRIDGE_DEMO") != "0"
    lock = hold_run_lock(run_dir)
    if lock is None:
        print(f"run: another `make run` (pid {holder(run_dir)}) is using {run_dir}; stop it "
              "first (Ctrl-C there, or `make stop`)", file=sys.stderr, flush=True)  # fmt: skip
        return 1
    if listening(host, int(port)):
        # Else the banner below would greet whatever answers there, not our web process.
        print(f"run: {host}:{port} is taken; set PRESENCE_BRIDGE_PORT to a free port",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    procs: Procs = {}
    if demo:
        env.update(demo_setup.prepare(demo_dir, port))
        start("graph", demo_setup.emulator_command(ROOT, demo_dir, free_port(), port), env, procs)
        env.update(demo_setup.configure(demo_dir, port))
        demo_setup.write_env(run_dir / "env", env)  # so `presence-bridge` finds the demo
    for name, command in read_procfile(ROOT / "Procfile"):
        start(name, command, env, procs)

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    base = f"http://{host}:{port}"
    if wait_healthy(f"{base}/healthz", procs, timeout=60):
        print(f"Presence Bridge is running: web on {base} (health: {base}/health/system, "
              f"metrics: {base}/metrics). Ctrl-C stops it.", flush=True)  # fmt: skip
        if demo:
            announce_demo(demo_dir, base, env)
    code = 0
    while not stopping.is_set():
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            print(f"run: process {dead[0]} exited with {procs[dead[0]].returncode}; stopping",
                  flush=True)  # fmt: skip
            code = 1
            break
        stopping.wait(0.5)
    stop_all(procs)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
