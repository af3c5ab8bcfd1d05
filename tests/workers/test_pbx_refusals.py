"""A write the PBX refuses is a failure: dead-lettered with the PBX's own reason, never counted
applied, and not retried. Through the real jobs, against a local PBX server (tests/pbx_server.py
answers as each vendor's docs say, including the 2xx answers that hide a refusal)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

from core.queue import QUEUE_PBX, queue
from core.settings import load_settings
from core.state import delivery, links, profiles
from emulator.harness.tenants import secret_env, tenant_toml, write_env
from tests.pbx_server import CLIENT_ID, SECRET, PbxServer
from workers import jobs
from workers.runtime import WorkerRuntime, install

T = "contoso"
GENERIC = ('[tenants.pbx.options.actions.apply_profile]\nurl = "/generic/users/$user"\n'
           'method = "PUT"\nerror_path = "error"\n')  # fmt: skip
FREEPBX = f'preset = "freepbx-dnd"\nauth = {{ client_id = "{CLIENT_ID}" }}\n'
STARFACE = ('preset = "starface-dnd"\nauth = { login = "alice" }\n'
            '[tenants.pbx.options.users]\nalice = "0815"\n')  # fmt: skip
THREECX = (f'preset = "3cx"\nauth = {{ client_id = "{CLIENT_ID}" }}\n'
           '[tenants.pbx.options.users]\n"101" = "7"\n')  # fmt: skip
FREEPBX_PUT = "PUT /admin/api/api/rest/donotdisturb/users/1001"
BICOM = ('preset = "bicom-dnd"\n[tenants.pbx.options.vars]\nserver = "3"\n'
         '[tenants.pbx.options.users]\n"1001" = "42"\n')  # fmt: skip


@pytest.fixture
def pbx() -> Iterator[PbxServer]:
    with PbxServer() as server:
        yield server


RuntimeFactory = Callable[..., WorkerRuntime]


@pytest.fixture
def runtime_factory(tmp_path: Path, redis_url: str, redis_client: redis.Redis,
            pbx: PbxServer) -> Iterator[RuntimeFactory]:  # fmt: skip
    made: list[WorkerRuntime] = []

    def make(options: str, secret: str = SECRET, extra: str = "") -> WorkerRuntime:
        toml = tenant_toml(extra=extra, pbx=f'adapter = "http"\n[tenants.pbx.options]\n'
                                            f'base_url = "{pbx.url}"\n{options}')  # fmt: skip
        env = write_env(tmp_path, toml, PRESENCE_BRIDGE_REDIS_URL=redis_url,
                        PRESENCE_BRIDGE_CACHE_KEY=Fernet.generate_key().decode(),
                        **{secret_env(T, "CLIENT_SECRET"): "s",
                           secret_env(T, "PBX_SECRET"): secret})  # fmt: skip
        made.append(WorkerRuntime(load_settings(env), redis_client))
        install(made[-1])
        return made[-1]

    yield make
    install(None)
    for runtime in made:
        runtime.close()


def teams_dnd(user_graph_id: str = "g1") -> None:
    jobs.process_presences(T, [{"id": user_graph_id, "availability": "DoNotDisturb",
                                "activity": "Presenting", "observedAt": time.time()}])  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        # A 2xx that says it failed: the preset or the operator names the error key.
        (200, {"error": "profile 'Do Not Disturb' does not exist"},
         "PBX reported an error: profile 'Do Not Disturb' does not exist"),
        (404, {"message": "no such user"}, 'PBX answered 404 {"message":"no such user"}'),
        (400, {"message": "invalid state"}, 'PBX answered 400 {"message":"invalid state"}'),
    ],
    ids=["2xx-with-error-body", "404", "400"],
)  # fmt: skip
def test_a_refused_write_is_dead_lettered_with_the_pbx_reason(
    runtime_factory: RuntimeFactory,
    pbx: PbxServer,
    redis_client: redis.Redis,
    status: int,
    body: dict[str, str],
    reason: str,
) -> None:
    runtime_factory(GENERIC)
    links.replace(redis_client, T, {"g1": ["alice"]})
    pbx.canned["/generic/users/alice"] = (status, body)
    teams_dnd()
    found = delivery.load(redis_client, T, ["alice"])["alice"]
    assert found.dead is not None and found.desired is not None
    assert found.dead.reason == f"PUT /generic/users/alice: {reason}"
    assert (found.dead.version, found.applied, found.pending) == (found.desired.version, 0, False)
    events = profiles.recent_events(redis_client, T, "alice")
    assert [e["result"] for e in events] == ["dead-lettered", "decided"]
    assert queue(redis_client, QUEUE_PBX).count == 0  # a refusal is not retried


def test_bicom_answering_200_with_an_error_is_a_refusal(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(BICOM, secret="not-the-key-0123456789")  # noqa: S106 - a wrong key on purpose
    links.replace(redis_client, T, {"g1": ["1001"]})
    teams_dnd()
    found = delivery.load(redis_client, T, ["1001"])["1001"]
    assert found.dead is not None and "PBX reported an error: Invalid API key." in found.dead.reason
    assert found.applied == 0
    assert pbx.state["bicom"]["42"]["dnd"] == "0"  # and indeed nothing changed there


def test_a_refused_version_is_replaced_by_the_next_one_that_the_pbx_takes(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(GENERIC)
    links.replace(redis_client, T, {"g1": ["alice"]})
    pbx.canned["/generic/users/alice"] = (200, {"error": "not now"})
    teams_dnd()
    del pbx.canned["/generic/users/alice"]
    jobs.process_presences(T, [{"id": "g1", "availability": "Away", "activity": "Away",
                                "observedAt": time.time()}])  # fmt: skip
    found = delivery.load(redis_client, T, ["alice"])["alice"]
    assert found.desired is not None and found.desired.profile == "Away"
    assert (found.applied, found.dead) == (found.desired.version, None)


def assert_dead_lettered(client: redis.Redis, user: str, reason: str) -> None:
    """Dead-lettered with `reason`, never counted applied, and not queued again."""
    found = delivery.load(client, T, [user])[user]
    assert found.dead is not None and found.desired is not None
    assert found.dead.reason == reason
    assert (found.dead.version, found.applied, found.pending) == (found.desired.version, 0, False)
    events = profiles.recent_events(client, T, user)
    assert "applied" not in [e["result"] for e in events]
    assert events[0]["result"] == "dead-lettered"
    assert queue(client, QUEUE_PBX).count == 0


def test_freepbx_answering_true_without_applying_is_a_refusal(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(FREEPBX)
    links.replace(redis_client, T, {"g1": ["1001"]})
    pbx.freepbx_ami_refuses.add("1001")  # AMI fails inside the DND module; the route says true
    teams_dnd()
    assert_dead_lettered(
        redis_client,
        "1001",
        f'{FREEPBX_PUT}: PBX answered 200 but reads back status = false, not "YES"',
    )
    assert pbx.state["freepbx"] == {}


def test_freepbx_answering_200_unauthorized_is_a_refusal(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(FREEPBX)
    links.replace(redis_client, T, {"g1": ["1001"]})
    pbx.freepbx_missing_scope = 200  # one API module version; 17.0 answers 401
    teams_dnd()
    assert_dead_lettered(
        redis_client, "1001", f"{FREEPBX_PUT}: PBX reported an error: unauthorized"
    )
    assert pbx.state["freepbx"] == {}


def test_freepbx_write_that_reads_back_is_applied(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(FREEPBX)
    links.replace(redis_client, T, {"g1": ["1001"]})
    teams_dnd()
    found = delivery.load(redis_client, T, ["1001"])["1001"]
    assert found.desired is not None
    assert (found.applied, found.dead) == (found.desired.version, None)
    assert profiles.recent_events(redis_client, T, "1001")[0]["result"] == "applied"
    assert pbx.state["freepbx"] == {"1001": "YES"}


def test_starface_answering_200_is_its_documented_unexpected_error(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(STARFACE)
    links.replace(redis_client, T, {"g1": ["alice"]})
    pbx.starface_unexpected_error = True
    teams_dnd()
    assert_dead_lettered(
        redis_client,
        "alice",
        "PUT /rest/users/0815/phoneconfig: PBX answered 200, not 204 "
        '{"message":"Unexpected error"}',
    )
    assert pbx.state["starface"]["0815"]["doNotDisturb"] is False


@pytest.mark.parametrize(("availability", "activity"), [("Busy", "Busy"), ("Busy", "InACall")])
def test_3cx_takes_away_for_busy_and_on_call_from_the_glocom_mapping(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis,
    availability: str, activity: str,
) -> None:  # fmt: skip
    runtime_factory(THREECX, extra='mapping = { preset = "glocom" }\n')
    links.replace(redis_client, T, {"g1": ["101"]})
    jobs.process_presences(T, [{"id": "g1", "availability": availability, "activity": activity,
                                "observedAt": time.time()}])  # fmt: skip
    found = delivery.load(redis_client, T, ["101"])["101"]
    assert found.desired is not None and found.desired.profile in ("Busy", "On Call")
    assert (found.applied, found.dead) == (found.desired.version, None)
    assert pbx.state["3cx"][7] == "Away"


def test_3cx_refuses_a_profile_the_preset_does_not_name(
    runtime_factory: RuntimeFactory, pbx: PbxServer, redis_client: redis.Redis
) -> None:
    runtime_factory(THREECX, extra='mapping = { preset = "simple", rules = [{ availability = '
                                   '["Away"], profile = "Lunch" }] }\n')  # fmt: skip
    links.replace(redis_client, T, {"g1": ["101"]})
    jobs.process_presences(T, [{"id": "g1", "availability": "Away", "activity": "Away",
                                "observedAt": time.time()}])  # fmt: skip
    assert_dead_lettered(
        redis_client,
        "101",
        """PATCH /xapi/v1/Users(7): PBX answered 400 {"message":"unknown profile 'Lunch'"}""",
    )
    assert pbx.state["3cx"][7] == "Available"
