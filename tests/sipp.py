"""Real calls through a real PBX for tests: SIPp phones (Debian package sip-tester).

`answering(pbx, "201")` starts a phone that registers as 201 and answers one call;
`Call(pbx, "200", "201")` dials it, talks until `hang_up()`, then sends BYE.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.kamailio import KamailioServer, free_port_pair

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
