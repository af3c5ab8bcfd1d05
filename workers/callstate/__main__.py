"""`python -m workers.callstate`: the Procfile's call-state process (PBX calls -> Teams).

One listener per tenant with a `[tenants.pbx.callstate]` section; run it on as many hosts as
you like, each source leads on one of them at a time (workers/callstate/leader.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import sys

from core.errors import ConfigError
from core.logging import configure
from core.redis import connect
from core.settings import TenantSettings, load_or_exit
from workers.callstate.leader import Listener
from workers.callstate.sink import ProfileSink
from workers.callstate.sources import build_source


def _problems(tenants: list[TenantSettings]) -> list[str]:
    """Build each source once, so what only a source checks is reported at start."""
    problems: list[str] = []
    for tenant in tenants:
        try:
            build_source(tenant, lambda item: None, lambda reports: None)
        except ConfigError as exc:
            problems += [f"tenants[{tenant.name}].pbx.{p}" for p in exc.problems]
    return problems


async def _serve(listeners: list[Listener]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await asyncio.gather(*(listener.run(stop) for listener in listeners), stop.wait())


def main() -> int:
    settings = load_or_exit("callstate")
    configure(settings.process.log_level)
    tenants = [t for t in settings.tenants if t.pbx.callstate is not None]
    problems = _problems(tenants)
    if problems:
        print(f"presence-bridge callstate: {ConfigError(problems)}", file=sys.stderr)
        return 2
    redis = connect(settings.process.redis_url)
    host = f"{socket.gethostname()}-{os.getpid()}"
    listeners = [
        Listener(
            redis,
            t.name,
            t.pbx.callstate.source,
            functools.partial(build_source, t, report=ProfileSink(redis, t.name), redis=redis),
            lock_seconds=settings.process.callstate_lock_seconds,
            host=host,
        )
        for t in tenants
        if t.pbx.callstate is not None
    ]
    names = ", ".join(f"{lst.tenant}/{lst.source_name}" for lst in listeners) or "none configured"
    print(f"callstate: {host}, sources: {names}", flush=True)
    asyncio.run(_serve(listeners))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
