"""Real calls through a real PBX for tests: SIPp phones (Debian package sip-tester).

`answering(pbx, "201")` starts a phone that registers as 201 and answers one call;
`Call(pbx, "200", "201")` dials it, talks until `hang_up()`, then sends BYE.
`watching(pbx, "alice")` starts a presence watcher whose NOTIFYs the test reads from
SIPp's own message trace.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from emulator.harness.kamailio import KamailioServer, free_port_pair

SCENARIOS = Path(__file__).parent / "kamailio" / "sipp"
TIMEOUT = 30.0


def sipp_binary() -> str:
    found = shutil.which("sipp")
    if found is None:
        raise RuntimeError(
            "sipp not found; install the Debian package sip-tester (scripts/bootstrap.sh does)"
        )
    return found


def _command(
    pbx: KamailioServer, scenario: str, port: int, *args: str, calls: int = 1
) -> list[str]:
    return [
        sipp_binary(),
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        str(calls),
        "-nostdin",
        "-key",
        "domain",
        pbx.domain,
        *args,
        f"127.0.0.1:{pbx.udp_port}",
    ]


class Phone:
    """One SIPp process; `wait()` fails with its output unless it ended its scenario well."""

    def __init__(self, command: list[str], name: str) -> None:
        self.name = name
        self.port = int(command[command.index("-p") + 1])
        # A file, not a pipe: SIPp redraws its screen every second and must never block.
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by kill()/wait()
        # Fixed binary and arguments we built ourselves.
        self.proc = subprocess.Popen(  # noqa: S603
            command,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait(self, timeout: float = TIMEOUT) -> None:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sipp {self.name} did not finish in {timeout:g}s") from None
        if code != 0:
            raise AssertionError(f"sipp {self.name} exited {code}:\n{self.tail()}")
        self.output.close()

    def tail(self, size: int = 3000) -> str:
        self.output.seek(0)
        return self.output.read().decode(errors="replace")[-size:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.output.close()


def register(pbx: KamailioServer, extension: str, contact_port: int) -> None:
    """Register `extension` at the PBX with its Contact on `contact_port`."""
    command = _command(
        pbx,
        "register.xml",
        free_port_pair(),
        "-s",
        extension,
        "-key",
        "contact_port",
        str(contact_port),
    )
    Phone(command, f"register {extension}").wait()


@contextmanager
def answering(
    pbx: KamailioServer,
    extension: str,
    ring_ms: int = 200,
    *,
    calls: int = 1,
    extra: Sequence[str] = (),
) -> Iterator[Phone]:
    """A phone registered as `extension` that rings `ring_ms`, answers `calls` calls one
    after the other, each until its BYE. `extra`: more SIPp arguments (e.g. a trace)."""
    port = free_port_pair()
    command = _command(
        pbx, "answer.xml", port, "-s", extension, "-d", str(ring_ms), *extra, calls=calls
    )
    phone = Phone(command, f"answer {extension}")
    try:
        register(pbx, extension, port)
        yield phone
    finally:
        phone.kill()


class Call:
    """`caller` dials `callee` through the PBX at once; the call lasts until hang_up()."""

    def __init__(
        self, pbx: KamailioServer, caller: str, callee: str, extra: Sequence[str] = ()
    ) -> None:
        self.call_id_base = f"pb-call-{uuid.uuid4().hex[:12]}"
        self.call_id = f"{self.call_id_base}-1"  # SIPp's %u is the call number, 1
        command = _command(
            pbx,
            "call.xml",
            free_port_pair(),
            "-s",
            callee,
            "-key",
            "caller",
            caller,
            "-cid_str",
            f"{self.call_id_base}-%u",
            *extra,
        )
        self.phone = Phone(command, f"call {caller}->{callee}")

    def hang_up(self) -> None:
        """Tell the calling phone to hang up (an INFO for its call), and wait for the BYE."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            info = (
                f"INFO sip:caller@127.0.0.1:{self.phone.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:test@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
                "To: <sip:caller@127.0.0.1>\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: 1 INFO\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(info.encode(), ("127.0.0.1", self.phone.port))
        self.phone.wait()

    def close(self) -> None:
        self.phone.kill()


