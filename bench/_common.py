"""Helpers shared by the benchmarks: load generators, figures, the JSON line.

Every benchmark starts what it measures itself, on free loopback ports, with the servers of
`emulator.harness` (the tests use the same), and never touches a Redis it did not start.
Importing this module makes the project importable from a benchmark run as a script.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of processes, from /proc (clock ticks)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
    redis_version = subprocess.run(  # noqa: S603
        [shutil.which("redis-server") or "redis-server", "--version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "redis": next((w[2:] for w in redis_version if w.startswith("v=")), "unknown"),
    }


def emit(figures: Mapping[str, Any]) -> None:
    """The benchmark's last line: one JSON object with every figure."""
    print(json.dumps(figures, separators=(",", ":"), sort_keys=True), flush=True)


# -- wrk: closed-loop throughput ------------------------------------------------------------

WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


def run_wrk(
    url: str,
    lua: str,
    *,
    threads: int,
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    """Run wrk with a Lua script (WRK_DONE is appended) and return its summary."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua + WRK_DONE)
    try:
        out = subprocess.run(  # noqa: S603
            [
                binary,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "5s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 60,
        )
    finally:
        os.unlink(script.name)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    return result


# -- a small open-loop generator for fixed-rate runs (wrk2 is not in Debian) ---------------


@dataclass
class OpenLoopResult:
    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, from the scheduled time
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    elapsed: float = 0.0


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if match is None:
        raise RuntimeError("response without Content-Length")
    await reader.readexactly(int(match.group(1)))
    return status


async def _open_loop(
    port: int,
    path: str,
    body_for: Callable[[int], bytes],
    rate: float,
    seconds: float,
    connections: int,
) -> OpenLoopResult:
    result = OpenLoopResult()
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    ).encode()

    async def one(n: int, scheduled: float) -> None:
        body = body_for(n)
        request = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        conn = await idle.get()  # waiting here is queueing delay, so it counts in latency
        try:
            status = await _exchange(*conn, request)
        except (OSError, asyncio.IncompleteReadError, RuntimeError):
            result.errors += 1
            conn[1].close()
            idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
            return
        result.latencies.append(time.perf_counter() - scheduled)
        result.statuses[status] += 1
        idle.put_nowait(conn)

    tasks: list[asyncio.Task[None]] = []
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    start = time.perf_counter()
    total = int(rate * seconds)
    for n in range(total):
        # Send on schedule whatever the server does: latency is taken from the
        # scheduled time, so a stall is not hidden by fewer requests (coordinated omission).
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, scheduled)))
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    result.sent = total
    while not idle.empty():
        idle.get_nowait()[1].close()
    return result


def open_loop(
    port: int,
    path: str,
    body_for: Callable[[int], bytes],
    *,
    rate: float,
    seconds: float,
    connections: int = 32,
) -> OpenLoopResult:
    """POST `rate` requests/s for `seconds` on a schedule and wait for every answer."""
    try:
        import uvloop

        runner: Callable[[Any], OpenLoopResult] = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_open_loop(port, path, body_for, rate, seconds, connections))
