"""OAuth2 tokens of the `http` adapter shared by workers through a real Redis.

Each adapter instance stands for one worker process: it keeps its own copy of the token, so
anything two instances share went through Redis.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from core.cipher import CacheCipher
from core.errors import ConfigError, PbxError
from core.settings import PbxSettings
from core.state.pbx import token_key, token_lock_key
from emulator.harness.ports import free_port
from tests.pbx_server import CLIENT_ID, JWT, SECRET, PbxServer
from tests.workers.pbx.conftest import HttpAdapterBuilder
from workers.pbx import http
from workers.pbx.base import ProfileChange
from workers.pbx.http import HttpAdapter
from workers.pbx.http_tokens import LOCK_MS, TokenShare, clear_token_cache

TOKEN_KEY = token_key("acme")
LOCK_KEY = token_lock_key("acme")
DND = ProfileChange(user="101", profile="Do Not Disturb", availability="DoNotDisturb")
GENERIC: dict[str, Any] = {
    "auth": {"type": "oauth2", "token_url": "/oauth/token", "client_id": CLIENT_ID},
    "actions": {"apply_profile": {"url": "/generic/users/$user", "method": "PUT"}},
}
# The two grants: 3CX's client credentials and RingCentral's JWT bearer.
PBXS: dict[str, tuple[dict[str, Any], str]] = {
    "3cx": ({"preset": "3cx", "auth": {"client_id": CLIENT_ID}, "users": {"101": "7"}}, SECRET),
    "ringcentral": (
        {"preset": "ringcentral", "auth": {"client_id": CLIENT_ID}, "users": {"101": "101"}},
        json.dumps({"client_secret": SECRET, "assertion": JWT}),
    ),
}
WorkerFactory = Callable[..., HttpAdapter]


def used_token(server: PbxServer) -> str:
    """The token of the last PBX request, as the PBX saw it."""
    return server.to("/generic/users/101")[-1].headers["authorization"].removeprefix("Bearer ")


def new_key() -> SecretStr:
    return SecretStr(Fernet.generate_key().decode())


def settings_for(
    server: PbxServer, options: dict[str, Any] | None = None, secret: str = SECRET
) -> PbxSettings:
    return PbxSettings(
        adapter="http",
        secret=SecretStr(secret),
        options={"base_url": server.url, **(options or GENERIC)},
    )


@pytest.fixture
def cache_key() -> SecretStr:
    return new_key()


@pytest.fixture
def start_worker(
    server: PbxServer, redis_client: redis.Redis, cache_key: SecretStr
) -> Iterator[WorkerFactory]:
    """An adapter as a worker builds it (http.build with Redis and the cache key)."""
    made: list[HttpAdapter] = []
    server.generic_auth = ("oauth2",)
    clear_token_cache()

    def start(
        options: dict[str, Any] | None = None, secret: str = SECRET, key: SecretStr | None = None
    ) -> HttpAdapter:
        adapter = http.build(
            settings_for(server, options, secret), "acme", redis_client, key or cache_key
        )
        made.append(adapter)
        return adapter

    yield start
    for adapter in made:
        adapter.close()
    clear_token_cache()


@pytest.mark.parametrize("pbx", sorted(PBXS))
def test_two_workers_share_one_token(
    server: PbxServer, start_worker: WorkerFactory, pbx: str
) -> None:
    options, secret = PBXS[pbx]
    first, second = start_worker(options, secret), start_worker(options, secret)

    for worker in (first, second, first, second):
        clear_token_cache()  # as if each ran in its own process: only Redis can share
        worker.apply_profile(DND)

    assert server.tokens_issued == 1
    assert server.problems == []


def test_a_401_with_the_shared_token_refetches_once_for_all_workers(
    server: PbxServer, start_worker: WorkerFactory
) -> None:
    first, second = start_worker(), start_worker()
    first.apply_profile(DND)
    second.apply_profile(DND)
    server.revoke_tokens()

    first.apply_profile(DND)
    second.apply_profile(DND)

    assert server.tokens_issued == 2
    assert len(server.to("/generic/users/101")) == 6  # two first tries were refused


def test_the_token_in_redis_is_encrypted(
    server: PbxServer,
    redis_client: redis.Redis,
    start_worker: WorkerFactory,
    cache_key: SecretStr,
) -> None:
    start_worker().apply_profile(DND)
    token = used_token(server)

    sealed = redis_client.get(TOKEN_KEY)
    assert isinstance(sealed, bytes)
    assert token.encode() not in sealed
    plain, _ = CacheCipher(cache_key).decrypt(sealed, "test")
    assert json.loads(plain)["access_token"] == token


def test_the_token_in_redis_expires_a_margin_before_the_token(
    server: PbxServer, redis_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    start_worker().apply_profile(DND)

    assert 0 < redis_client.ttl(TOKEN_KEY) <= server.token_lifetime - 60


@pytest.mark.parametrize("adapters", ["one per thread", "one for all threads"])
def test_concurrent_first_use_fetches_once(
    server: PbxServer, start_worker: WorkerFactory, adapters: str
) -> None:
    count = 8
    if adapters == "one per thread":
        workers = [start_worker() for _ in range(count)]
    else:
        workers = [start_worker()] * count
    barrier = threading.Barrier(count)
    failures: list[Exception] = []

    def use(worker: HttpAdapter) -> None:
        barrier.wait()
        try:
            worker.apply_profile(DND)
        except Exception as exc:  # reported by the assert below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=use, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert server.tokens_issued == 1
    assert len(server.to("/generic/users/101")) == count


def test_a_fetch_lock_left_by_a_dead_worker_is_waited_out_then_fetched(
    server: PbxServer,
    redis_client: redis.Redis,
    build_http_adapter: HttpAdapterBuilder,
    cache_key: SecretStr,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.generic_auth = ("oauth2",)
    redis_client.set(LOCK_KEY, "dead-worker", px=LOCK_MS)
    share = TokenShare(redis_client, CacheCipher(cache_key), "acme", wait_seconds=0.2)
    adapter = build_http_adapter(settings_for(server), share=share)

    with caplog.at_level(logging.WARNING, logger="workers.pbx.http_tokens"):
        adapter.apply_profile(DND)

    assert server.tokens_issued == 1
    assert "fetching one here" in caplog.text
    assert redis_client.get(LOCK_KEY) == b"dead-worker"  # only its owner releases a lock


@pytest.mark.parametrize("stranger", ["another client config", "another cache key"])
def test_a_stored_token_that_is_not_ours_is_not_used(
    server: PbxServer, start_worker: WorkerFactory, stranger: str
) -> None:
    start_worker().apply_profile(DND)
    if stranger == "another client config":
        other = start_worker({**GENERIC, "auth": {**GENERIC["auth"], "scope": "other"}})
    else:
        other = start_worker(key=new_key())

    other.apply_profile(DND)

    assert server.tokens_issued == 2


def test_the_fetch_lock_is_released(redis_client: redis.Redis, start_worker: WorkerFactory) -> None:
    start_worker().apply_profile(DND)

    assert redis_client.exists(LOCK_KEY) == 0


def test_the_token_is_in_no_log_line_or_repr(
    server: PbxServer, start_worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = start_worker()
    with caplog.at_level(logging.DEBUG):
        adapter.apply_profile(DND)
    token = used_token(server)

    tokens = vars(adapter._auth)["_tokens"]
    texts = [caplog.text, repr(adapter), repr(vars(adapter)), repr(vars(tokens))]
    assert "fetched and stored" in caplog.text
    assert all(token not in text for text in texts)


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        (GENERIC, True),
        ({**GENERIC, "auth": {"type": "bearer"}}, False),
    ],
)
def test_sharing_an_oauth2_token_needs_a_cache_key(
    server: PbxServer, redis_client: redis.Redis, options: dict[str, Any], refused: bool
) -> None:
    settings = settings_for(server, options)

    if refused:
        with pytest.raises(ConfigError) as caught:
            http.build(settings, "acme", redis_client, None)
        assert caught.value.problems[0].startswith("PRESENCE_BRIDGE_CACHE_KEY: required")
    else:
        http.build(settings, "acme", redis_client, None).close()


def test_without_redis_the_token_stays_in_the_process(
    server: PbxServer, redis_client: redis.Redis
) -> None:
    server.generic_auth = ("oauth2",)
    clear_token_cache()
    adapter = http.build(settings_for(server), "acme")
    try:
        adapter.apply_profile(DND)
    finally:
        adapter.close()
        clear_token_cache()

    assert server.tokens_issued == 1
    assert redis_client.dbsize() == 0


def test_an_unreachable_redis_is_a_transient_error(server: PbxServer) -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    adapter = http.build(settings_for(server), "acme", dead, new_key())
    try:
        with pytest.raises(PbxError) as caught:
            adapter.apply_profile(DND)
    finally:
        adapter.close()
        dead.close()

    assert caught.value.transient is True
    assert server.tokens_issued == 0
