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


def desired_versions(tenant: str) -> str:
    """Hash: pbx user -> last desired version handed out (owner: workers/)."""
    return desired(tenant) + ":versions"


# Directory (owner: workers/directory.py).
def directory_users(tenant: str) -> str:
    """Hash: graph user id -> compact JSON of the selected user fields."""
    return f"{PREFIX}tenant:{tenant}:directory:users"


def directory_tombstones(tenant: str) -> str:
    """Hash: graph user id -> JSON {"at", "user"} of a soft-deleted user, kept 30 days."""
    return f"{PREFIX}tenant:{tenant}:directory:tombstones"


def directory_delta_link(tenant: str) -> str:
    """String: the `/users/delta` deltaLink to resume from (Graph's lasts 7 days)."""
    return f"{PREFIX}tenant:{tenant}:directory:delta"


def directory_status(tenant: str) -> str:
    """String: JSON status of the last sync (counts, conflicts, time)."""
    return f"{PREFIX}tenant:{tenant}:directory:status"


def directory_lock(tenant: str) -> str:
    """String with expiry: held while one tenant's directory sync runs."""
    return f"{PREFIX}lock:directory:{tenant}"


# Subscriptions (owner: subscriptions/).
def subscription_accounts(tenant: str) -> str:
    """Hash: service account -> id of the subscription it holds."""
    return f"{PREFIX}tenant:{tenant}:sub-accounts"


def subscription_backoff(tenant: str) -> str:
    """Hash: service account -> JSON {until, failures, reason} after 429 / 5xx."""
    return f"{PREFIX}tenant:{tenant}:sub-backoff"


def subscription_status(tenant: str) -> str:
    """String: JSON status of the last reconcile (accounts, polled users, latency bound)."""
    return f"{PREFIX}tenant:{tenant}:sub-status"


def polled(tenant: str) -> str:
    """String: JSON list of the Graph user ids covered by polling, not by a subscription."""
    return f"{PREFIX}tenant:{tenant}:polled"


def sweep_requested(tenant: str) -> str:
    """String: set when a resync sweep is owed (a lifecycle `missed`, a recreation)."""
    return f"{PREFIX}tenant:{tenant}:sweep-requested"


def certificates(tenant: str) -> str:
    """Hash: certificate id -> JSON {key (encrypted PEM), certificate, created_at, retired_at}."""
    return f"{PREFIX}tenant:{tenant}:certs"


def current_certificate(tenant: str) -> str:
    """String: id of the certificate new subscriptions and renewals name."""
    return f"{PREFIX}tenant:{tenant}:cert-current"


# String set once per Redis lifetime: when it is gone, Redis came back empty.
CLOCK_EPOCH = PREFIX + "clock:epoch"


def oauth_flow(state_digest: str) -> str:
    """String, EX 10 min: an encrypted sign-in flow, by SHA-256 of its state (owner: core.auth)."""
    return f"{PREFIX}oauth:flow:{state_digest}"


def pbx_token(tenant: str) -> str:
    """String, encrypted, EX = token lifetime: the PBX API's OAuth2 token, shared by workers."""
    return f"{PREFIX}tenant:{tenant}:pbx-token"


def pbx_token_lock(tenant: str) -> str:
    """String with expiry (10 s): held by the one worker fetching the shared PBX token."""
    return pbx_token(tenant) + ":lock"


def admin_login_failures(client: str) -> str:
    """String counter, EX 15 min: failed admin logins from one client address (owner: web)."""
    return f"{PREFIX}admin:login-failures:{client}"
