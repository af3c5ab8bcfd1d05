"""Secrets at rest in Redis, sealed with Fernet under `PRESENCE_BRIDGE_CACHE_KEY`.

The key holds one or more Fernet keys, comma-separated: the first encrypts, every one
decrypts, so a key is rotated by putting the new key first and keeping the old one until every
sealed value has been rewritten. Service accounts' token caches, sign-in flows, certificate
keys and shared PBX tokens are sealed with it.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from core.errors import BridgeError, ConfigError

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
