"""Directory sync against the Graph emulator over real HTTPS, real msal and a real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis
from pydantic import HttpUrl, SecretStr

from core.errors import GraphError
from core.graph import GraphClient
from core.graph_tokens import TenantTokens
from core.settings import (
    MatchingSettings,
    PbxSettings,
    PbxUser,
    ProcessSettings,
    TenantSettings,
)
from core.state import directory, links
from core.state.directory import Conflict, SyncReport
from emulator.control import ControlClient
from emulator.server import EmulatorServer
from tests.emulator.conftest import SeededTenant, seed_tenant
from tests.pbx_server import SECRET, PbxServer
from workers.directory_sync import _expired, sync_directory
from workers.pbx.http import HttpAdapter
from workers.pbx.http_options import validate_options

DOMAIN = "contoso.test"


@dataclass
class Site:
    """One emulated tenant, its settings, and the bridge's Graph client for it."""

    emulator: EmulatorServer
    control: ControlClient
    seeded: SeededTenant
    redis: redis.Redis
    graph: GraphClient
    settings: TenantSettings

    @property
    def tenant_id(self) -> str:
        return self.seeded.tenant_id

    def configure(self, **changes: Any) -> None:
        self.settings = self.settings.model_copy(update=changes)

    def add(self, name: str, **fields: Any) -> str:
        spec = {"userPrincipalName": f"{name}@{DOMAIN}", "mail": f"{name}@{DOMAIN}",
                "mailNickname": name, **fields}  # fmt: skip
        return self.control.seed_users(self.tenant_id, [spec])[0]

    def sync(self, full: bool = False, **kwargs: Any) -> SyncReport:
        return sync_directory(self.settings, self.redis, self.graph, full=full, **kwargs)

    def links(self) -> dict[str, list[str]]:
        return links.read_all(self.redis, self.settings.name)

    def directory(self) -> set[str]:
        return {u.id for u in directory.load_users(self.redis, self.settings.name)}


def stored_status(site: Site) -> dict[str, Any] | None:
    """The directory status record as Redis holds it (its JSON shape is what readers rely on)."""
    raw = site.redis.get(directory.status_key(site.settings.name))
    return orjson.loads(raw) if raw else None


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


SiteFactory = Callable[..., Site]


@pytest.fixture
def site_factory(
    shared_emulator: EmulatorServer, redis_client: redis.Redis
) -> Iterator[SiteFactory]:
    """`site_factory(private=True)` gets an emulator of its own (for tests that move its clock)."""
    with ExitStack() as stack:

        def make(*, private: bool = False, **settings: Any) -> Site:
            server = stack.enter_context(EmulatorServer()) if private else shared_emulator
            control = stack.enter_context(server.control())
            seeded = seed_tenant(server, control)
            tenant = TenantSettings(
                name="contoso", tenant_id=seeded.tenant_id, client_id=seeded.client_id,
                client_secret=SecretStr(seeded.secret),
                login_base_url=HttpUrl(server.base_url), graph_base_url=HttpUrl(server.base_url),
                public_base_url=HttpUrl("https://bridge.example.com"), **settings,
            )  # fmt: skip
            # The bridge's own token provider: real msal, trusting only the emulator's CA.
            auth = TenantTokens(tenant, ProcessSettings(ca_bundle=server.ca_path), redis_client)
            stack.callback(auth.close)
            graph = stack.enter_context(auth.graph_client())
            return Site(server, control, seeded, redis_client, graph, tenant)

        yield make


@pytest.fixture
def site(site_factory: SiteFactory) -> Site:
    return site_factory()


