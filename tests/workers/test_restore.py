"""The user's own PBX profile comes back: through the real jobs, on a real Redis, against the
builtin adapter and the `http` adapter talking to a local PBX server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from core.queue import QUEUE_PBX, ProfileReport, queue
from core.settings import load_settings
from core.state import delivery, links, profiles
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from tests.pbx_server import PbxServer
from workers import jobs
from workers.pbx.base import ProfileChange
from workers.pbx.builtin import BuiltinAdapter
from workers.restore import REPORT_NO_CHANGE, read_shown
from workers.runtime import WorkerRuntime, install

T = "contoso"
PASCOM = '[tenants.mapping]\npreset = "pascom"\nhold_seconds = 0\n'
GLOCOM = '[tenants.mapping]\npreset = "glocom"\nhold_seconds = 0\n'
MEETING = ("Busy", "InAMeeting")
LEFT = ("Available", "Available")

RuntimeFactory = Callable[..., WorkerRuntime]


def http_pbx(server: PbxServer, read: bool = True) -> str:
    options = (
        f'adapter = "http"\n[tenants.pbx.options]\nbase_url = "{server.url}"\n'
        "[tenants.pbx.options.actions.apply_profile]\n"
        'url = "/generic/users/$user"\nmethod = "PUT"\njson = { profile = "$profile" }\n'
    )
    if read:
        options += (
            "[tenants.pbx.options.actions.read_profile]\n"
            'url = "/generic/shown/$user"\nresult = "profile"\n'
        )
    return options  # fmt: skip


@pytest.fixture
def pbx() -> Iterator[PbxServer]:
    with PbxServer() as server:
        yield server


@pytest.fixture
def runtime_factory(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[RuntimeFactory]:
    made: list[WorkerRuntime] = []

    def make(pbx: str, mapping: str = PASCOM) -> WorkerRuntime:
        env = write_env(tmp_path, tenant_toml(pbx=pbx, extra=mapping),
                        PRESENCE_BRIDGE_REDIS_URL=redis_url,
                        **{secret_env(T, "CLIENT_SECRET"): "s"})  # fmt: skip
        runtime = WorkerRuntime(load_settings(env), redis_client)
        install(runtime)
        made.append(runtime)
        links.replace(redis_client, T, {"g-alice": ["alice"]})
        return runtime

    yield make
    install(None)
    for runtime in made:
        runtime.close()


def teams(availability: str, activity: str) -> None:
    """A Teams presence of Alice, as the clock's sweep hands it to the worker."""
    jobs.process_presences(T, [{"id": "g-alice", "availability": availability,
                                "activity": activity, "observedAt": time.time()}])  # fmt: skip


def report(profile: str, *, on_pbx: bool = True, user: str = "alice") -> int:
    """The PBX reports Alice's profile (the builtin API sends on_pbx=False)."""
    found = ProfileReport(user, profile, "test", time.time(), on_pbx=on_pbx)
    return jobs.process_profile_reports(T, [found.to_item()])


def served(redis_client: redis.Redis) -> str | None:
    return BuiltinAdapter(redis_client, T).read_profile("alice")


def written(pbx: PbxServer) -> list[str]:
    """Profiles the bridge wrote to the PBX server, oldest first."""
    return [r.json()["profile"] for r in pbx.requests if r.method == "PUT"]


# ---- a change the PBX reports --------------------------------------------------------------


def test_the_users_own_profile_comes_back_after_a_meeting(
    runtime_factory: RuntimeFactory, redis_client: redis.Redis
) -> None:
    runtime_factory('adapter = "builtin"')
    assert report("Lunch", on_pbx=False) == 1
    shown = [served(redis_client)]
    teams(*MEETING)
    shown.append(served(redis_client))
    teams(*LEFT)
    assert [*shown, served(redis_client)] == ["Lunch", "Teams Meeting", "Lunch"]


def test_a_change_made_during_the_meeting_survives_its_end(
    runtime_factory: RuntimeFactory, redis_client: redis.Redis
) -> None:
    runtime_factory('adapter = "builtin"')
    teams(*MEETING)
    report("Coffee", on_pbx=False)
    teams(*LEFT)
    assert served(redis_client) == "Coffee"
    assert not profiles.load(redis_client, T, ["alice"])["alice"].sticky


