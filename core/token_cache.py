"""MSAL token caches of service accounts, kept in Redis encrypted at rest (`core.cipher`).

Each cache is re-encrypted with the first cache key the next time it is loaded after a key
rotation. A cache is loaded before each use and written back only when MSAL changed it.
"""

from __future__ import annotations

import hashlib

import msal
from redis import Redis

from core.cipher import CacheCipher
from core.state import accounts


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
