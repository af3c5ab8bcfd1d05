"""Run the emulator in-process: a real uvicorn with TLS on loopback, in a background thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from emulator.app import create_app
from emulator.control import ControlClient
from emulator.harness.served import ServedApp
from emulator.tls import TlsFiles, generate
from emulator.tokens import set_issuer_base
from emulator.world import World


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
        self.tls: TlsFiles | None = generate(tls_dir, (host,)) if tls else None
        self._served = ServedApp(
            create_app(self.world),
            host=host,
            port=port,
            tls=self.tls,
            log_level=log_level,
            name="graph-emulator",
        )
        self.port: int = self._served.port
        self.base_url = self._served.url

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
        try:
            self._served.start()
        except RuntimeError:
            self._remove_tls()
            raise
        return self

    def stop(self) -> None:
        self._served.stop()
        self._remove_tls()

    def _remove_tls(self) -> None:
        if self.tls is not None:
            self.tls.remove()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
