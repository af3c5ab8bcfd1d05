"""Every Redis key the bridge uses, in one place, under one prefix.

Owner, type and lifetime of each key are listed in docs/architecture.md.
"""

from __future__ import annotations

PREFIX = "pb:"

# Intake (owner: webhook writes, workers read).
INTAKE_STREAM = PREFIX + "intake"  # stream; entries deleted once turned into RQ jobs
INTAKE_GROUP = "forwarders"
DEDUP_TTL_SECONDS = 24 * 3600
METRICS_HASH = PREFIX + "metrics"  # hash of cluster-wide counters; no expiry
WORKER_HEARTBEAT = PREFIX + "heartbeat:worker"  # string, EX 30 s
CLOCK_HEARTBEAT = PREFIX + "heartbeat:clock"  # string, EX 60 s


def dedup(digest: str) -> str:
    """Content-derived key that absorbs a redelivered notification (string, EX 24 h)."""
    return f"{PREFIX}dedup:{digest}"


def subscription(subscription_id: str) -> str:
    """Hash: tenant, client_state_sha256, account, expires_at... (owner: subscriptions/)."""
    return f"{PREFIX}sub:{subscription_id}"


def tenant_subscriptions(tenant: str) -> str:
    """Set of subscription ids of one tenant (owner: subscriptions/)."""
    return f"{PREFIX}tenant:{tenant}:subs"


def tenant_notifications(tenant: str) -> str:
    """Capped stream of accepted notifications of one tenant (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:notifications"


def token_cache(tenant: str, account: str) -> str:
    """Encrypted MSAL token cache of one service account (string; no expiry)."""
    return f"{PREFIX}tenant:{tenant}:account:{account}:cache"


def account_health(tenant: str) -> str:
    """Hash: account -> JSON health record (owner: core.auth)."""
    return f"{PREFIX}tenant:{tenant}:accounts"


def presence(tenant: str) -> str:
    """Hash: graph user id -> JSON of the last presence applied (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:presence"


def profile_state(tenant: str) -> str:
    """Hash: pbx user -> JSON profile state (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:profiles"


def user_events(tenant: str, pbx_user: str) -> str:
    """Capped list of recent transitions of one PBX user (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:events:{pbx_user}"


def dead_letters(tenant: str) -> str:
    """Hash: pbx user -> JSON of its latest dead letter with the reason (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:dead"


def leader_lock(name: str) -> str:
    """String with expiry held by the clock that acts (owner: subscriptions/)."""
    return f"{PREFIX}lock:{name}"


def desired(tenant: str) -> str:
    """Hash: pbx user -> JSON desired profile with version (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:desired"


def applied(tenant: str) -> str:
    """Hash: pbx user -> version last applied to the PBX (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:applied"


def builtin_profiles(tenant: str) -> str:
    """Hash: pbx user -> JSON profile served by the builtin adapter's API (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:builtin"


def builtin_events(tenant: str) -> str:
    """Stream of profile changes for the builtin adapter's SSE route; capped (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:builtin:events"


def links(tenant: str) -> str:
    """Hash: graph user id -> JSON list of linked PBX users (owner: directory sync)."""
    return f"{PREFIX}tenant:{tenant}:links"


def adapter_state(tenant: str) -> str:
    """String: JSON of a PBX adapter's own state, e.g. SIP ETags (owner: workers/)."""
    return f"{PREFIX}tenant:{tenant}:adapter-state"


def lifecycle_inbox(tenant: str) -> str:
    """List of lifecycle items the clock drains and acts on (workers append)."""
    return f"{PREFIX}tenant:{tenant}:lifecycle"


def calls(tenant: str) -> str:
    """Hash: pbx user -> JSON of its active PBX calls (owner: workers/, reverse path)."""
    return f"{PREFIX}tenant:{tenant}:calls"


def own_presence(tenant: str, graph_id: str) -> str:
    """String: the Teams presence our own session set for a user, EX its duration."""
    return f"{PREFIX}tenant:{tenant}:own:{graph_id}"
