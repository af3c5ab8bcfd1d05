"""The intake stream: how accepted notifications cross from the webhook to the workers.

The webhook makes ONE script call per request (`webhook/handoff.py`): a Lua script that
drops redeliveries (a content-derived `SET NX EX` key per item), appends the survivors as
one stream entry and bumps the cluster-wide counters. Worker processes read entries with
a consumer group and turn them into RQ jobs in batches (`workers.intake`), so a crash
between read and enqueue leaves the entry pending for another worker to claim.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from core import keys

# A basic presence notification carries only the user id, so a new change of the same
# user is byte-identical to a redelivery of the last one. Keeping such keys for 24 h would
# swallow every later change; a short window absorbs bursts of resends instead, and a
# late resend only costs one idempotent presence read. Even 5 s would swallow a real change
# that follows within the window, so the worker deletes the key when it reads presence
# (`bare_dedup_keys`): only resends that the read covers are absorbed.
BARE_DEDUP_TTL_SECONDS = 5

APPEND_SCRIPT = """
local n = tonumber(ARGV[1])
local kept = {}
local dupes = 0
local i = 2
for _ = 1, n do
  if redis.call('SET', ARGV[i], '1', 'NX', 'EX', ARGV[i + 1]) then
    kept[#kept + 1] = ARGV[i + 2]
  else
    dupes = dupes + 1
  end
  i = i + 3
end
while i < #ARGV do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if dupes > 0 then redis.call('HINCRBY', KEYS[2], 'dropped:duplicate', dupes) end
if #kept > 0 then
  redis.call('HINCRBY', KEYS[2], 'accepted', #kept)
  redis.call('XADD', KEYS[1], '*', 'items', '[' .. table.concat(kept, ',') .. ']')
end
return #kept
"""


@dataclass(frozen=True)
class Accepted:
    """One verified item on its way to the stream."""

    tenant: str
    kind: str  # "notification" or "lifecycle"
    item: dict[str, Any]  # normalised, without clientState
    validation_tokens: list[str] | None = None

    def encode(self) -> bytes:
        entry: dict[str, Any] = {"tenant": self.tenant, "kind": self.kind, "item": self.item}
        if self.validation_tokens is not None:
            entry["validationTokens"] = self.validation_tokens
        return orjson.dumps(entry)

    @property
    def bare(self) -> bool:
        """A basic item without an id: only the user id, so every change looks the same."""
        return self.kind == "notification" and not (
            self.item.get("id") or self.item.get("encryptedContent")
        )

    def dedup_key(self) -> tuple[str, int]:
        digest = hashlib.sha256(orjson.dumps(self.item, option=orjson.OPT_SORT_KEYS)).hexdigest()
        ttl = BARE_DEDUP_TTL_SECONDS if self.bare else keys.DEDUP_TTL_SECONDS
        return keys.dedup(digest[:40]), ttl


def bare_dedup_keys(entries: list[dict[str, Any]]) -> list[str]:
    """Dedup keys of the bare items among decoded stream entries.

    A worker deletes them just before it reads presence: a resend that arrived before the
    read is covered by it, but a later change of the same user must not be taken for a
    resend, or the PBX would keep a stale profile until the user changes again.
    """
    found = []
    for entry in entries:
        accepted = Accepted(entry["tenant"], entry["kind"], entry["item"])
        if accepted.bare:
            found.append(accepted.dedup_key()[0])
    return found


def script_args(accepted: list[Accepted], counters: dict[str, int]) -> list[bytes | str | int]:
    args: list[bytes | str | int] = [len(accepted)]
    for entry in accepted:
        key, ttl = entry.dedup_key()
        args += [key, ttl, entry.encode()]
    for field, count in counters.items():
        if count:
            args += [field, count]
    return args


def decode_entry(fields: dict[bytes, bytes]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = orjson.loads(fields[b"items"])
    return items
