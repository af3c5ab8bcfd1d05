"""A real Kamailio presence server for tests, on loopback with free UDP and TCP ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

BINARY_CANDIDATES = ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio")
MODULE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
)
DBTEXT_SOURCE = Path("/usr/share/kamailio/dbtext/kamailio")
# The presence module checks these tables' versions at start, even with state in memory.
DBTEXT_TABLES = ("version", "presentity", "active_watchers", "watchers", "xcap", "pua")
TEMPLATE = Path(__file__).parent / "kamailio" / "kamailio.cfg"
# A small PBX: registrar, proxy, dialog module and dialog-info presence (the blf source's tests).
BLF_TEMPLATE = Path(__file__).parent / "kamailio" / "kamailio-blf.cfg"
BLF_DEFAULTS: dict[str, object] = {"min_expires": 0, "include_callid": 1}
START_TIMEOUT = 15.0


def free_port_pair() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def _find(candidates: tuple[str, ...], what: str) -> str:
    for candidate in candidates:
        if Path(candidate).exists():
            return candidate
    raise RuntimeError(
        f"{what} not found; install the Debian packages kamailio and "
        "kamailio-presence-modules (scripts/bootstrap.sh does)"
    )


def render_config(template: Path = TEMPLATE, **values: object) -> str:
    """Fill the template's ${name} slots (Kamailio's own $fd-style variables stay)."""
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("${" + name + "}", str(value))
    return text


class KamailioServer:
    """Owns one kamailio process; stop() and start() again keep the same ports."""

    def __init__(
        self,
        domain: str = "presence.test",
        *,
        publish_min_expires: int = 0,
        publ_cache: int = 1,
        password: str | None = None,
        template: Path = TEMPLATE,
        values: dict[str, object] | None = None,
        shm_mb: int = 32,
    ) -> None:
        """`template` and `values` pick another config and fill its own slots."""
        self.shm_mb = shm_mb
        self.binary = _find(BINARY_CANDIDATES, "kamailio")
        self.module_dir = _find(MODULE_DIRS, "kamailio modules")
        if not Path(self.module_dir, "presence.so").exists():
            raise RuntimeError("presence.so missing; install kamailio-presence-modules")
        self.domain = domain
        self.password = password
        self.udp_port = free_port_pair()
        self.tcp_port = free_port_pair()
        self.dir = Path(tempfile.mkdtemp(prefix="pb-kamailio-"))
        self.log_path = self.dir / "kamailio.log"
        self.db_dir = self.dir / "db"
        self.db_dir.mkdir()
        config = render_config(
            template,
            **(values or {}),
            udp_port=self.udp_port,
            tcp_port=self.tcp_port,
            domain=domain,
            module_dir=self.module_dir,
            db_dir=self.db_dir,
            publish_min_expires=publish_min_expires,
            publ_cache=publ_cache,
            password=password or "",
        )
        self.config_path = self.dir / "kamailio.cfg"
        self.config_path.write_text(config, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start with empty tables: a restarted server has forgotten every publication."""
        # Also because 5.6's db_text writes presentity rows at exit that it then refuses
        # to load ("null value not allowed"), so reusing them would fail the start.
        for table in DBTEXT_TABLES:
            shutil.copyfile(DBTEXT_SOURCE / table, self.db_dir / table)
        args = [
            self.binary,
            "-f",
            str(self.config_path),
            "-DD",
            "-E",
            "-m",
            str(self.shm_mb),
            "-M",
            "8",
            "-Y",
            str(self.dir),
            "-P",
            str(self.dir / "kamailio.pid"),
        ]
        if self.password is not None:
            args += ["-A", "WITH_AUTH"]
        with self.log_path.open("ab") as log:
            # Fixed binary path and arguments we built ourselves.
            self.proc = subprocess.Popen(  # noqa: S603
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        # Readiness = it answers an OPTIONS over UDP and accepts TCP; no event to await.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited at start:\n{self.log_tail()}")
            if self._answers_options() and self._accepts_tcp():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not become ready:\n{self.log_tail()}")
            time.sleep(0.05)

    def _answers_options(self) -> bool:
        branch = "z9hG4bK" + uuid.uuid4().hex
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.2)
            port = sock.getsockname()[1]
            request = (
                f"OPTIONS sip:{self.domain} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{self.domain}>;tag={uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:{self.domain}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            try:
                sock.sendto(request.encode(), ("127.0.0.1", self.udp_port))
                data = sock.recv(65535)
            except OSError:
                return False
        return data.startswith(b"SIP/2.0 200")

    def _accepts_tcp(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.2):
                return True
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def blf_server(*, password: str | None = None, **values: object) -> KamailioServer:
    """A Kamailio PBX serving dialog-info (not started); `values` override BLF_DEFAULTS."""
    return KamailioServer(
        password=password, template=BLF_TEMPLATE, values={**BLF_DEFAULTS, **values}
    )
