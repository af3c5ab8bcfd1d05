"""A Redis leader lock with expiry: several clocks may run, one acts, a dead one is replaced."""

from __future__ import annotations

import uuid

from redis import Redis

from core import keys

# Extend only while we still own it: compare-and-set in one step.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, redis: Redis, name: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = keys.leader_lock(name)
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = uuid.uuid4().hex
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lock, or keep it if we hold it; False when another clock holds it."""
        if self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return True
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])
