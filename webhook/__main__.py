"""`python -m webhook`: the Procfile's web process."""

from __future__ import annotations

import sys

import uvicorn

from core.errors import ConfigError
from core.logging import configure
from core.settings import load_settings


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"presence-bridge web: {exc}", file=sys.stderr)
        return 2
    configure(settings.process.log_level)
    process = settings.process
    print(f"web: listening on http://{process.host}:{process.port}", flush=True)
    uvicorn.run(
        "webhook.app:factory",
        factory=True,
        host=process.host,
        port=process.port,
        workers=process.web_workers,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=30,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
