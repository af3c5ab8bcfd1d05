"""`presence-bridge check` against real Redis servers, with and without persistence."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from cli.check import Result, run_checks
from core.settings import load_settings
from emulator.harness.redis_server import RedisServer

# A managed Redis that refuses CONFIG, as many hosted offerings do: only INFO tells.
NO_CONFIG = ("--rename-command", "CONFIG", "")
AOF = ("--appendonly", "yes")
Check = Callable[[Sequence[str]], Result]


@pytest.fixture
def persistence_of() -> Iterator[Check]:
    """The check's persistence result for a redis-server started with these arguments."""
    servers: list[RedisServer] = []

    def check(args: Sequence[str]) -> Result:
        server = RedisServer(args=args)
        servers.append(server)
        server.start()
        settings = load_settings({"PRESENCE_BRIDGE_REDIS_URL": server.url()})
        return next(r for r in run_checks(settings) if r.check == "persistence")

    yield check
    for server in servers:
        server.__exit__()


@pytest.mark.parametrize("args", [(), NO_CONFIG], ids=["config", "info"])
def test_a_redis_that_keeps_nothing_on_disk_is_warned_about(
    persistence_of: Check, args: Sequence[str]
) -> None:
    result = persistence_of(args)
    assert result.status == "warn"
    assert "keeps nothing on disk" in result.message


@pytest.mark.parametrize("args", [AOF, (*AOF, *NO_CONFIG)], ids=["config", "info"])
def test_a_redis_with_aof_passes(persistence_of: Check, args: Sequence[str]) -> None:
    assert persistence_of(args).status == "ok"


def test_rdb_snapshots_alone_pass_with_a_note(persistence_of: Check) -> None:
    result = persistence_of(("--save", "3600 1"))
    assert (result.status, "AOF is recommended" in result.message) == ("ok", True)


def test_refused_config_is_reported_as_read_from_info(persistence_of: Check) -> None:
    assert "(INFO persistence)" in persistence_of(NO_CONFIG).message
