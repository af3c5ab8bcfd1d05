"""`python -m subscriptions`: the Procfile's clock process, and nothing else.

The one-shot runs of a schedule moved to the operator CLI (`presence-bridge clock ...`).
"""

from __future__ import annotations

import signal
import sys
import threading

from core.graph_tokens import GraphTokens
from core.logging import configure
from core.redis import connect
from core.settings import load_or_exit
from subscriptions.clock import run
from subscriptions.schedules import Clockwork

EXIT_USAGE = 2  # the usage code of `presence-bridge` too (docs/cli.md)
# Where each one-shot command of this module went.
MOVED = {
    "reconcile": "presence-bridge clock reconcile",
    "renew": "presence-bridge clock renew",
    "sweep": "presence-bridge clock sweep",
    "directory": "presence-bridge clock directory",
    "status": "presence-bridge status --json",
}


def main(argv: list[str]) -> int:
    if argv:
        instead = MOVED.get(argv[0], "presence-bridge clock --help")
        print(f"python -m subscriptions takes no arguments (it runs the clock); use `{instead}`",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
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
            run(redis, schedules, stop, lead=work.lead)
        finally:
            work.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
