"""Serve an ASGI app with a real uvicorn on loopback, in a background thread."""

from __future__ import annotations

import socket
import threading
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from emulator.tls import TlsFiles

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


class ServedApp:
    """`with ServedApp(app) as served:` serves `app` at `served.url` until the block ends.

    The socket is bound here, so the port is known (and ours) before the server starts;
    `port=0` takes a free one. `tls` serves https with those files.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
        lifespan: Literal["on", "off"] = "on",
        loop: Literal["auto", "asyncio"] = "auto",
        log_level: str = "warning",
        name: str = "served-app",
    ) -> None:
        self.app = app
        self.host = host
        self.tls = tls
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self._config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_level=log_level,
            log_config=None,  # leave the host process's logging alone
            access_log=False,
            ws="none",
            lifespan=lifespan,
            loop=loop,
            # As `python -m webhook` runs it: the bridge's app applies the proxy headers itself.
            proxy_headers=False,
            timeout_graceful_shutdown=2,  # a request held open by a test must not stall stop()
            ssl_certfile=str(tls.cert_path) if tls else None,
            ssl_keyfile=str(tls.key_path) if tls else None,
        )
        self._name = name
        self._ready = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> ServedApp:
        self._server = _Server(self._config, self._ready)
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or not self._server.started:
            self.stop()
            raise RuntimeError(f"{self._name} did not start: {self._error!r}")
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

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
