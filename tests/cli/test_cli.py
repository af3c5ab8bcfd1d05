"""The `presence-bridge` CLI against a real Redis, the Graph emulator and the real webhook."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from cryptography.fernet import Fernet
from typer.testing import CliRunner, Result

from cli.app import app
from core.graph_tokens import GraphTokens
from core.queue import QUEUE_PBX, queue
from core.settings import load_settings
from core.state import delivery
from core.state.coordination import LeaderLock
from emulator.control import ControlClient
from emulator.harness.ports import free_port
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env, tenant_toml
from emulator.server import EmulatorServer
from tests.emulator.conftest import ALL_ROLES, control, emulator  # noqa: F401 - fixtures
from tests.pbx_server import PbxServer
from webhook.app import create_app
from workers.delivery import deliver
from workers.mapping import compile_rules
from workers.pbx.base import ProfileChange
from workers.pbx.builtin import BuiltinAdapter
from workers.pipeline import PresenceUpdate, process

ROOT = Path(__file__).resolve().parents[2]
TENANT = "contoso"
DOMAIN = "contoso.test"
PBX_USERS = ("alice", "bob", "dave")  # dave has no Teams user
GRAPH_USERS = ("alice", "bob", "carol")  # carol has no PBX user


@dataclass
class Site:
    """An emulated Entra tenant and the environment that points the CLI at it."""

    emulator: EmulatorServer
    control: ControlClient
    tenant_id: str
    users: dict[str, str]  # name -> Graph id
    accounts: list[str]
    env: dict[str, str]
    public_url: str
    tmp_path: Path
    pbx: str = 'adapter = "builtin"'
    extra: str = ""
    made: list[GraphTokens] = field(default_factory=list)

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        every = {**self.env, "COLUMNS": "200", **(env or {})}
        return CliRunner().invoke(app, list(args), env=every)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        return orjson.loads(result.stdout)

    def rewrite(self, *, pbx: str | None = None, extra: str | None = None) -> None:
        self.pbx = self.pbx if pbx is None else pbx
        self.extra = self.extra if extra is None else extra
        self._write()

    def _write(self) -> None:
        accounts = ", ".join(f'"{a}"' for a in self.accounts)
        users = "".join(f'[[tenants.pbx_users]]\nusername = "{u}"\n' for u in PBX_USERS)
        extra = (f"service_accounts = [{accounts}]\n{self.extra}\n[tenants.matching]\n"
                 f"strip_domain = true\n{users}")  # fmt: skip
        toml = tenant_toml(
            TENANT, extra=extra, pbx=self.pbx, tenant_id=self.tenant_id,
            client_id=self.env["_CLIENT_ID"], login=self.emulator.base_url,
            graph=self.emulator.base_url, public=self.public_url,
        )  # fmt: skip
        Path(self.env["PRESENCE_BRIDGE_TENANTS_FILE"]).write_text(toml)

    def sign_in(self, redis_client: redis.Redis, account: str | None = None) -> None:
        """What a browser does with the URL `login` prints, then the web callback's work."""
        args = ["login", "--tenant", TENANT] + (["--account", account] if account else [])
        auth_uri = self.json(*args)["auth_uri"]
        fields = self.control.sign_in(auth_uri, submit=False)
        auth = GraphTokens(load_settings(self.env), redis_client)
        self.made.append(auth)
        auth.finish_sign_in(fields)


SiteFactory = Callable[..., Site]