# How SIPp's -trace_msg log introduces each message: a dashed line with the time, then the
# transport, the direction and the message's exact length in bytes.
_TRACE_ENTRY = re.compile(
    rb"^-{40,} [^\n]*\n(?:UDP|TCP) message (?:received \[(\d+)\] bytes :|sent \((\d+) bytes\):)"
    rb"\n\n",
    re.MULTILINE,
)


@dataclass(frozen=True)
class TracedMessage:
    """One message as SIPp logged it."""

    received: bool
    raw: bytes

    @property
    def start_line(self) -> str:
        return self.raw.split(b"\r\n", 1)[0].decode(errors="replace")

    def header(self, name: str) -> str | None:
        head = self.raw.partition(b"\r\n\r\n")[0].decode(errors="replace")
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    @property
    def body(self) -> bytes:
        return self.raw.partition(b"\r\n\r\n")[2]


def read_trace(path: Path) -> list[TracedMessage]:
    """Every message in a SIPp -trace_msg log, in the order SIPp logged them."""
    data = path.read_bytes()
    messages = []
    for entry in _TRACE_ENTRY.finditer(data):
        received = entry.group(1) is not None
        size = int(entry.group(1) or entry.group(2))
        messages.append(TracedMessage(received, data[entry.end() : entry.end() + size]))
    return messages


class Watcher:
    """A SIPp presence watcher (watch.xml): SUBSCRIBEs, then answers every NOTIFY 200.

    After each NOTIFY the scenario writes a line to a FIFO, so `wait_notifies()` awaits
    that event; `notifies()` reads what arrived from SIPp's -trace_msg log.
    """

    def __init__(self, pbx: KamailioServer, user: str) -> None:
        sipp_binary()  # fails before anything is made when SIPp is missing
        self.dir = Path(tempfile.mkdtemp(prefix="pb-sipp-watch-"))
        self.trace = self.dir / "messages.log"
        signal = self.dir / "signal"
        os.mkfifo(signal)
        # Our own writer keeps the FIFO open, so a read never sees end-of-file between
        # SIPp's short-lived writers.
        self._reader = os.open(signal, os.O_RDONLY | os.O_NONBLOCK)
        self._writer = os.open(signal, os.O_WRONLY)
        self.signals = 0
        command = _command(
            pbx,
            "watch.xml",
            free_port_pair(),
            "-s",
            user,
            "-key",
            "signal",
            str(signal),
            "-trace_msg",
            "-message_file",
            str(self.trace),
        )
        self.phone = Phone(command, f"watch {user}")

    def wait_notifies(self, count: int, timeout: float = TIMEOUT) -> list[TracedMessage]:
        """Await the `count`th NOTIFY since the start; every NOTIFY received so far."""
        while self.signals < count:
            ready, _, _ = select.select([self._reader], [], [], timeout)
            if not ready:
                state = "exited" if self.phone.proc.poll() is not None else "running"
                raise AssertionError(
                    f"sipp {self.phone.name} ({state}) got {self.signals} "
                    f"of {count} NOTIFYs in {timeout:g}s:\n{self.phone.tail()}"
                )
            self.signals += os.read(self._reader, 4096).count(b"\n")
        return self.notifies()

    def notifies(self) -> list[TracedMessage]:
        return [
            m for m in read_trace(self.trace) if m.received and m.start_line.startswith("NOTIFY ")
        ]

    def close(self) -> None:
        self.phone.kill()
        os.close(self._reader)
        os.close(self._writer)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def watching(pbx: KamailioServer, user: str) -> Iterator[Watcher]:
    """A SIPp watcher of `user`'s presence, subscribed once its first NOTIFY arrived."""
    watcher = Watcher(pbx, user)
    try:
        watcher.wait_notifies(1)
        yield watcher
    finally:
        watcher.close()
