"""`python -m subscriptions`: the Procfile's clock process."""

from __future__ import annotations

import signal
import sys
import threading

from core.errors import ConfigError
from core.logging import configure
from core.redis import connect
from core.settings import load_settings
from subscriptions.clock import Schedule, run


def main(argv: list[str]) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"presence-bridge clock: {exc}", file=sys.stderr)
        return 2
    configure(settings.process.log_level)
    redis = connect(settings.process.redis_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    schedules: list[Schedule] = []
    print(f"clock: {len(settings.tenants)} tenant(s), {len(schedules)} schedule(s)", flush=True)
    run(redis, schedules, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