@pytest.fixture
def site_factory(
    emulator: EmulatorServer,  # noqa: F811
    control: ControlClient,  # noqa: F811
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
) -> Iterator[SiteFactory]:
    made: list[Site] = []

    def make(
        *,
        roles: list[str] | None = None,
        accounts: int = 1,
        public_url: str = "https://bridge.example.test",
    ) -> Site:
        tenant_id = control.seed_tenant(str(uuid.uuid4()))
        secret = uuid.uuid4().hex
        app_ = control.seed_app(
            tenant_id,
            secret=secret,
            roles=ALL_ROLES if roles is None else roles,
            redirect_uris=[f"{public_url}/oauth/callback"],
        )
        ids = control.seed_users(tenant_id, [
            {"userPrincipalName": f"{n}@{DOMAIN}", "mail": f"{n}@{DOMAIN}", "mailNickname": n}
            for n in GRAPH_USERS
        ])  # fmt: skip
        upns = [f"svc{n}-{uuid.uuid4().hex[:6]}@{DOMAIN}" for n in range(accounts)]
        for upn in upns:
            control.add_service_account(tenant_id, upn, uuid.uuid4().hex, "Presence")
        env = {
            "PRESENCE_BRIDGE_REDIS_URL": redis_url,
            "PRESENCE_BRIDGE_CA_BUNDLE": str(emulator.ca_path),
            "PRESENCE_BRIDGE_CACHE_KEY": Fernet.generate_key().decode(),
            "PRESENCE_BRIDGE_TENANTS_FILE": str(tmp_path / "tenants.toml"),
            secret_env(TENANT, "CLIENT_SECRET"): secret,
            "_CLIENT_ID": app_["client_id"],
        }
        site = Site(emulator, control, tenant_id, dict(zip(GRAPH_USERS, ids, strict=True)),
                    upns, env, public_url, tmp_path)  # fmt: skip
        site._write()
        made.append(site)
        return site

    yield make
    for site in made:
        for auth in site.made:
            auth.close()


@pytest.fixture
def site(site_factory: SiteFactory) -> Site:
    return site_factory()


@pytest.fixture
def web(redis_client: redis.Redis, redis_url: str) -> Iterator[ServedApp]:
    """The real webhook, which answers Graph's validation handshake when subscribing."""
    with ServedApp(create_app(load_settings({"PRESENCE_BRIDGE_REDIS_URL": redis_url}))) as served:
        yield served


@pytest.fixture
def pbx_server() -> Iterator[PbxServer]:
    with PbxServer() as server:
        yield server


def graph_presence(
    site: Site, redis_client: redis.Redis, user: str, availability: str, activity: str
) -> None:
    """A Teams presence change through the real pipeline and delivery (what a worker does)."""
    tenant = load_settings(site.env).tenant(TENANT)
    assert tenant is not None
    update = PresenceUpdate(site.users[user], availability, activity, None, time.time())
    result = process(redis_client, TENANT, compile_rules(tenant.mapping), 0.0, [update])
    deliver(redis_client, TENANT, BuiltinAdapter(redis_client, TENANT),
            [c.user for c in result.changes])  # fmt: skip


def dead_letter(redis_client: redis.Redis, user: str, profile: str = "Away") -> None:
    [made] = delivery.set_desired(redis_client, TENANT, [ProfileChange(user, profile)])
    delivery.dead_letter(redis_client, TENANT, made, "HTTP 404: no such extension")


# ---- check --------------------------------------------------------------------------------


def test_check_lists_every_configuration_problem_and_exits_2(site: Site) -> None:
    result = site.run("check", env={
        "PRESENCE_BRIDGE_PORT": "0", secret_env(TENANT, "CLIENT_SECRET"): ""
    })  # fmt: skip

    assert result.exit_code == 2
    assert "PRESENCE_BRIDGE_PORT" in result.stderr
    assert secret_env(TENANT, "CLIENT_SECRET") in result.stderr
    assert "2 problem(s)" in result.stderr


def test_check_json_reports_configuration_problems(site: Site) -> None:
    result = site.run("check", "--json", env={"PRESENCE_BRIDGE_PORT": "0"})

    assert result.exit_code == 2
    body = orjson.loads(result.stdout)
    assert body["ok"] is False
    assert any("PRESENCE_BRIDGE_PORT" in p for p in body["config_problems"])


def test_check_passes_and_names_an_unsigned_account(site: Site) -> None:
    result = site.run("check")

    assert result.exit_code == 0, result.output
    assert "ok redis" in result.stdout
    assert f"ok {TENANT}: graph" in result.stdout
    assert f"ok {TENANT}: presence" in result.stdout
    assert f"{site.accounts[0]} never signed in" in result.stdout
    assert f"presence-bridge login --tenant {TENANT} --account {site.accounts[0]}" in result.stdout


