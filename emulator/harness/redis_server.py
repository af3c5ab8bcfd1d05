"""A private redis-server on a loopback port, without persistence unless asked.

Tests and benchmarks never touch a Redis they did not start: the machine's 6379 may hold
someone's data.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from emulator.harness.ports import free_port

START_TIMEOUT = 10.0
# What XRANGE answers to a client without decode_responses (redis-py types it wider).
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


class RedisServer:
    """One redis-server process; can be stopped and started again on the same port.

    `with RedisServer() as server:` starts it and removes its directory at the end.
    """

    def __init__(self, port: int | None = None, args: Sequence[str] = ()) -> None:
        """`args` go after the defaults, so `("--appendonly", "yes")` turns AOF on."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; `make setup` installs it")
        self.binary = binary
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pb-redis-"))
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(port=self.port)  # connects on first use

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("redis-server is not running")
        return self.proc.pid

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(  # noqa: S603 - the redis-server found on PATH, fixed args
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    probe.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)  # polling the server's readiness; no event to await
        finally:
            probe.close()
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop the server; with `keep_data` it saves a snapshot first, which `start` loads."""
        if self.proc is not None:
            if keep_data:
                self.client.shutdown(save=True)
            else:
                self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        self.client.close()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
