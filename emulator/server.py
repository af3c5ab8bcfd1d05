"""Run the emulator in-process: a real uvicorn with TLS on loopback, in a background thread."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import uvicorn

from emulator.app import create_app
from emulator.control import ControlClient
from emulator.tls import TlsFiles, generate
from emulator.tokens import set_issuer_base
from emulator.world import World

START_TIMEOUT = 30.0


class _Server(uvicorn.Server):
    """uvicorn's server, with an event set once it listens (or failed to)."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


class EmulatorServer:
    """`with EmulatorServer() as emulator:` serves `emulator.world` at `emulator.base_url`.

    `tls=False` serves plain http (for clients other than MSAL, which requires https).
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        tls_dir: Path | None = None,
        log_level: str = "warning",
    ) -> None:
        self.world = world or World()
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Bound here so the port is known (and ours) before the server thread starts.
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self.tls: TlsFiles | None = generate(tls_dir, (host,)) if tls else None
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://{host}:{self.port}"
        self._log_level = log_level
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: _Server | None = None
        self._error: BaseException | None = None

    @property
    def ca_path(self) -> Path | None:
        return self.tls.ca_path if self.tls else None

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    def authority(self, tenant_id: str) -> str:
        return f"{self.base_url}/{tenant_id}"

    def msal_session(self) -> requests.Session:
        """A `requests` session for msal's `http_client=` that trusts only this emulator's CA.

        `trust_env` is off because requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override
        `Session.verify`, which is all msal's own `verify=` parameter sets. Close it when done.
        """
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_path) if self.ca_path else True
        return session

    def msal_options(self, tenant_id: str, http_client: requests.Session) -> dict[str, Any]:
        """Keyword arguments that point an unchanged `msal` application at this emulator."""
        return {
            "authority": self.authority(tenant_id),
            "instance_discovery": False,  # else msal asks login.microsoftonline.com
            "http_client": http_client,
        }

    def control(self) -> ControlClient:
        return ControlClient(self.base_url, self.ca_path)

    def start(self) -> EmulatorServer:
        set_issuer_base(self.world, self.base_url)
        config = uvicorn.Config(
            create_app(self.world),
            log_level=self._log_level,
            log_config=None,  # leave the host process's logging alone
            access_log=False,
            ws="none",
            lifespan="on",
            timeout_graceful_shutdown=2,
            ssl_certfile=str(self.tls.cert_path) if self.tls else None,
            ssl_keyfile=str(self.tls.key_path) if self.tls else None,
        )
        self._server = _Server(config, self._ready)
        self._thread = threading.Thread(target=self._run, name="graph-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or not self._server.started:
            self.stop()
            raise RuntimeError(f"the emulator did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        assert self._server is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as error:  # noqa: BLE001 - reported by start()
            self._error = error
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)
        self._socket.close()
        if self.tls is not None:
            self.tls.remove()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