def test_check_strict_fails_on_an_unsigned_account(site: Site) -> None:
    assert site.run("check", "--strict").exit_code == 1


def test_check_sees_a_signed_in_account(site: Site, redis_client: redis.Redis) -> None:
    site.sign_in(redis_client)

    body = site.json("check")

    assert body["ok"] is True
    accounts = [r for r in body["results"] if r["check"] == "account"]
    assert accounts == [{"tenant": TENANT, "check": "account", "status": "ok",
                         "message": f"{site.accounts[0]} signed in"}]  # fmt: skip


@pytest.mark.parametrize(
    ("roles", "missing", "check"),
    [
        (["Presence.ReadWrite.All"], "User.Read.All", "graph"),
        (["User.Read.All"], "Presence.ReadWrite.All", "presence"),
    ],
)
def test_check_names_a_missing_permission(
    site_factory: SiteFactory, roles: list[str], missing: str, check: str
) -> None:
    site = site_factory(roles=roles)

    result = site.run("check", "--json")

    assert result.exit_code == 1
    failed = {r["check"]: r["message"] for r in orjson.loads(result.stdout)["results"]
              if r["status"] == "fail"}  # fmt: skip
    assert missing in failed["permissions"]
    assert "403" in failed[check] and missing in failed[check]


def test_check_reports_an_unreachable_redis(site: Site) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    result = site.run("check", env={"PRESENCE_BRIDGE_REDIS_URL": url})

    assert result.exit_code == 1
    assert f"fail redis: cannot reach {url}" in result.stdout
    assert f"ok {TENANT}: graph" in result.stdout  # Graph is checked all the same


def test_check_reports_a_refused_app_credential(site: Site) -> None:
    result = site.run("check", env={secret_env(TENANT, "CLIENT_SECRET"): "wrong"})

    assert result.exit_code == 1
    assert f"fail {TENANT}: graph: no app-only token" in result.stdout


@pytest.mark.parametrize(
    ("pbx", "expected"),
    [
        ('adapter = "builtin"', "ok contoso: pbx: builtin"),
        ('adapter = "sip"', "skip contoso: pbx: sip"),
    ],
)
def test_check_probes_the_pbx_adapter_it_can(site: Site, pbx: str, expected: str) -> None:
    site.rewrite(pbx=pbx)

    result = site.run("check")

    assert expected in result.stdout, result.output


def test_check_reads_the_http_pbx_once(site: Site, pbx_server: PbxServer) -> None:
    pbx_server.canned["/generic/users/alice"] = (200, {"status": "away"})
    site.rewrite(pbx=f'adapter = "http"\n[tenants.pbx.options]\nbase_url = "{pbx_server.url}"\n'
                     '[tenants.pbx.options.actions.apply_profile]\nurl = "/generic/users/$user"\n'
                     '[tenants.pbx.options.actions.read_profile]\nurl = "/generic/users/$user"\n'
                     'result = "status"\n')  # fmt: skip

    result = site.run("check")

    assert "ok contoso: pbx: http: alice shows 'away'" in result.stdout, result.output
    assert [r.path for r in pbx_server.requests] == ["/generic/users/alice"]


# ---- login --------------------------------------------------------------------------------


def test_login_prints_a_url_that_signs_the_account_in(
    site: Site, redis_client: redis.Redis
) -> None:
    result = site.run("login", "--tenant", TENANT)

    assert result.exit_code == 0, result.output
    url = next(line for line in result.stdout.splitlines() if line.startswith("https://"))
    assert f"{site.public_url}/oauth/callback" in result.stdout
    auth = GraphTokens(load_settings(site.env), redis_client)
    site.made.append(auth)
    assert auth.finish_sign_in(site.control.sign_in(url, submit=False)) == (
        TENANT, site.accounts[0]
    )  # fmt: skip


