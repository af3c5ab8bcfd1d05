"""Each preset sends its PBX's documented request shape to a real local server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from core.errors import ConfigError
from core.settings import PbxSettings
from tests.pbx_server import CLIENT_ID, JWT, SECRET, PbxServer
from tests.workers.pbx.conftest import HttpAdapterBuilder
from workers.pbx.base import PbxUserRecord, ProfileChange
from workers.pbx.http import HttpAdapter, HttpPbxError
from workers.pbx.http_options import validate_options
from workers.pbx.http_presets import PRESETS

AdapterFactory = Callable[..., HttpAdapter]
DND = "Do Not Disturb"


def change(user: str, profile: str) -> ProfileChange:
    return ProfileChange(user=user, profile=profile, availability="DoNotDisturb")


@pytest.fixture
def make_adapter(server: PbxServer, build_http_adapter: HttpAdapterBuilder) -> AdapterFactory:
    def make(preset: str, secret: str = SECRET, **options: Any) -> HttpAdapter:
        return build_http_adapter(
            PbxSettings(
                adapter="http",
                secret=SecretStr(secret),
                options={"preset": preset, "base_url": server.url, **options},
            )
        )

    return make


# -- Bicom PBXware ----------------------------------------------------------------------------

BICOM = {"vars": {"server": "3"}}


@pytest.mark.parametrize(
    ("profile", "dnd"), [(DND, "2"), ("Teams Meeting", "2"), ("Available", "0"), ("Away", "0")]
)
def test_bicom_sets_dnd_with_the_edit_action(
    server: PbxServer, make_adapter: AdapterFactory, profile: str, dnd: str
) -> None:
    make_adapter("bicom-dnd", **BICOM).apply_profile(change("1001", profile))

    edit = server.requests[-1]
    assert (edit.method, edit.path) == ("GET", "/index.php")
    assert edit.params == {
        "action": "pbxware.ext.es.dnd.edit",
        "server": "3",
        "id": "42",
        "dnd": dnd,
        "dsttype": "voicemail",
        "dst": "1001",
        "apikey": SECRET,
    }
    assert server.state["bicom"]["42"]["dnd"] == dnd
    assert server.problems == []


def test_bicom_finds_the_extension_id_in_the_extension_list(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter("bicom-dnd", **BICOM)

    assert adapter.list_users() == [
        PbxUserRecord("1001", "alice@example.com", "1001"),
        PbxUserRecord("1002", "bob@example.com", "1002"),
    ]
    assert server.requests[0].params["action"] == "pbxware.ext.list"


def test_bicom_reads_dnd_back(server: PbxServer, make_adapter: AdapterFactory) -> None:
    adapter = make_adapter("bicom-dnd", **BICOM)

    adapter.apply_profile(change("1001", DND))
    assert adapter.read_profile("1001") == DND
    adapter.apply_profile(change("1001", "Available"))
    assert adapter.read_profile("1001") == "Available"


def test_bicom_error_body_is_permanent(make_adapter: AdapterFactory) -> None:
    adapter = make_adapter(
        "bicom-dnd",
        secret="wrong-key-0123456789",  # noqa: S106
        **BICOM,
        users={"1001": "42"},
    )

    with pytest.raises(HttpPbxError, match="Invalid API key") as caught:
        adapter.apply_profile(change("1001", DND))

    assert caught.value.transient is False


def test_bicom_operator_overrides_a_preset_field(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter(
        "bicom-dnd",
        vars={"server": "3", "dsttype": "call forward"},
        users={"1001": "42"},
        actions={"apply_profile": {"query": {"dst": "0800123"}}},
    )

    adapter.apply_profile(change("1001", DND))

    assert server.state["bicom"]["42"] | {"duration": ""} == {
        "dnd": "2",
        "dst": "0800123",
        "dsttype": "call forward",
        "duration": "",
    }
    assert len(server.requests) == 1  # the users option spares the extension list


# -- 3CX --------------------------------------------------------------------------------------

THREECX = {"auth": {"client_id": CLIENT_ID}}


@pytest.mark.parametrize(
    ("profile", "name"), [(DND, "Out of office"), ("Away", "Away"), ("Available", "Available")]
)
def test_3cx_patches_current_profile_name(
    server: PbxServer, make_adapter: AdapterFactory, profile: str, name: str
) -> None:
    make_adapter("3cx", **THREECX).apply_profile(change("102", profile))

    token, *listing, patch = server.requests
    assert (token.method, token.path) == ("POST", "/connect/token")
    assert token.form() == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    assert [r.path for r in listing] == ["/xapi/v1/Users", "/xapi/v1/Users"]  # paged
    assert (patch.method, patch.path, patch.json()) == (
        "PATCH",
        "/xapi/v1/Users(8)",
        {"CurrentProfileName": name},
    )
    assert server.state["3cx"][8] == name
    assert server.problems == []


@pytest.mark.parametrize("profile", ["Busy", "On Call"])
def test_3cx_takes_away_for_a_teams_call(
    server: PbxServer, make_adapter: AdapterFactory, profile: str
) -> None:
    make_adapter("3cx", **THREECX, users={"101": "7"}).apply_profile(change("101", profile))

    assert server.state["3cx"][7] == "Away"
    assert server.problems == []


def test_3cx_lists_users_over_odata_pages(server: PbxServer, make_adapter: AdapterFactory) -> None:
    users = make_adapter("3cx", **THREECX).list_users()

    assert users == [
        PbxUserRecord("101", "u7@example.com", "101"),
        PbxUserRecord("102", "u8@example.com", "102"),
    ]
    assert server.to("/xapi/v1/Users")[0].params == {
        "$select": "Id,Number,EmailAddress,DisplayName"
    }


def test_3cx_reads_the_profile_back(server: PbxServer, make_adapter: AdapterFactory) -> None:
    adapter = make_adapter("3cx", **THREECX, users={"101": "7"})

    adapter.apply_profile(change("101", DND))

    assert adapter.read_profile("101") == DND
    assert server.requests[-1].params == {"$select": "CurrentProfileName"}
    assert server.tokens_issued == 1


# -- FreePBX ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "status"), [(DND, "YES"), ("Available", "")])
def test_freepbx_puts_dnd_status(
    server: PbxServer, make_adapter: AdapterFactory, profile: str, status: str
) -> None:
    make_adapter("freepbx-dnd", auth={"client_id": CLIENT_ID}).apply_profile(
        change("1001", profile)
    )

    token, put, read = server.requests  # the route answers true whatever happened: read back
    assert token.path == "/admin/api/api/token"
    assert (put.method, put.path, put.json()) == (
        "PUT",
        "/admin/api/api/rest/donotdisturb/users/1001",
        {"status": status},
    )
    assert (read.method, read.path) == ("GET", put.path)
    assert server.problems == []


@pytest.mark.parametrize(("profile", "status"), [(DND, "YES"), ("Available", "")])
def test_freepbx_refuses_a_write_that_does_not_read_back(
    server: PbxServer, make_adapter: AdapterFactory, profile: str, status: str
) -> None:
    server.state["freepbx"]["1001"] = "" if status else "YES"
    server.freepbx_ami_refuses.add("1001")
    adapter = make_adapter("freepbx-dnd", auth={"client_id": CLIENT_ID})

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(change("1001", profile))

    shown = "false" if status else '"YES"'
    assert caught.value.transient is False
    assert str(caught.value) == (
        "PUT /admin/api/api/rest/donotdisturb/users/1001: PBX answered 200 but reads back "
        f'status = {shown}, not "{status}"'
    )


@pytest.mark.parametrize("answer", [200, 401])
def test_freepbx_missing_scope_is_a_refusal_whatever_the_status(
    server: PbxServer, make_adapter: AdapterFactory, answer: int
) -> None:
    server.freepbx_missing_scope = answer
    adapter = make_adapter("freepbx-dnd", auth={"client_id": CLIENT_ID})

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(change("1001", DND))

    assert caught.value.transient is False
    assert "unauthorized" in str(caught.value)
    assert server.state["freepbx"] == {}


def test_freepbx_reads_dnd_back(server: PbxServer, make_adapter: AdapterFactory) -> None:
    adapter = make_adapter("freepbx-dnd", auth={"client_id": CLIENT_ID})
    assert adapter.read_profile("1001") == "Available"  # no AstDB key: false

    adapter.apply_profile(change("1001", "Teams Meeting"))

    assert adapter.read_profile("1001") == DND


# -- STARFACE ---------------------------------------------------------------------------------


def test_starface_logs_in_and_puts_the_full_phoneconfig(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter("starface-dnd", auth={"login": "alice"})

    adapter.apply_profile(change("alice", DND))

    nonce, login, listing, get, put = server.requests
    assert (nonce.method, nonce.path, login.method) == ("GET", "/rest/login", "POST")
    assert listing.path == "/rest/users"
    assert (get.method, put.method, put.path) == ("GET", "PUT", "/rest/users/0815/phoneconfig")
    assert put.json() == {
        "callWaiting": True,
        "displayNumberId": "n1",
        "doNotDisturb": True,
        "primaryPhoneId": "p9",
    }
    assert all(r.headers.get("x-version") == "2" for r in (listing, get, put))
    assert server.problems == []
    assert adapter.read_profile("alice") == DND


def test_starface_200_is_the_documented_unexpected_error(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    server.starface_unexpected_error = True
    adapter = make_adapter("starface-dnd", auth={"login": "alice"}, users={"alice": "0815"})

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(change("alice", DND))

    assert caught.value.transient is False
    assert str(caught.value) == (
        'PUT /rest/users/0815/phoneconfig: PBX answered 200, not 204 {"message":"Unexpected error"}'
    )
    assert server.state["starface"]["0815"]["doNotDisturb"] is False


def test_starface_logs_in_again_after_a_401(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter("starface-dnd", auth={"login": "alice"}, users={"alice": "0815"})
    adapter.apply_profile(change("alice", DND))
    server.revoke_tokens()

    adapter.apply_profile(change("alice", "Available"))

    assert server.tokens_issued == 2
    assert server.state["starface"]["0815"]["doNotDisturb"] is False


# -- RingCentral ------------------------------------------------------------------------------

RC_SECRET = json.dumps({"client_secret": SECRET, "assertion": JWT})


@pytest.mark.parametrize(
    ("profile", "body"),
    [
        (DND, {"userStatus": "Busy", "dndStatus": "DoNotAcceptAnyCalls"}),
        ("Busy", {"userStatus": "Busy", "dndStatus": "TakeAllCalls"}),
        ("Available", {"userStatus": "Available", "dndStatus": "TakeAllCalls"}),
    ],
)
def test_ringcentral_puts_presence(
    server: PbxServer, make_adapter: AdapterFactory, profile: str, body: dict[str, str]
) -> None:
    make_adapter(
        "ringcentral", secret=RC_SECRET, auth={"client_id": CLIENT_ID}, users={"alice": "101"}
    ).apply_profile(change("alice", profile))

    token, put = server.requests
    assert token.path == "/restapi/oauth/token"
    assert token.form() == {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": JWT,
    }
    assert (put.method, put.path, put.json()) == (
        "PUT",
        "/restapi/v1.0/account/~/extension/101/presence",
        body,
    )
    assert server.problems == []


def test_ringcentral_lists_and_reads(server: PbxServer, make_adapter: AdapterFactory) -> None:
    adapter = make_adapter("ringcentral", secret=RC_SECRET, auth={"client_id": CLIENT_ID})

    assert adapter.list_users() == [
        PbxUserRecord("101", "a@example.com", "101"),
        PbxUserRecord("102", "b@example.com", "102"),
    ]
    adapter.apply_profile(change("102", DND))
    assert adapter.read_profile("102") == DND


def test_ringcentral_rate_limit_carries_retry_after(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter(
        "ringcentral", secret=RC_SECRET, auth={"client_id": CLIENT_ID}, users={"alice": "101"}
    )
    adapter.apply_profile(change("alice", DND))
    server.fail(1, 429, retry_after="60")

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(change("alice", DND))

    assert (caught.value.transient, caught.value.retry_after) == (True, 60.0)


# -- Asterisk ARI (retired), Webex, pascom -------------------------------------------------


def test_the_asterisk_ari_preset_is_retired_in_favour_of_the_asterisk_adapter(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_adapter("asterisk-ari-presence", auth={"username": "ari"})
    problem = caught.value.problems[0]  # the options then lack what the preset gave
    assert problem.startswith(
        "pbx.options.preset: 'asterisk-ari-presence' is retired: ARI "
        "answers 204 even when Asterisk refuses the value"
    )
    assert 'use adapter = "asterisk"' in problem
    assert server.requests == []


def test_webex_reads_then_puts_do_not_disturb(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter("webex-dnd", users={"alice": "P1"})

    adapter.apply_profile(change("alice", DND))

    get, put = server.requests
    assert (get.method, put.method, put.path) == (
        "GET",
        "PUT",
        "/v1/people/P1/features/doNotDisturb",
    )
    assert put.json() == {"enabled": True, "ringSplashEnabled": True}
    assert put.headers["authorization"] == f"Bearer {SECRET}"
    assert adapter.read_profile("alice") == DND


def test_pascom_lists_identities_and_needs_an_apply_action(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_adapter("pascom", base_url=f"{server.url}/acme")
    assert caught.value.problems == [
        "pbx.options.actions.apply_profile: required by the pascom preset"
    ]

    adapter = make_adapter(
        "pascom",
        base_url=f"{server.url}/acme",
        actions={
            "apply_profile": {
                "method": "POST",
                "url": "/services/custom/$user/profile",
                "json": {"profile": "$profile"},
            }
        },
    )

    assert adapter.list_users() == [PbxUserRecord("alice", "alice@example.com", "101")]
    assert server.requests[0].path == "/acme/services/identity/"


# -- the presets themselves -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_says_how_sure_it_is_and_where_from(name: str) -> None:
    preset = PRESETS[name]

    assert preset.confidence in ("high", "medium", "low")
    assert preset.source.strip()  # the vendor doc, spec or source the calls were read in
    assert preset.confidence == "high" or preset.notes  # uncertain presets explain why


@pytest.mark.parametrize(
    ("preset", "problem"),
    [
        ("bicom-dnd", "pbx.options.vars.server: required by the bicom-dnd preset"),
        ("3cx", "pbx.options.auth.client_id: required by the 3cx preset"),
        ("starface-dnd", "pbx.options.auth.login: required by the starface-dnd preset"),
        (
            "nope",
            "pbx.options.preset: unknown preset 'nope' (known: 3cx, bicom-dnd, freepbx-dnd, "
            "pascom, ringcentral, starface-dnd, webex-dnd)",
        ),
    ],
)
def test_a_preset_names_the_site_values_it_still_needs(preset: str, problem: str) -> None:
    settings = PbxSettings(
        adapter="http",
        options={"preset": preset, "base_url": "http://pbx"},
        secret=SecretStr(SECRET),
    )

    with pytest.raises(ConfigError) as caught:
        validate_options(settings)

    assert problem in caught.value.problems
