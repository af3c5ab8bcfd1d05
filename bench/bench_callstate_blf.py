"""Call-state benchmark, `blf` source (issue 10): SIPp call answered -> Teams Busy/InACall at
the Graph emulator, hang-up -> cleared, through a real Kamailio.

Starts a private redis-server, the Graph emulator (in this process), a Kamailio PBX serving
dialog-info (emulator/harness/kamailio/kamailio-blf.cfg), the real web process (`python -m webhook`,
holding a presence subscription as the clock makes it), one worker (`python -m workers`,
100 ms coalescing window unless `--window-ms`) and the call-state process
(`python -m workers.callstate`) subscribed to the dialogs of 200 (alice) and 201 (bob).

For each of `--calls` calls 200 -> 201 (SIPp phones, one call after the other, answered at
once): from the callee's phone sending 200 OK until the emulator holds the bridge's
Busy/InACall session for both users ("busy"), and from the caller's phone sending BYE until
both sessions are gone ("cleared"). Send times come from SIPp's message traces, arrival
times from this process reading the emulator's state every 0.5 ms; both wall clock.

The last line printed is one JSON object with every figure.

    .venv/bin/python bench/bench_callstate_blf.py [--calls 100] [--window-ms 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ROOT, cpu_seconds, emit, machine
from bench_blf import sent_times
from bench_callstate import TARGET_P99_MS, Site, figures_of

sys.path.insert(0, str(ROOT))

from emulator.harness.kamailio import KamailioServer, blf_server  # noqa: E402
from emulator.harness.redis_server import RedisServer  # noqa: E402
from emulator.harness.sipp import Call, answering  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402

WARM_CALLS = 5  # tokens, connections, script loads
POLL_SECONDS = 0.0005


def blf_site(
    redis_server: RedisServer, emulator: EmulatorServer, pbx: KamailioServer,
    window_ms: int, workdir: Path,
) -> Site:  # fmt: skip
    options = (f'host = "127.0.0.1", port = {pbx.udp_port}, domain = "{pbx.domain}", '
               'bind_host = "127.0.0.1"')  # fmt: skip
    pbx_toml = (f'adapter = "builtin"\n[tenants.pbx.callstate]\nsource = "blf"\n'
                f"options = {{ {options} }}\n")  # fmt: skip
    env = {"PRESENCE_BRIDGE_COALESCE_WINDOW_MS": str(window_ms)}
    return Site(redis_server, emulator, pbx_toml, env, workdir)


def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    """Wall-clock time when `check` first holds (SIPp's traces are wall clock too)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the emulator never showed {what}")
        time.sleep(POLL_SECONDS)
    return time.time()


def run_calls(
    site: Site, pbx: KamailioServer, count: int, workdir: Path
) -> tuple[list[float], list[float]]:
    busy_ms: list[float] = []
    cleared_ms: list[float] = []
    uas_trace = workdir / f"answer-{time.monotonic_ns()}.log"
    with answering(pbx, "201", 0, calls=count,
                   extra=["-trace_msg", "-message_file", str(uas_trace)]):  # fmt: skip
        for n in range(count):
            uac_trace = workdir / f"call-{time.monotonic_ns()}-{n}.log"
            call = Call(pbx, "200", "201", ["-trace_msg", "-message_file", str(uac_trace)])
            try:
                busy_at = until(lambda: all(site.busy()), f"call {n}: both busy")
                # hang_up() waits for the caller's phone to finish: meanwhile, watch Teams.
                hanging_up = threading.Thread(target=call.hang_up)
                hanging_up.start()
                cleared_at = until(lambda: not any(site.busy()), f"call {n}: both cleared")
                hanging_up.join(30)
            finally:
                call.close()
            ok_at = sent_times(uas_trace, "SIP/2.0 200", "1 INVITE")[call.call_id]
            bye_at = sent_times(uac_trace, "BYE ", "2 BYE")[call.call_id]
            busy_ms.append((busy_at - ok_at) * 1000)
            cleared_ms.append((cleared_at - bye_at) * 1000)
    return busy_ms, cleared_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument(
        "--window-ms",
        type=int,
        default=100,
        help="the worker's PRESENCE_BRIDGE_COALESCE_WINDOW_MS (default 100)",
    )
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "bench": "callstate_blf", "machine": machine(), "calls": args.calls,
        "coalesce_window_ms": args.window_ms,
        "loadavg_before": [round(v, 2) for v in os.getloadavg()],
    }  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="pb-bench-callstate-blf-"))
    pbx = blf_server()
    pbx.start()
    try:
        with RedisServer() as redis_server, EmulatorServer() as emulator:
            site = blf_site(redis_server, emulator, pbx, args.window_ms, workdir)
            try:
                site.start()
                run_calls(site, pbx, WARM_CALLS, workdir)
                pids = site.worker.pids() + site.callstate.pids()
                cpu_before = cpu_seconds(pids)
                started = time.perf_counter()
                busy_ms, cleared_ms = run_calls(site, pbx, args.calls, workdir)
                figures["seconds"] = round(time.perf_counter() - started, 1)
                figures["worker_and_callstate_cpu_seconds"] = round(
                    cpu_seconds(pids) - cpu_before, 2
                )
            except Exception:
                print(site.callstate.output(), site.worker.output(), sep="\n", file=sys.stderr)
                raise
            finally:
                site.stop()
    finally:
        pbx.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    figures["answer_to_busy"] = figures_of(busy_ms)
    figures["hangup_to_cleared"] = figures_of(cleared_ms)
    figures["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    worst = max(figures["answer_to_busy"]["p99_ms"], figures["hangup_to_cleared"]["p99_ms"])
    figures["targets"] = {"p99_ms": {"target": TARGET_P99_MS, "measured": worst,
                                     "met": worst < TARGET_P99_MS}}  # fmt: skip
    print(figures["answer_to_busy"], figures["hangup_to_cleared"], flush=True)
    emit(figures)


if __name__ == "__main__":
    main()