def test_login_defaults_to_the_first_account_not_signed_in(
    site_factory: SiteFactory, redis_client: redis.Redis
) -> None:
    site = site_factory(accounts=2)
    site.sign_in(redis_client, site.accounts[0])

    assert site.json("login", "--tenant", TENANT)["account"] == site.accounts[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nope"], "unknown tenant 'nope'"),
        (["--tenant", TENANT, "--account", "someone@else.test"], "is not a service account"),
    ],
)
def test_login_refuses_what_is_not_configured(site: Site, args: list[str], message: str) -> None:
    result = site.run("login", *args)

    assert result.exit_code == 2
    assert message in result.stderr


# ---- directory sync -----------------------------------------------------------------------


def test_directory_sync_links_pbx_users(site: Site) -> None:
    result = site.run("directory", "sync", "--tenant", TENANT)

    assert result.exit_code == 0, result.output
    assert "full sync (no delta link)" in result.stdout
    assert "2 linked, 1 unlinked" in result.stdout


def test_directory_sync_json_reports_counts_and_a_second_run_is_a_delta(site: Site) -> None:
    first = site.json("directory", "sync", "--tenant", TENANT)
    second = site.json("directory", "sync", "--tenant", TENANT)

    assert (first["mode"], first["linked_pbx"], first["unlinked_pbx"]) == ("full", 2, 1)
    assert first["graph_users"] == len(GRAPH_USERS) + len(site.accounts)
    assert (second["mode"], second["reason"]) == ("delta", "no changes")


def test_directory_sync_full_imports_again(site: Site) -> None:
    site.json("directory", "sync", "--tenant", TENANT)

    assert site.json("directory", "sync", "--tenant", TENANT, "--full")["reason"] == "requested"


def test_directory_sync_names_the_missing_permission(site_factory: SiteFactory) -> None:
    site = site_factory(roles=["Presence.ReadWrite.All"])

    result = site.run("directory", "sync", "--tenant", TENANT)

    assert result.exit_code == 1
    assert "403" in result.stderr and "needs the application permission User.Read.All" in (
        result.stderr
    )  # fmt: skip


def test_directory_sync_of_an_unknown_tenant_exits_2(site: Site) -> None:
    result = site.run("directory", "sync", "--tenant", "nope")

    assert result.exit_code == 2
    assert "unknown tenant 'nope' (tenants: contoso)" in result.stderr


# ---- subscriptions ------------------------------------------------------------------------


def test_subscriptions_reconcile_creates_and_list_shows_it(
    site_factory: SiteFactory, web: ServedApp, redis_client: redis.Redis
) -> None:
    site = site_factory(public_url=web.url)
    site.sign_in(redis_client)
    site.json("directory", "sync", "--tenant", TENANT)

    result = site.run("subscriptions", "reconcile", "--tenant", TENANT)

    assert result.exit_code == 0, result.output
    assert f"{TENANT}: 1 created" in result.stdout
    [row] = site.json("subscriptions", "list")
    [sub] = row["subscriptions"]
    assert (sub["account"], sub["users"], sub["state"]) == (site.accounts[0], 2, "live")
    assert 50 * 60 < sub["seconds_left"] <= 60 * 60
    listed = site.run("subscriptions", "list", "--tenant", TENANT)
    assert sub["subscription_id"] in listed.stdout and "live" in listed.stdout


def test_subscriptions_list_without_any_says_so(site: Site) -> None:
    result = site.run("subscriptions", "list")

    assert result.exit_code == 0
    assert f"{TENANT}: 0 subscription(s)" in result.stdout


def test_subscriptions_reconcile_without_signed_in_accounts_polls(site: Site) -> None:
    site.json("directory", "sync", "--tenant", TENANT)

    [report] = site.json("subscriptions", "reconcile")

    assert (report["created"], report["polled"]) == (0, 2)


def test_subscriptions_reconcile_leaves_the_work_to_a_running_clock(
    site: Site, redis_client: redis.Redis
) -> None:
    assert LeaderLock(redis_client, "clock", 30).acquire()  # another clock leads

    result = site.run("subscriptions", "reconcile")

    assert result.exit_code == 1
    assert "a running clock holds the leader lock" in result.stderr


# ---- status and users ---------------------------------------------------------------------


