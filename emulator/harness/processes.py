"""Subprocesses (the bridge's own processes among them), ready once a check holds."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = 30.0, poll: float = 0.02
) -> T:
    """Poll `check` until it returns something truthy; servers offer no readiness event."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def private_env(env: Mapping[str, str], *, inherit: bool = True) -> dict[str, str]:
    """`env` over this process's environment without its PRESENCE_BRIDGE_* settings.

    `inherit=False` keeps only PATH: nothing of the caller's shell reaches the process.
    """
    if inherit:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_BRIDGE_")}
    else:
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return {**base, **env}


class Service:
    """A subprocess in its own process group (uvicorn workers included), ready once `ready()`.

    `env` is the whole environment (see `private_env`); output goes to a temporary file,
    shown when the process fails to start.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        ready: Callable[[], bool],
        what: str,
        *,
        timeout: float = 30,
        cwd: Path = ROOT,
    ) -> None:
        self.what = what
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603 - argv built by the caller
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(lambda: self._alive() and ready(), what, timeout)
        except TimeoutError:
            output = self.output()
            self.stop()
            raise RuntimeError(f"{what} did not start:\n{output}") from None
        except BaseException:
            self.stop()
            raise

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.what} exited ({self.proc.returncode}):\n{self.output()}")
        return True

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-6000:]

    def pids(self) -> list[int]:
        """This service's processes: the leader and whatever it spawned (uvicorn workers)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getpgid(int(entry.name)) == self.proc.pid:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def kill(self) -> None:
        """Gone without a word, as a crash or a lost host: SIGKILL, nothing runs on the way."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def pause(self) -> None:
        """Stalled, as a process the host stopped scheduling (SIGSTOP); resume() it."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group we created, nothing else
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if not self.log.closed:
            self.log.close()
