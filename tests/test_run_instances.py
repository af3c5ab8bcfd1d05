"""`make run` owns its run directory: one run at a time, all of it stopped together, its own
private Redis on a port of its own, and `make stop` (and so `make clean`) ends what it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from emulator.harness.ports import free_port, port_open
from emulator.harness.processes import wait_for

ROOT = Path(__file__).resolve().parents[1]
VENV = str(Path(sys.executable).parent.parent)
BASH = "/bin/bash"


def launcher_env(run_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_BRIDGE_")}
    env.pop("REDIS_URL", None)
    return {**env, "PRESENCE_BRIDGE_RUN_DIR": str(run_dir), "VENV": VENV, **extra}


@dataclass
class Run:
    proc: subprocess.Popen[str]
    port: int

    def wait_running(self) -> str:
        assert self.proc.stdout is not None
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if "Presence Bridge is running" in line:
                return "".join(lines)
        raise AssertionError("".join(lines))

    def children(self) -> list[int]:
        """The process groups the runner started (each child leads its own)."""
        return [pid for pid, ppid in processes() if ppid == self.proc.pid]


def processes() -> Iterator[tuple[int, int]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            yield int(entry.name), ppid


def group_members(pgid: int) -> list[int]:
    found = []
    for pid, _ in processes():
        try:
            if os.getpgid(pid) == pgid:
                found.append(pid)
        except OSError:
            continue
    return found


@pytest.fixture
def start_run(redis_url: str) -> Iterator[Callable[[Path], Run]]:
    started: list[Run] = []

    def start(run_dir: Path) -> Run:
        port = free_port()
        env = launcher_env(
            run_dir, REDIS_URL=redis_url, PRESENCE_BRIDGE_PORT=str(port), PRESENCE_BRIDGE_DEMO="0"
        )
        proc = subprocess.Popen(
            [sys.executable, "scripts/run.py"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        started.append(Run(proc, port))
        return started[-1]

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGINT)
        run.proc.communicate(timeout=60)


def test_a_second_run_on_the_same_run_directory_is_refused(
    start_run: Callable[[Path], Run], tmp_path: Path
) -> None:
    first = start_run(tmp_path)
    first.wait_running()
    second = start_run(tmp_path)
    output, _ = second.proc.communicate(timeout=60)
    assert second.proc.returncode == 1
    assert f"another `make run` (pid {first.proc.pid}) is using {tmp_path}" in output
    assert first.proc.poll() is None and port_open(first.port)


def test_a_run_refuses_a_port_something_else_answers_on(
    start_run: Callable[[Path], Run], tmp_path: Path
) -> None:
    first = start_run(tmp_path / "one")
    first.wait_running()
    env = launcher_env(tmp_path / "two", PRESENCE_BRIDGE_PORT=str(first.port))
    env["PRESENCE_BRIDGE_DEMO"] = "0"
    second = subprocess.run(
        [sys.executable, "scripts/run.py"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert second.returncode == 1
    assert f"127.0.0.1:{first.port} is taken" in second.stderr


def test_one_process_killed_stops_every_other_with_what_it_spawned(
    start_run: Callable[[Path], Run], tmp_path: Path
) -> None:
    run = start_run(tmp_path)
    run.wait_running()
    groups = run.children()
    # The worker's own Python process, as an operator's `kill -9` would pick it.
    worker = next(
        pid for pgid in groups for pid in group_members(pgid)
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", b"workers"]
    )  # fmt: skip
    os.kill(worker, signal.SIGKILL)
    run.proc.communicate(timeout=60)
    assert run.proc.returncode == 1
    assert {pgid: group_members(pgid) for pgid in groups if group_members(pgid)} == {}


def ensure_redis(run_dir: Path, *args: str, **extra: str) -> str:
    result = subprocess.run(  # noqa: S603 - our own scripts
        [BASH, "scripts/ensure-redis.sh", *args], cwd=ROOT, env=launcher_env(run_dir, **extra),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.fixture
def checkouts(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two run directories, as two checkouts have; their private Redis stopped at the end."""
    dirs = (tmp_path / "a", tmp_path / "b")
    yield dirs
    for run_dir in dirs:
        ensure_redis(run_dir, "stop")


def test_each_checkout_gets_a_private_redis_of_its_own(checkouts: tuple[Path, Path]) -> None:
    first, second = (ensure_redis(run_dir) for run_dir in checkouts)
    assert first != second
    redis.Redis.from_url(first).set("only-here", "1")
    assert redis.Redis.from_url(second).get("only-here") is None


def test_a_checkout_finds_its_private_redis_again(checkouts: tuple[Path, Path]) -> None:
    assert ensure_redis(checkouts[0]) == ensure_redis(checkouts[0])


def test_a_run_with_tenants_keeps_an_aof_under_the_run_directory(
    checkouts: tuple[Path, Path],
) -> None:
    url = ensure_redis(checkouts[0], PRESENCE_BRIDGE_TENANTS_FILE="tenants.toml")
    assert redis.Redis.from_url(url).config_get("appendonly") == {"appendonly": "yes"}
    wait_for(lambda: (checkouts[0] / "redis" / "appendonlydir").is_dir(), "the AOF directory")


def test_the_demo_redis_keeps_nothing(checkouts: tuple[Path, Path]) -> None:
    url = ensure_redis(checkouts[0])
    assert redis.Redis.from_url(url).config_get("appendonly") == {"appendonly": "no"}


def test_a_given_redis_that_does_not_answer_is_an_error(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603 - our own scripts
        [BASH, "scripts/ensure-redis.sh"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=launcher_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"),
    )  # fmt: skip
    assert result.returncode == 1
    assert "does not answer" in result.stderr


def test_stop_ends_the_run_and_its_private_redis(
    start_run: Callable[[Path], Run], tmp_path: Path
) -> None:
    url = ensure_redis(tmp_path)
    run = start_run(tmp_path)
    run.wait_running()
    subprocess.run(  # noqa: S603 - our own script
        [BASH, "scripts/stop.sh"],
        cwd=ROOT,
        env=launcher_env(tmp_path),
        timeout=90,
        check=True,
    )
    assert run.proc.wait(timeout=30) == 0
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