def test_status_shows_accounts_users_queues_and_problems(
    site: Site, redis_client: redis.Redis
) -> None:
    site.json("directory", "sync", "--tenant", TENANT)
    dead_letter(redis_client, "alice")

    result = site.run("status")

    assert result.exit_code == 1, result.output  # no heartbeats, a dead letter: unhealthy
    assert "worker: no heartbeat" in result.stdout
    assert "queues: lifecycle 0, presence 0, pbx 0" in result.stdout
    assert f"{site.accounts[0]}" in result.stdout and "not_signed_in" in result.stdout
    assert "users: 2 linked, 1 PBX unlinked, 2 Teams unlinked, 0 conflicting" in result.stdout
    assert "dead letters: 1" in result.stdout
    assert "delivery contoso alice: Away (v1): HTTP 404: no such extension" in result.stdout


def test_status_json_has_every_section(site: Site) -> None:
    site.json("directory", "sync", "--tenant", TENANT)

    result = site.run("status", "--json")  # exits 1: no worker or clock heartbeat here

    body = orjson.loads(result.stdout)
    assert set(body) >= {"worker_alive", "clock_alive", "intake_length", "queues", "tenants",
                         "problems"}  # fmt: skip
    [tenant] = body["tenants"]
    assert set(tenant) >= {"accounts", "subscriptions", "users", "dead_letters", "problems",
                           "pending_deliveries"}  # fmt: skip
    assert tenant["users"]["linked"] == 2
    assert tenant["accounts"][0]["status"] == "not_signed_in"


def test_status_of_an_unknown_tenant_exits_2(site: Site) -> None:
    assert site.run("status", "--tenant", "nope").exit_code == 2


def test_users_show_gives_presence_profile_and_latency(
    site: Site, redis_client: redis.Redis
) -> None:
    site.json("directory", "sync", "--tenant", TENANT)
    graph_presence(site, redis_client, "alice", "Busy", "InACall")

    result = site.run("users", "show", "alice", "--tenant", TENANT)

    assert result.exit_code == 0, result.output
    assert f"Teams {site.users['alice']}: Busy/InACall" in result.stdout
    assert "applied" in result.stdout and " ms" in result.stdout


def test_users_show_says_dead_lettered_not_pending(site: Site, redis_client: redis.Redis) -> None:
    dead_letter(redis_client, "alice")

    result = site.run("users", "show", "alice", "--tenant", TENANT)
    body = site.json("users", "show", "alice", "--tenant", TENANT)

    assert result.exit_code == 0, result.output
    assert "desired: Away v1, applied v0: dead-lettered" in result.stdout
    assert (body["pending"], body["in_sync"]) == (False, False)


def test_users_show_json_finds_the_user_by_upn(site: Site, redis_client: redis.Redis) -> None:
    site.json("directory", "sync", "--tenant", TENANT)
    graph_presence(site, redis_client, "bob", "DoNotDisturb", "Presenting")

    body = site.json("users", "show", f"bob@{DOMAIN}", "--tenant", TENANT)

    assert (body["pbx_user"], body["graph_ids"], body["in_sync"]) == (
        "bob", [site.users["bob"]], True
    )  # fmt: skip
    assert body["teams"][site.users["bob"]]["availability"] == "DoNotDisturb"
    assert body["pbx_profile"]["profile"] == body["desired"]["profile"]
    assert body["events"][0]["latency_ms"] >= 0


def test_users_show_of_an_unknown_user_exits_2(site: Site) -> None:
    result = site.run("users", "show", "nobody", "--tenant", TENANT)

    assert result.exit_code == 2
    assert "no user 'nobody' in tenant contoso" in result.stderr


# ---- dead letters -------------------------------------------------------------------------


def test_dead_letters_list_shows_the_reason(site: Site, redis_client: redis.Redis) -> None:
    dead_letter(redis_client, "alice")

    result = site.run("dead-letters", "list", "--tenant", TENANT)

    assert result.exit_code == 0
    assert "alice" in result.stdout and "HTTP 404: no such extension" in result.stdout
    [entry] = site.json("dead-letters", "list", "--tenant", TENANT)
    assert (entry["user"], entry["profile"], entry["version"]) == ("alice", "Away", 1)


