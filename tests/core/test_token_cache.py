"""Token caches and pending sign-ins in Redis: encrypted at rest, written only on change."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from core.cipher import CacheCipher, CacheKeyError
from core.errors import ConfigError
from core.graph_tokens import GraphTokens
from core.identity import SignInFailed
from core.settings import Settings
from core.state import accounts
from core.state.accounts import SIGN_IN_TTL_SECONDS, flow_key
from tests.core.conftest import Site, signed_in


def with_cache_key(settings: Settings, cache_key: str) -> Settings:
    process = settings.process.model_copy(update={"cache_key": SecretStr(cache_key)})
    return settings.model_copy(update={"process": process})


def stored_cache(redis_client: redis.Redis, where: Site) -> bytes:
    (account,) = where.accounts
    value = accounts.read_token_cache(redis_client, where.name, account)
    assert isinstance(value, bytes)
    return value


def every_stored_byte(redis_client: redis.Redis) -> bytes:
    """All keys and values of the test DB, whatever their type."""
    out = bytearray()
    for key in redis_client.scan_iter():
        out += key
        kind = redis_client.type(key)
        if kind == b"string":
            out += cast(bytes, redis_client.get(key))
        elif kind == b"hash":
            for field, value in cast(dict[bytes, bytes], redis_client.hgetall(key)).items():
                out += field + value
        else:
            raise AssertionError(f"unexpected {kind!r} key {key!r}")
    return bytes(out)


def test_nothing_in_redis_holds_a_token_or_verifier_in_plaintext(
    private_site: Site,
    auth_factory: Callable[..., GraphTokens],
    redis_client: redis.Redis,
) -> None:
    auth = auth_factory(private_site)
    account = signed_in(private_site, auth)
    access_token = auth.delegated_token(private_site.name, account)  # a refresh: new RT and AT
    pending = auth.start_sign_in(private_site.name, account)
    state = parse_qs(urlsplit(pending).query)["state"][0]
    sealed_flow = redis_client.get(flow_key(state))
    assert isinstance(sealed_flow, bytes)
    flow = orjson.loads(auth.cipher().decrypt(sealed_flow, "flow")[0])["flow"]
    secrets = [access_token, flow["code_verifier"], flow["nonce"], state]
    with private_site.server.world.lock:
        secrets += list(private_site.server.world.refresh_tokens)
    stored = every_stored_byte(redis_client)
    assert len(secrets) >= 6  # two refresh tokens were issued
    assert [s for s in secrets if s.encode() in stored] == []


def test_an_unchanged_cache_is_not_rewritten(
    site: Site,
    auth_factory: Callable[..., GraphTokens],
    redis_client: redis.Redis,
) -> None:
    auth = auth_factory(site)
    account = signed_in(site, auth)
    before = stored_cache(redis_client, site)
    auth.delegated_token(site.name, account)
    auth_factory(site).delegated_token(site.name, account)  # another process, same cache
    # Fernet output differs on every encryption, so equal bytes mean no write.
    assert stored_cache(redis_client, site) == before


def test_a_refreshed_cache_is_rewritten(
    site: Site,
    auth_factory: Callable[..., GraphTokens],
    redis_client: redis.Redis,
) -> None:
    auth = auth_factory(site)
    account = signed_in(site, auth)
    before = stored_cache(redis_client, site)
    auth.tenant(site.name).delegated_token(account, fresh=True)
    assert stored_cache(redis_client, site) != before


def test_a_wrong_cache_key_is_a_clear_error(
    site: Site,
    auth_factory: Callable[..., GraphTokens],
    redis_client: redis.Redis,
) -> None:
    account = signed_in(site, auth_factory(site))
    wrong = Fernet.generate_key().decode()
    site.settings = with_cache_key(site.settings, wrong)
    with pytest.raises(CacheKeyError) as caught:
        auth_factory(site).delegated_token(site.name, account)
    message = str(caught.value)
    assert "PRESENCE_BRIDGE_CACHE_KEY" in message and account in message
    assert wrong not in message


def test_a_rotated_key_reads_old_caches_and_reseals_them_with_the_new_key(
    site: Site,
    auth_factory: Callable[..., GraphTokens],
    redis_client: redis.Redis,
) -> None:
    account = signed_in(site, auth_factory(site))
    assert site.settings.process.cache_key is not None
    old, new = site.settings.process.cache_key.get_secret_value(), Fernet.generate_key().decode()
    site.settings = with_cache_key(site.settings, f"{new},{old}")
    auth_factory(site).delegated_token(site.name, account)
    site.settings = with_cache_key(site.settings, new)
    auth_factory(site).delegated_token(site.name, account)
    assert Fernet(new.encode()).decrypt(stored_cache(redis_client, site))


@pytest.mark.parametrize("value", ["", " , ", "not-a-fernet-key", "{good},also-bad"])
def test_a_malformed_cache_key_is_a_config_error_that_hides_it(value: str) -> None:
    value = value.replace("{good}", Fernet.generate_key().decode())
    with pytest.raises(ConfigError) as caught:
        CacheCipher(SecretStr(value))
    assert "PRESENCE_BRIDGE_CACHE_KEY" in str(caught.value)
    assert "bad" not in str(caught.value) and "not-a-fernet-key" not in str(caught.value)


def test_a_sign_in_state_is_redeemed_once(
    site: Site,
    auth_factory: Callable[..., GraphTokens],
) -> None:
    (account,) = site.accounts
    auth = auth_factory(site)
    answer = site.control.sign_in(auth.start_sign_in(site.name, account), submit=False)
    assert auth.finish_sign_in(answer) == (site.name, account)
    with pytest.raises(SignInFailed, match="unknown or expired sign-in state"):
        auth.finish_sign_in(answer)


def test_a_pending_sign_in_expires_within_ten_minutes(
    site: Site,
    auth_factory: Callable[..., GraphTokens],
    redis_client: redis.Redis,
) -> None:
    (account,) = site.accounts
    pending = auth_factory(site).start_sign_in(site.name, account)
    state = parse_qs(urlsplit(pending).query)["state"][0]
    assert 0 < redis_client.ttl(flow_key(state)) <= SIGN_IN_TTL_SECONDS == 600