def test_a_change_the_pbx_shows_is_recorded_without_writing_it_back(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(http_pbx(pbx, read=False))
    report("Lunch")
    record = delivery.load(redis_client, T, ["alice"])["alice"]
    assert record.desired is not None and record.desired.profile == "Lunch"
    assert (record.applied, record.pending) == (record.desired.version, False)
    teams(*MEETING)
    teams(*LEFT)
    assert written(pbx) == ["Teams Meeting", "Lunch"]  # Lunch itself was never sent


def test_our_own_write_read_back_is_not_taken_for_the_users(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(http_pbx(pbx, read=False))
    report("Lunch")
    teams(*MEETING)
    before = profiles.load(redis_client, T, ["alice"])["alice"]
    assert report("Teams Meeting") == 0  # the PBX tells us what we just wrote
    assert profiles.load(redis_client, T, ["alice"])["alice"] == before
    latest = profiles.recent_events(redis_client, T, "alice")[0]
    assert (latest["result"], latest["profile"]) == (REPORT_NO_CHANGE, "Teams Meeting")
    teams(*LEFT)
    assert written(pbx) == ["Teams Meeting", "Lunch"]


def test_an_older_write_of_ours_read_back_is_not_taken_for_the_users(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(http_pbx(pbx, read=False))
    report("Lunch")
    pbx.fail(1, 500)  # the meeting profile does not reach the PBX yet: it still shows Lunch
    teams(*MEETING)
    version = delivery.load(redis_client, T, ["alice"])["alice"].desired
    assert report("Lunch") == 0  # read back from before the meeting: not a new choice
    assert delivery.load(redis_client, T, ["alice"])["alice"].desired == version
    SimpleWorker([queue(redis_client, QUEUE_PBX)], connection=redis_client,
                 serializer=JSONSerializer).work(burst=True)  # fmt: skip
    teams(*LEFT)
    assert written(pbx) == ["Teams Meeting", "Teams Meeting", "Lunch"]


def test_a_report_for_a_user_teams_does_not_drive_is_ignored(
    runtime_factory: RuntimeFactory, redis_client: redis.Redis
) -> None:
    runtime_factory('adapter = "builtin"')
    assert report("Lunch", on_pbx=False, user="mallory") == 0
    assert profiles.load(redis_client, T, ["mallory"]) == {}
    assert served(redis_client) is None


# ---- the PBX read before a sticky profile begins -------------------------------------------


def test_what_the_pbx_showed_before_the_meeting_comes_back(
    runtime_factory: RuntimeFactory, pbx: PbxServer
) -> None:
    runtime_factory(http_pbx(pbx))
    pbx.canned["/generic/shown/alice"] = (200, {"profile": "Out to lunch"})
    teams(*MEETING)
    teams(*LEFT)
    assert [(r.method, r.path) for r in pbx.requests][:2] == [
        ("GET", "/generic/shown/alice"),
        ("PUT", "/generic/users/alice"),
    ]
    assert written(pbx) == ["Teams Meeting", "Out to lunch"]


def test_a_pbx_still_showing_an_older_write_of_ours_is_not_the_restore_target(
    runtime_factory: RuntimeFactory, pbx: PbxServer
) -> None:
    runtime_factory(http_pbx(pbx), GLOCOM)
    teams("Available", "Available")
    pbx.fail(1, 500)  # Away does not reach the PBX yet: it still shows our Available
    teams("Away", "Away")
    pbx.canned["/generic/shown/alice"] = (200, {"profile": "Available"})
    teams("Busy", "InACall")  # sticky On Call: the PBX is read first
    teams("Offline", "Offline")  # glocom leaves the profile alone: the call's end restores
    assert written(pbx)[-2:] == ["On Call", "Away"]


def test_a_failed_read_does_not_hold_up_the_meeting(
    runtime_factory: RuntimeFactory, pbx: PbxServer
) -> None:
    runtime_factory(http_pbx(pbx))
    pbx.fail(1, 500)  # the read (a 500: a 503 makes the whole PBX back off)
    teams(*MEETING)
    teams(*LEFT)
    assert written(pbx) == ["Teams Meeting", "Available"]  # nothing known: the default


def test_the_builtin_adapter_is_read_for_a_whole_batch_at_once(redis_client: redis.Redis) -> None:
    adapter = BuiltinAdapter(redis_client, T)
    adapter.apply_many([ProfileChange("alice", "Lunch"), ProfileChange("bob", "Away")])
    assert read_shown(adapter, ["alice", "bob", "carol"]) == {"alice": "Lunch", "bob": "Away"}
