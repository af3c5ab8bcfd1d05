"""`python -m subscriptions`: the Procfile's clock process; with a command, one schedule once."""

from __future__ import annotations

import signal
import sys
import threading

from core.graph_tokens import GraphTokens
from core.logging import configure
from core.redis import connect
from core.settings import load_or_exit
from subscriptions import commands
from subscriptions.clock import run
from subscriptions.schedules import Clockwork


def main(argv: list[str]) -> int:
    if argv:
        return commands.main(argv)
    settings = load_or_exit("clock")
    configure(settings.process.log_level)
    redis = connect(settings.process.redis_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with GraphTokens(settings, redis) as auth:
        work = Clockwork(settings, redis, auth)
        schedules = work.schedules()
        print(f"clock: {len(settings.tenants)} tenant(s), {len(schedules)} schedule(s)", flush=True)
        try:
            run(redis, schedules, stop)
        finally:
            work.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
