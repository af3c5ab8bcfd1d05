"""One tenant as the clock sees it: settings, tokens, Redis, time, its Graph clients and budget.

It also carries the clock's current term of the leader lock (`fence`): every write the clock
makes for the tenant passes it, so a clock that lost the lock can no longer write.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis

from core.cipher import CacheCipher
from core.graph import DEFAULT_MAX_ATTEMPTS, GraphClient
from core.graph_tokens import TenantTokens
from core.settings import TenantSettings
from core.state import backoff
from core.state.coordination import Fence
from subscriptions.sweep import CallBudget


@dataclass
class TenantView:
    """One tenant's view for the clock, kept across ticks: its settings, tokens, Redis and time."""

    redis: Redis
    tenant: TenantSettings
    auth: TenantTokens
    cipher: CacheCipher
    verify: str | bool | ssl.SSLContext = True
    now: Callable[[], float] = time.time
    budget: CallBudget = field(default_factory=CallBudget)
    fence: Fence | None = None  # the leader lock's term the clock acts in (None: unfenced)
    # Subscription id -> when a reauthorizationRequired was last answered by a renewal. Held in
    # memory: a clock that takes over renews once more, which is harmless.
    reauthorized: dict[str, float] = field(default_factory=dict, repr=False)
    _clients: dict[tuple[str | None, bool], GraphClient] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.tenant.name

    def graph(self, account: str | None = None, *, fresh_token: bool = False) -> GraphClient:
        """Graph as `account` (delegated) or as the app (None); cached for the view.

        `fresh_token` gets a new delegated token for every request. Graph keeps the token a
        create or renewal was made with as the subscription's own, and holds deliveries once
        it expires, so those calls must not use a cached token that is about to.
        """
        key = (account, fresh_token)
        client = self._clients.get(key)
        if client is None:
            auth = self.auth
            if account is None:
                provider: Callable[[], str] = auth.app_token
                fresh: Callable[[], str] = lambda: auth.app_token(fresh=True)  # noqa: E731
                attempts = DEFAULT_MAX_ATTEMPTS
                # The sweep's and polling's reads spend the app's budget the workers share:
                # a throttle any of them met holds these too (raised, retried next tick).
                shared = backoff.graph(self.redis, self.tenant.name, self.tenant.client_id)
            else:
                name = account
                fresh = lambda: auth.delegated_token(name, fresh=True)  # noqa: E731
                provider = fresh if fresh_token else lambda: auth.delegated_token(name)  # noqa: E731
                # No sleeping retries inside a reconcile: a failing account is deferred and
                # the next round (a minute later) tries again, so one account never stalls all.
                attempts = 1
                shared = None
            client = GraphClient(
                str(self.tenant.graph_base_url), provider, fresh_token=fresh,
                verify=self.verify, max_attempts=attempts, backoff=shared,
            )  # fmt: skip
            self._clients[key] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