# ---- full import ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matching", "pbx_user"),
    [
        (MatchingSettings(), PbxUser(username=f"user000007@{DOMAIN}")),
        (MatchingSettings(strip_domain=True), PbxUser(username="USER000007")),
        (
            MatchingSettings(graph_attribute="mail", pbx_attribute="email"),
            PbxUser(username="207", email=f"User000007@{DOMAIN}"),
        ),
        (
            MatchingSettings(graph_attribute="mailNickname", pbx_attribute="extension"),
            PbxUser(username="x7", extension="user000007"),
        ),
        (
            MatchingSettings(graph_attribute="onPremisesSamAccountName", pbx_attribute="username"),
            PbxUser(username="user000007"),
        ),
    ],
    ids=["upn-username", "upn-username-strip", "mail-email", "nickname-extension", "sam-username"],
)
def test_full_import_reads_every_page_and_links_by_the_matching_settings(
    site: Site, matching: MatchingSettings, pbx_user: PbxUser
) -> None:
    ids = site.control.seed_users(site.tenant_id, count=300, domain=DOMAIN)
    site.configure(matching=matching, pbx_users=[pbx_user, PbxUser(username="nobody")])

    report = site.sync(page_size=50)

    assert (report.mode, report.reason) == ("full", "no delta link")
    # 300 users and the service account: seven list pages, plus the `latest` delta link.
    assert (report.pages, report.graph_users) == (8, 301)
    assert site.directory() == set(ids) | {site.seeded.account_id}
    assert site.links() == {ids[7]: [pbx_user.username]}
    assert (report.linked_pbx, report.unlinked_pbx) == (1, 1)


def test_a_full_import_stores_the_delta_link_and_leaves_no_temporary_keys(site: Site) -> None:
    site.add("alice")

    site.sync(page_size=1)

    assert directory.delta_link(site.redis, "contoso") is not None
    assert sorted(k for k in site.redis.keys("*") if b":tmp:" in k) == []


def test_full_import_on_request_drops_users_gone_from_graph(site: Site) -> None:
    gone = site.add("alice")
    site.sync()
    site.control.delete_user(site.tenant_id, gone, permanent=True)
    site.redis.delete(directory.delta_link_key("contoso"))  # only a full import can tell

    report = site.sync(full=True)

    assert (report.mode, report.reason) == ("full", "requested")
    assert gone not in site.directory()


# ---- delta rounds ---------------------------------------------------------------------------


def test_a_user_added_in_entra_is_linked_after_one_delta_round(site: Site) -> None:
    site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}")])
    site.sync()
    assert site.links() == {}
    alice = site.add("alice")

    report = site.sync()

    assert (report.mode, report.upserted) == ("delta", 1)
    assert site.links() == {alice: [f"alice@{DOMAIN}"]}


def test_a_changed_upn_moves_the_link_to_the_matching_pbx_user(site: Site) -> None:
    site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}"),
                              PbxUser(username=f"alice.smith@{DOMAIN}")])  # fmt: skip
    alice = site.add("alice")
    site.sync()
    site.control.update_user(site.tenant_id, alice, userPrincipalName=f"alice.smith@{DOMAIN}")

    site.sync()

    assert site.links() == {alice: [f"alice.smith@{DOMAIN}"]}


def test_a_delta_change_keeps_the_properties_it_does_not_carry(site: Site) -> None:
    site.configure(matching=MatchingSettings(graph_attribute="mailNickname"),
                   pbx_users=[PbxUser(username="alice")])  # fmt: skip
    alice = site.add("alice")
    site.sync()
    site.control.update_user(site.tenant_id, alice, displayName="Alice Smith")

    site.sync()

    assert site.links() == {alice: ["alice"]}
    record = orjson.loads(site.redis.hget(directory.users_key("contoso"), alice) or b"{}")
    assert record["displayName"] == "Alice Smith" and record["mailNickname"] == "alice"


def test_a_soft_deleted_user_is_unlinked_and_kept_as_a_tombstone(site: Site) -> None:
    site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}")])
    alice = site.add("alice")
    site.sync()
    site.control.delete_user(site.tenant_id, alice)

    report = site.sync()

    assert (report.soft_deleted, report.tombstones) == (1, 1)
    assert site.links() == {}
    assert alice not in site.directory()
    tombstone = orjson.loads(site.redis.hget(directory.tombstones_key("contoso"), alice) or b"{}")
    assert tombstone["user"]["userPrincipalName"] == f"alice@{DOMAIN}"


def test_a_restored_user_is_linked_again_and_loses_its_tombstone(site: Site) -> None:
    site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}")])
    alice = site.add("alice")
    site.sync()
    site.control.delete_user(site.tenant_id, alice)
    site.sync()
    site.control.restore_user(site.tenant_id, alice)

    site.sync()

    assert site.links() == {alice: [f"alice@{DOMAIN}"]}
    assert site.redis.hlen(directory.tombstones_key("contoso")) == 0


