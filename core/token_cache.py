"""MSAL token caches of service accounts, kept in Redis encrypted at rest (Fernet).

`PRESENCE_BRIDGE_CACHE_KEY` holds one or more Fernet keys, comma-separated: the first encrypts,
every one decrypts, so a key is rotated by putting the new key first and keeping the old one
until every cache has been rewritten (each cache is re-encrypted with the first key the next
time it is loaded). A cache is loaded before each use and written back only when MSAL changed it.
"""

from __future__ import annotations

import hashlib

import msal
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr
from redis import Redis

from core.errors import BridgeError, ConfigError
from core.state import accounts

CACHE_KEY_ENV = "PRESENCE_BRIDGE_CACHE_KEY"


class CacheKeyError(BridgeError):
    """A stored secret cannot be decrypted with any configured cache key."""

    status_code = 500

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} cannot be decrypted with {CACHE_KEY_ENV}: the key is wrong, or it was "
            "rotated without keeping the old key (list the new key first, then the old one, "
            "comma-separated). Sign the account in again if the old key is lost."
        )


class CacheCipher:
    """Encrypts with the first configured key, decrypts with any of them."""

    def __init__(self, cache_key: SecretStr | None) -> None:
        if cache_key is None:
            raise ConfigError([f"{CACHE_KEY_ENV}: required to keep service-account tokens"])
        parts = [p.strip() for p in cache_key.get_secret_value().split(",") if p.strip()]
        fernets: list[Fernet] = []
        for number, part in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(part.encode()))
            except ValueError:
                # Never echo the value: it is (part of) a secret.
                raise ConfigError(
                    [
                        f"{CACHE_KEY_ENV}: key {number} is not a Fernet key (32 url-safe "
                        'base64-encoded bytes; make one with `python -c "from cryptography.'
                        'fernet import Fernet; print(Fernet.generate_key().decode())"`)'
                    ]
                ) from None
        if not fernets:
            raise ConfigError([f"{CACHE_KEY_ENV}: is empty"])
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)

    def __repr__(self) -> str:
        return "CacheCipher(<hidden>)"

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._all.encrypt(plaintext)

    def decrypt(self, token: bytes, what: str) -> tuple[bytes, bool]:
        """Plaintext and whether it was sealed with an older key (so worth re-encrypting)."""
        try:
            return self._primary.decrypt(token), False
        except InvalidToken:
            pass
        try:
            return self._all.decrypt(token), True
        except InvalidToken:
            raise CacheKeyError(what) from None


class AccountCache:
    """One account's `SerializableTokenCache`, synchronised with its encrypted Redis copy.

    Not thread safe: the caller holds one lock per account around load, use and save.
    """

    def __init__(self, redis: Redis, cipher: CacheCipher, tenant: str, account: str) -> None:
        self.cache = msal.SerializableTokenCache()
        self._redis = redis
        self._cipher = cipher
        self._tenant, self._account = tenant, account
        self._what = f"the token cache of account {account} (tenant {tenant})"
        self._loaded_digest: bytes | None = None
        self._stale_key = False

    def load(self) -> bool:
        """Refresh from Redis; False when nothing is stored (the account never signed in)."""
        stored = accounts.read_token_cache(self._redis, self._tenant, self._account)
        if stored is None:
            # The same cache object stays bound to the account's msal application.
            self.cache.deserialize(None)
            self._loaded_digest = None
            return False
        digest = hashlib.sha256(stored).digest()
        if digest != self._loaded_digest:
            # Fernet output changes on every write, so an equal digest means an equal cache.
            plaintext, self._stale_key = self._cipher.decrypt(stored, self._what)
            self.cache.deserialize(plaintext.decode())
            self._loaded_digest = digest
        return True

    def save(self) -> bool:
        """Write back when MSAL changed the cache (or it was sealed with an old key)."""
        if not (self.cache.has_state_changed or self._stale_key):
            return False
        sealed = self._cipher.encrypt(self.cache.serialize().encode())
        accounts.write_token_cache(self._redis, self._tenant, self._account, sealed)
        self._loaded_digest = hashlib.sha256(sealed).digest()
        self._stale_key = False
        return True

    def replace(self, state: str) -> None:
        """Store a whole new serialized cache (after a fresh sign-in)."""
        self.cache.deserialize(state)
        self.cache.has_state_changed = True
        self.save()

    def delete(self) -> None:
        accounts.delete_token_cache(self._redis, self._tenant, self._account)
        self._loaded_digest = None