def test_dead_letters_replay_applies_and_clears(site: Site, redis_client: redis.Redis) -> None:
    dead_letter(redis_client, "alice", "Do Not Disturb")
    dead_letter(redis_client, "bob")

    result = site.run("dead-letters", "replay", "--tenant", TENANT, "alice")

    assert result.exit_code == 0, result.output
    assert "applied alice" in result.stdout
    assert BuiltinAdapter(redis_client, TENANT).read_profile("alice") == "Do Not Disturb"
    assert [d["user"] for d in site.json("dead-letters", "list", "--tenant", TENANT)] == ["bob"]


def test_dead_letters_replay_of_a_user_without_one_exits_2(site: Site) -> None:
    result = site.run("dead-letters", "replay", "--tenant", TENANT, "carol")

    assert result.exit_code == 2
    assert "no dead letter for carol" in result.stderr


@pytest.mark.parametrize(
    ("answer", "code", "word"),
    [((404, {"error": "no such user"}), 1, "refused again"), ((503, None), 3, "retrying")],
)
def test_dead_letters_replay_reports_a_pbx_that_still_fails(
    site: Site,
    redis_client: redis.Redis,
    pbx_server: PbxServer,
    answer: tuple[int, Any],
    code: int,
    word: str,
) -> None:
    site.rewrite(pbx=f'adapter = "http"\n[tenants.pbx.options]\nbase_url = "{pbx_server.url}"\n'
                     '[tenants.pbx.options.actions.apply_profile]\nurl = "/generic/users/$user"\n'
                     'method = "PUT"\n')  # fmt: skip
    pbx_server.canned["/generic/users/alice"] = answer
    dead_letter(redis_client, "alice")

    result = site.run("dead-letters", "replay", "--tenant", TENANT)

    assert result.exit_code == code, result.output
    assert f"{word} alice" in result.stdout


def test_a_transient_replay_failure_is_queued_for_the_workers(
    site: Site, redis_client: redis.Redis
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    site.rewrite(
        pbx=f'adapter = "http"\n[tenants.pbx.options]\nbase_url = "{closed}"\n'
        '[tenants.pbx.options.actions.apply_profile]\nurl = "/generic/users/$user"\n'
    )
    dead_letter(redis_client, "alice")

    body = orjson.loads(site.run("dead-letters", "replay", "--tenant", TENANT, "--json").stdout)

    assert list(body["retrying"]) == ["alice"]
    # The PBX cannot be reached: it backs off, and every pending user is resumed after it.
    [job_id] = queue(redis_client, QUEUE_PBX).scheduled_job_registry.get_job_ids()
    job = queue(redis_client, QUEUE_PBX).fetch_job(job_id)
    assert job is not None and job.args == [TENANT]
    assert delivery.pending_users(redis_client, TENANT) == ["alice"]


# ---- failures common to every command -----------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["users", "show", "alice", "--tenant", TENANT],
        ["dead-letters", "list", "--tenant", TENANT],
        ["subscriptions", "list"],
        ["clock", "reconcile"],
    ],
)
def test_a_dead_redis_is_a_clear_message_and_exit_3(site: Site, args: list[str]) -> None:
    port = free_port()
    env = {**site.env, "PRESENCE_BRIDGE_REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0"}
    # The real entry point in a process of its own, as an operator runs it.
    code = "import sys; from cli.app import main; sys.argv[0] = 'presence-bridge'; main()"
    command = [sys.executable, "-c", code, *args]
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 3, done.stderr
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_a_broken_tenants_file_exits_2_for_every_command(site: Site) -> None:
    Path(site.env["PRESENCE_BRIDGE_TENANTS_FILE"]).write_text("[[tenants]\n")

    result = site.run("status")

    assert result.exit_code == 2
    assert "not valid TOML" in result.stderr


def test_version_prints_the_version_pyproject_states() -> None:
    stated = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"presence-bridge {stated}\n")