@pytest.mark.parametrize("soft_first", [False, True], ids=["active", "soft-deleted"])
def test_a_hard_deleted_user_is_gone_everywhere(site: Site, soft_first: bool) -> None:
    site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}")])
    alice = site.add("alice")
    site.sync()
    if soft_first:
        site.control.delete_user(site.tenant_id, alice)
        site.sync()
    site.control.delete_user(site.tenant_id, alice, permanent=True)

    report = site.sync()

    assert report.hard_deleted == 1
    assert site.links() == {}
    assert alice not in site.directory()
    assert site.redis.hlen(directory.tombstones_key("contoso")) == 0


def test_tombstones_older_than_entra_retention_are_forgotten(site: Site) -> None:
    alice = site.add("alice")
    site.sync()
    site.control.delete_user(site.tenant_id, alice)
    site.sync(clock=lambda: 1_000_000.0)

    report = site.sync(clock=lambda: 1_000_000.0 + directory.TOMBSTONE_DAYS * 86_400 + 1)

    assert report.tombstones == 0


def test_an_expired_delta_token_falls_back_to_a_full_import(site_factory: SiteFactory) -> None:
    site = site_factory(private=True, pbx_users=[PbxUser(username=f"bob@{DOMAIN}")])
    site.sync()
    bob = site.add("bob")
    lifetime = float(site.control.settings()["delta_token_lifetime"])
    site.control.advance_clock(lifetime + 60)

    report = site.sync()

    assert (report.mode, report.reason) == ("full", "delta token expired")
    assert site.links() == {bob: [f"bob@{DOMAIN}"]}
    assert site.sync().mode == "delta"  # the new link works


def test_a_delta_link_from_another_graph_base_leads_to_a_full_import(site: Site) -> None:
    site.sync()
    site.redis.set(
        directory.delta_link_key("contoso"),
        "https://graph.elsewhere.example/v1.0/users/delta?$deltatoken=x",
    )

    report = site.sync()

    assert (report.mode, report.reason) == ("full", "graph base URL changed")


@pytest.mark.parametrize(
    ("status", "code", "expired"),
    [(410, "syncStateNotFound", True), (410, "http410", True), (400, "syncStateNotFound", True),
     (400, "resyncRequired", True), (404, "syncStateInvalid", True), (400, "BadRequest", False),
     (500, "syncStateNotFound", False), (429, "TooManyRequests", False)],
)  # fmt: skip
def test_which_graph_errors_mean_the_delta_token_expired(
    status: int, code: str, expired: bool
) -> None:
    assert _expired(GraphError(status, code, "GET /v1.0/users/delta: x")) is expired


# ---- links, flags, status -------------------------------------------------------------------


def test_an_idle_round_keeps_the_links_and_refreshes_the_status(site: Site) -> None:
    site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}")])
    alice = site.add("alice")
    first = site.sync(clock=lambda: 1_000.0)

    report = site.sync(clock=lambda: 2_000.0)

    assert (report.mode, report.reason, report.linked_pbx) == ("delta", "no changes", 1)
    assert site.links() == {alice: [f"alice@{DOMAIN}"]}
    status = stored_status(site)
    assert status is not None and (status["synced_at"], status["reason"]) == (2_000.0, "no changes")
    assert status["fingerprint"] == first.fingerprint


@pytest.mark.parametrize("edit", ["settings", "links hash"])
def test_an_idle_round_relinks_when_the_links_no_longer_fit(site: Site, edit: str) -> None:
    site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}")])
    alice = site.add("alice")
    site.sync()
    if edit == "settings":
        site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}", enabled=False)])
        expected: dict[str, list[str]] = {}
    else:
        site.redis.delete(links.links_key("contoso"))
        expected = {alice: [f"alice@{DOMAIN}"]}

    report = site.sync()

    assert (report.mode, report.reason) == ("delta", "delta link")
    assert site.links() == expected


