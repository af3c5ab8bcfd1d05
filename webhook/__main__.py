"""`python -m webhook`: the Procfile's web process."""

from __future__ import annotations

import uvicorn

from core.logging import configure
from core.settings import load_or_exit


def main() -> int:
    settings = load_or_exit("web")
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
        proxy_headers=False,  # the app applies them, from PRESENCE_BRIDGE_FORWARDED_ALLOW_IPS
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
