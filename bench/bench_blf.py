"""BLF call-state benchmark: the `blf` source against a real Kamailio with SIPp calls.

Two figures. (1) Subscribing: how long until every one of `--extensions` extensions is
subscribed and has delivered its first full state, at `--rate` SUBSCRIBEs a second.
(2) Per call, `--calls` calls 200 -> 201 one after the other: from the callee's phone
sending 200 OK to both parties' `call_started` at the sink, and from the caller's phone
sending BYE to both `call_ended` (SIPp's message traces give the send times; one clock).
This is the PBX -> bridge hop only; the hop on to Teams is the reverse path's benchmark.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import ROOT, emit, machine, percentile

sys.path.insert(0, str(ROOT))

from emulator.harness.kamailio import BLF_DEFAULTS, BLF_TEMPLATE, KamailioServer  # noqa: E402
from emulator.harness.sipp import Call, answering  # noqa: E402
from workers.callstate.blf import BlfCallSource  # noqa: E402

_BLOCK = re.compile(
    r"^-{20,} (\S+ \S+)\nUDP message sent[^\n]*\n\n(.*?)(?=^-{20,} |\Z)", re.MULTILINE | re.DOTALL
)


def sent_times(trace: Path, start_line: str, cseq: str) -> dict[str, float]:
    """Call-ID -> when the phone sent the message starting `start_line` with that CSeq."""
    out: dict[str, float] = {}
    for stamp, message in _BLOCK.findall(trace.read_text(errors="replace")):
        if not message.startswith(start_line) or f"CSeq: {cseq}" not in message:
            continue
        call_id = re.search(r"^Call-ID: (\S+)", message, re.MULTILINE)
        if call_id:
            out.setdefault(call_id.group(1), datetime.fromisoformat(stamp).timestamp())
    return out


class Sink:
    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str, str], float] = {}
        self.changed = threading.Condition()

    def __call__(self, item: dict[str, Any]) -> None:
        with self.changed:
            self.arrived[(item["type"], item["user"], item["call_id"])] = time.time()
            self.changed.notify_all()

    def wait(self, keys: list[tuple[str, str, str]], timeout: float = 15) -> float:
        with self.changed:
            if not self.changed.wait_for(lambda: all(k in self.arrived for k in keys), timeout):
                raise RuntimeError(f"missing {keys}")
            return max(self.arrived[k] for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--extensions", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    pbx = KamailioServer(template=BLF_TEMPLATE, values=dict(BLF_DEFAULTS), shm_mb=256)
    pbx.start()
    workdir = Path(tempfile.mkdtemp(prefix="pb-bench-blf-"))
    users = {"200": "alice", "201": "bob"}
    users.update({str(100_000 + i): f"user{i}" for i in range(args.extensions)})
    sink = Sink()
    source = BlfCallSource(
        {
            "host": "127.0.0.1",
            "port": pbx.udp_port,
            "domain": pbx.domain,
            "bind_host": "127.0.0.1",
            "subscribes_per_second": args.rate,
        },
        None,
        users,
        sink,
    )
    thread = threading.Thread(target=lambda: asyncio.run(source.run()), daemon=True)
    began = time.monotonic()
    thread.start()
    answer_ms: list[float] = []
    hangup_ms: list[float] = []
    try:
        while source.counts["resyncs"] < len(users):
            if time.monotonic() - began > 600:
                raise RuntimeError(f"not all subscribed: {dict(source.counts)}")
            time.sleep(0.05)
        subscribe_seconds = time.monotonic() - began
        uas_trace = workdir / "answer.log"
        with answering(
            pbx, "201", 0, calls=args.calls, extra=["-trace_msg", "-message_file", str(uas_trace)]
        ):
            for n in range(args.calls):
                uac_trace = workdir / f"call-{n}.log"
                call = Call(pbx, "200", "201", ["-trace_msg", "-message_file", str(uac_trace)])
                cid = f"blf:{call.call_id}"
                started = sink.wait([("call_started", "alice", cid), ("call_started", "bob", cid)])
                call.hang_up()
                ended = sink.wait([("call_ended", "alice", cid), ("call_ended", "bob", cid)])
                ok_at = sent_times(uas_trace, "SIP/2.0 200", "1 INVITE")[call.call_id]
                bye_at = sent_times(uac_trace, "BYE ", "2 BYE")[call.call_id]
                answer_ms.append((started - ok_at) * 1000)
                hangup_ms.append((ended - bye_at) * 1000)
    finally:
        source.stop()
        thread.join(10)
        pbx.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    emit(
        {
            "benchmark": "blf",
            "machine": machine(),
            "extensions": len(users),
            "rate": args.rate,
            "subscribe_all_s": round(subscribe_seconds, 2),
            "calls": args.calls,
            "answer_to_started_ms": {q: round(percentile(answer_ms, q), 2) for q in (50, 99)},
            "bye_to_ended_ms": {q: round(percentile(hangup_ms, q), 2) for q in (50, 99)},
            "counts": dict(source.counts),
        }
    )


if __name__ == "__main__":
    main()
