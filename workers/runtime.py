"""The worker process's runtime: settings, Redis, and per tenant its rules, adapter and Graph.

Built once per process, on first use, and held across jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis

from core.graph import GraphClient
from core.graph_tokens import TenantTokens
from core.redis import connect
from core.settings import Settings, TenantSettings, load_settings
from core.state import backoff, links
from workers.mapping import RuleSet, compile_rules
from workers.pbx.base import PbxAdapter
from workers.pbx.registry import build_adapter

GraphFactory = Callable[[Settings, TenantSettings, Redis], GraphClient]


@dataclass
class TenantRuntime:
    settings: TenantSettings
    rules: RuleSet
    static_links: dict[str, list[str]]
    adapter: PbxAdapter
    _graph: GraphClient | None = None
    _graph_factory: Callable[[], GraphClient] | None = field(default=None, repr=False)

    @property
    def graph(self) -> GraphClient:
        if self._graph is None:
            if self._graph_factory is None:
                raise RuntimeError("no Graph client configured for this tenant")
            self._graph = self._graph_factory()
        return self._graph


def app_graph_client(tokens: TenantTokens, redis: Redis) -> GraphClient:
    """App-only Graph client of a tenant (MSAL is built on first use). It shares the app's
    back-off with every worker: a throttled job is retried when Graph asked, never slept on."""
    tenant = tokens.tenant
    return tokens.graph_client(backoff=backoff.graph(redis, tenant.name, tenant.client_id))


class WorkerRuntime:
    def __init__(
        self, settings: Settings, redis: Redis, graph_factory: GraphFactory | None = None
    ) -> None:
        self.settings = settings
        self.redis = redis
        self._graph_factory = graph_factory or self._app_graph
        self._tenants: dict[str, TenantRuntime] = {}
        self._tokens: list[TenantTokens] = []

    def _app_graph(self, settings: Settings, tenant: TenantSettings, redis: Redis) -> GraphClient:
        tokens = TenantTokens(tenant, settings.process, redis)
        self._tokens.append(tokens)  # its sign-in HTTP session is closed with the runtime
        return app_graph_client(tokens, redis)

    def tenant(self, name: str) -> TenantRuntime | None:
        runtime = self._tenants.get(name)
        if runtime is None:
            tenant = self.settings.tenant(name)
            if tenant is None:
                return None
            runtime = TenantRuntime(
                settings=tenant,
                rules=compile_rules(tenant.mapping),
                static_links=links.static_links(tenant),
                adapter=build_adapter(tenant, self.redis, self.settings.process.cache_key),
                _graph_factory=lambda: self._graph_factory(self.settings, tenant, self.redis),
            )
            self._tenants[name] = runtime
        return runtime

    def close(self) -> None:
        """Close the tenants' PBX adapters and Graph clients (their connection pools)."""
        for runtime in self._tenants.values():
            runtime.adapter.close()
            if runtime._graph is not None:
                runtime._graph.close()
        self._tenants.clear()
        for tokens in self._tokens:
            tokens.close()
        self._tokens.clear()


_current: WorkerRuntime | None = None


def current() -> WorkerRuntime:
    global _current
    if _current is None:
        settings = load_settings()
        _current = WorkerRuntime(settings, connect(settings.process.redis_url))
    return _current


def install(runtime: WorkerRuntime | None) -> None:
    """Set the process's runtime (the worker's main, and tests that run jobs in-process)."""
    global _current
    _current = runtime