def test_a_pbx_user_claimed_by_two_graph_users_is_a_reported_conflict(site: Site) -> None:
    site.configure(matching=MatchingSettings(graph_attribute="mail", pbx_attribute="email"),
                   pbx_users=[PbxUser(username="200", email=f"desk@{DOMAIN}"),
                              PbxUser(username="201", email=f"carol@{DOMAIN}")])  # fmt: skip
    a = site.add("a", mail=f"desk@{DOMAIN}")
    b = site.add("b", mail=f"DESK@{DOMAIN}")
    carol = site.add("carol")

    report = site.sync()

    assert report.conflicts == (Conflict("200", tuple(sorted((a, b)))),)
    assert site.links() == {carol: ["201"]}
    status = stored_status(site)
    assert status is not None
    assert status["conflicts"] == [{"pbx_user": "200", "graph_ids": sorted((a, b))}]
    assert (status["conflict_count"], status["linked_pbx"]) == (1, 1)
    assert status["synced_at"] == report.synced_at


@pytest.mark.parametrize(
    ("tenant_enabled", "override", "linked"),
    [(True, None, True), (True, True, True), (True, False, False),
     (False, None, False), (False, True, True), (False, False, False)],
)  # fmt: skip
def test_enable_precedence_decides_the_link(
    site: Site, tenant_enabled: bool, override: bool | None, linked: bool
) -> None:
    site.configure(enabled=tenant_enabled,
                   pbx_users=[PbxUser(username=f"alice@{DOMAIN}", enabled=override)])  # fmt: skip
    alice = site.add("alice")

    report = site.sync()

    assert site.links() == ({alice: [f"alice@{DOMAIN}"]} if linked else {})
    assert report.disabled == (0 if linked else 1)


def test_one_graph_user_drives_every_pbx_user_that_shares_its_address(site: Site) -> None:
    site.configure(matching=MatchingSettings(graph_attribute="mail", pbx_attribute="email"),
                   pbx_users=[PbxUser(username="200", email=f"alice@{DOMAIN}"),
                              PbxUser(username="201", email=f"alice@{DOMAIN}")])  # fmt: skip
    alice = site.add("alice")

    site.sync()

    assert site.links() == {alice: ["200", "201"]}


def test_static_links_from_the_tenants_file_are_written_with_the_matched_ones(
    site: Site,
) -> None:
    alice, bob = site.add("alice"), site.add("bob")
    site.configure(pbx_users=[PbxUser(username=f"alice@{DOMAIN}"),
                              PbxUser(username="300", graph_id=bob),
                              PbxUser(username="301", graph_id="not-in-graph-yet")])  # fmt: skip

    report = site.sync()

    assert site.links() == {alice: [f"alice@{DOMAIN}"], bob: ["300"], "not-in-graph-yet": ["301"]}
    assert report.static_links == 2


def test_a_pbx_that_lists_its_users_is_the_directory(site: Site) -> None:
    alice = site.add("alice")
    with PbxServer() as pbx:
        pbx.canned["/generic/users"] = (200, {"users": [{"login": "alice", "ext": "200"}]})
        listing = {"url": "/generic/users", "items": "users", "username": "login"}
        actions = {"apply_profile": {"url": "/generic/profile/$user"}, "list_users": listing}
        options = {"base_url": pbx.url, "actions": actions}
        settings = PbxSettings(adapter="http", secret=SecretStr(SECRET), options=options)
        adapter = HttpAdapter(validate_options(settings, "contoso"), settings.secret)
        site.configure(matching=MatchingSettings(graph_attribute="mailNickname"),
                       pbx_users=[PbxUser(username="from-the-file")])  # fmt: skip
        try:
            report = sync_directory(site.settings, site.redis, site.graph, adapter)
        finally:
            adapter.close()

    assert report.pbx_source == "adapter"
    assert site.links() == {alice: ["alice"]}


def test_a_sync_already_running_for_the_tenant_is_refused(site: Site) -> None:
    with directory.DirectoryLock(site.redis, "contoso"), pytest.raises(directory.DirectoryBusy):
        site.sync()


def test_links_of_another_tenant_are_left_alone(site: Site) -> None:
    links.replace(site.redis, "fabrikam", {"g1": ["100"]})

    site.sync()

    assert site.redis.hget(links.links_key("fabrikam"), "g1") == b'["100"]'
