"""The generic `http` adapter against a real local HTTP server."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from core.cipher import CacheCipher
from core.errors import ConfigError, PbxError
from core.settings import PbxSettings
from emulator.harness.ports import free_port
from tests.pbx_server import CLIENT_ID, SECRET, PbxServer
from tests.workers.pbx.conftest import HttpAdapterBuilder
from workers.pbx.base import PbxUserRecord, ProfileChange
from workers.pbx.http import HttpAdapter, HttpPbxError
from workers.pbx.http_options import validate_options
from workers.pbx.http_tokens import TokenShare

AdapterFactory = Callable[..., HttpAdapter]
DND = ProfileChange(
    user="alice", profile="Do Not Disturb", availability="DoNotDisturb", activity="Presenting"
)


@pytest.fixture
def make_adapter(server: PbxServer, build_http_adapter: HttpAdapterBuilder) -> AdapterFactory:
    def make(
        options: dict[str, Any],
        secret: str | None = SECRET,
        clock: Callable[[], float] | None = None,
        share: TokenShare | None = None,
    ) -> HttpAdapter:
        return build_http_adapter(
            PbxSettings(
                adapter="http",
                options={"base_url": server.url, **options},
                secret=SecretStr(secret) if secret else None,
            ),
            clock,
            share,
        )

    return make


@pytest.fixture(params=["process", "redis"])
def share(request: pytest.FixtureRequest) -> TokenShare | None:
    """OAuth2 behaves the same with a token kept per process and one shared through Redis."""
    if request.param == "process":
        return None
    client: redis.Redis = request.getfixturevalue("redis_client")
    return TokenShare(client, CacheCipher(SecretStr(Fernet.generate_key().decode())), "acme")


def apply_action(**action: Any) -> dict[str, Any]:
    return {
        "actions": {"apply_profile": {"url": "/generic/users/$user", "method": "PUT", **action}}
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# -- request shape ----------------------------------------------------------------------------


def test_apply_sends_templated_method_url_query_headers_and_json(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter(
        {
            **apply_action(
                query={"site": "$site", "why": "$availability/$activity"},
                headers={"X-Profile": "$profile"},
                json={"who": "$user", "dnd": "$dnd", "note": "now $profile"},
            ),
            "vars": {"site": "berlin"},
            "profiles": {"Do Not Disturb": {"dnd": True}},
            "default": {"dnd": False},
        }
    )

    adapter.apply_profile(DND)

    [rec] = server.requests
    assert (rec.method, rec.path) == ("PUT", "/generic/users/alice")
    assert rec.params == {"site": "berlin", "why": "DoNotDisturb/Presenting"}
    assert rec.headers["x-profile"] == "Do Not Disturb"
    assert rec.json() == {"who": "alice", "dnd": True, "note": "now Do Not Disturb"}


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("Do Not Disturb", {"status": "2", "dnd": True}),
        ("Away", {"status": "1", "dnd": False}),
        ("Lunch", {"status": "0", "dnd": False}),
    ],
)
def test_profile_values_come_from_the_map_or_the_default(
    server: PbxServer, make_adapter: AdapterFactory, profile: str, expected: dict[str, Any]
) -> None:
    adapter = make_adapter(
        {
            **apply_action(json={"status": "$status", "dnd": "$dnd"}),
            "profiles": {"Do Not Disturb": {"status": "2", "dnd": True}, "Away": {"status": "1"}},
            "default": {"status": "0", "dnd": False},
        }
    )

    adapter.apply_profile(ProfileChange(user="alice", profile=profile))

    assert server.requests[0].json() == expected


def test_a_scalar_profile_value_is_value_and_defaults_to_the_profile_name(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter(
        {**apply_action(json={"p": "$value"}), "profiles": {"Do Not Disturb": "Out of office"}}
    )

    adapter.apply_profile(DND)
    adapter.apply_profile(ProfileChange(user="alice", profile="Teams Meeting"))

    assert [r.json() for r in server.requests] == [{"p": "Out of office"}, {"p": "Teams Meeting"}]


@pytest.mark.parametrize(
    ("body", "content_type", "raw"),
    [
        (
            {"form": {"state": "$value", "u": "$user"}},
            "application/x-www-form-urlencoded",
            b"state=Do+Not+Disturb&u=alice",
        ),
        (
            {"content": "user=$user;state=$value", "headers": {"Content-Type": "text/plain"}},
            "text/plain",
            b"user=alice;state=Do Not Disturb",
        ),
    ],
)
def test_form_and_raw_bodies_are_templated(
    server: PbxServer,
    make_adapter: AdapterFactory,
    body: dict[str, Any],
    content_type: str,
    raw: bytes,
) -> None:
    make_adapter(apply_action(**body)).apply_profile(DND)

    [rec] = server.requests
    assert rec.headers["content-type"] == content_type
    assert rec.body == raw


def test_applying_the_same_change_twice_sends_the_same_request(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    adapter = make_adapter(apply_action(query={"p": "$profile"}, json={"p": "$profile"}))

    adapter.apply_profile(DND)
    adapter.apply_profile(DND)

    first, second = server.requests
    assert (first.method, first.path, first.query, first.body) == (
        second.method,
        second.path,
        second.query,
        second.body,
    )


def test_values_in_the_url_path_are_quoted(server: PbxServer, make_adapter: AdapterFactory) -> None:
    make_adapter(apply_action()).apply_profile(ProfileChange(user="a/../b c", profile="x"))

    assert server.requests[0].path == "/generic/users/a/../b c"
    assert len(server.requests) == 1
    assert server.problems == []


def test_empty_query_values_are_left_out(server: PbxServer, make_adapter: AdapterFactory) -> None:
    make_adapter(apply_action(query={"a": "$activity", "p": "$profile"})).apply_profile(
        ProfileChange(user="alice", profile="Away")
    )

    assert server.requests[0].query == (("p", "Away"),)


# -- read and list ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "values", "expected"),
    [
        ({"data": {"items": [{"state": 2}]}}, {"2": "Do Not Disturb"}, "Do Not Disturb"),
        ({"data": {"items": [{"state": "Out of office"}]}}, {}, "Do Not Disturb"),
        ({"data": {"items": [{"state": "Lunch"}]}}, {}, "Lunch"),
        ({"data": {}}, {}, None),
    ],
)
def test_read_profile_extracts_a_dotted_path_and_maps_it_back(
    server: PbxServer,
    make_adapter: AdapterFactory,
    answer: Any,
    values: dict[str, str],
    expected: str | None,
) -> None:
    server.canned["/generic/state/alice"] = (200, answer)
    adapter = make_adapter(
        {
            **apply_action(),
            "profiles": {"Do Not Disturb": "Out of office"},
            "actions": {
                "apply_profile": {"url": "/generic/x"},
                "read_profile": {
                    "url": "/generic/state/$user",
                    "result": "data.items.0.state",
                    "values": values,
                },
            },
        }
    )

    assert adapter.read_profile("alice") == expected


def test_list_users_follows_next_links_and_reads_fields(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    server.canned["/generic/users"] = (
        200,
        {
            "result": {"users": [{"login": "alice", "mail": "a@example.com", "ext": 101}]},
            "links": {"next.page": f"{server.url}/generic/users2"},
        },
    )
    server.canned["/generic/users2"] = (
        200,
        {"result": {"users": [{"login": "bob"}, {"mail": "no-login@example.com"}]}, "links": {}},
    )
    adapter = make_adapter(
        {
            **apply_action(),
            "actions": {
                "apply_profile": {"url": "/generic/x"},
                "list_users": {
                    "url": "/generic/users",
                    "items": "result.users",
                    "username": "login",
                    "email": "mail",
                    "extension": "ext",
                    "next": ["links", "next.page"],
                },
            },
        }
    )

    assert adapter.list_users() == [
        PbxUserRecord("alice", "a@example.com", "101"),
        PbxUserRecord("bob"),
    ]


def test_an_adapter_without_read_or_list_actions_says_it_cannot(
    make_adapter: AdapterFactory,
) -> None:
    adapter = make_adapter(apply_action())

    assert adapter.read_profile("alice") is None
    assert adapter.list_users() is None


def test_id_comes_from_the_users_option_then_from_the_listed_directory(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    server.canned["/generic/users"] = (200, {"bob": {"id": "B-2"}})
    adapter = make_adapter(
        {
            "users": {"alice": "A-1", "carol": {"extension": "303"}},
            "actions": {
                "apply_profile": {"url": "/generic/set/$id/$extension", "method": "PUT"},
                "list_users": {"url": "/generic/users", "username": "$key", "id": "id"},
            },
        }
    )

    for user in ("alice", "bob", "carol", "dave"):
        adapter.apply_profile(ProfileChange(user=user, profile="Away"))

    assert [r.path for r in server.requests if r.method == "PUT"] == [
        "/generic/set/A-1/alice",
        "/generic/set/B-2/bob",
        "/generic/set/303/303",
        "/generic/set/dave/dave",
    ]
    assert len(server.to("/generic/users")) == 1  # reloaded only after directory_ttl_seconds


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "generic_auth"),
    [
        ({"type": "bearer"}, ("bearer",)),
        ({"type": "basic", "username": "bridge"}, ("basic", "bridge")),
        ({"type": "hmac"}, ("hmac",)),
    ],
)
def test_static_auth_is_accepted_by_the_server(
    server: PbxServer,
    make_adapter: AdapterFactory,
    auth: dict[str, Any],
    generic_auth: tuple[str, ...],
) -> None:
    server.generic_auth = generic_auth
    make_adapter({**apply_action(json={"p": "$profile"}), "auth": auth}).apply_profile(DND)

    assert server.requests[-1].method == "PUT"  # a 401 would have raised


def test_hmac_signature_covers_the_body(server: PbxServer, make_adapter: AdapterFactory) -> None:
    make_adapter({**apply_action(json={"p": "$profile"}), "auth": {"type": "hmac"}}).apply_profile(
        DND
    )
    rec = server.requests[0]
    tampered = type(rec)(rec.method, rec.path, rec.query, rec.headers, rec.body + b" ")

    assert server.verify_hmac(rec)
    assert not server.verify_hmac(tampered)


def test_a_wrong_secret_is_a_permanent_error(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    server.generic_auth = ("bearer",)
    adapter = make_adapter({**apply_action(), "auth": {"type": "bearer"}}, secret="wrong-secret")  # noqa: S106

    with pytest.raises(PbxError) as caught:
        adapter.apply_profile(DND)

    assert caught.value.transient is False


OAUTH = {"auth": {"type": "oauth2", "token_url": "/oauth/token", "client_id": CLIENT_ID}}


def test_oauth2_token_is_fetched_once_and_shared_by_adapters(
    server: PbxServer, make_adapter: AdapterFactory, share: TokenShare | None
) -> None:
    server.generic_auth = ("oauth2",)
    first = make_adapter({**apply_action(), **OAUTH}, share=share)
    second = make_adapter({**apply_action(), **OAUTH}, share=share)

    for adapter in (first, second, first, second):
        adapter.apply_profile(DND)

    assert server.tokens_issued == 1
    assert len(server.to("/generic/users/alice")) == 4


def test_oauth2_token_is_fetched_again_after_expiry(
    server: PbxServer, make_adapter: AdapterFactory, share: TokenShare | None
) -> None:
    server.generic_auth = ("oauth2",)
    clock = Clock()
    adapter = make_adapter({**apply_action(), **OAUTH}, clock=clock, share=share)
    adapter.apply_profile(DND)
    clock.now += server.token_lifetime - 120  # still outside the 60 s refresh margin
    adapter.apply_profile(DND)
    assert server.tokens_issued == 1

    clock.now += 61
    adapter.apply_profile(DND)

    assert server.tokens_issued == 2


def test_oauth2_token_is_fetched_again_once_after_a_401(
    server: PbxServer, make_adapter: AdapterFactory, share: TokenShare | None
) -> None:
    server.generic_auth = ("oauth2",)
    adapter = make_adapter({**apply_action(), **OAUTH}, share=share)
    adapter.apply_profile(DND)
    server.revoke_tokens()

    adapter.apply_profile(DND)

    assert server.tokens_issued == 2
    assert [r.path for r in server.requests].count("/generic/users/alice") == 3


def test_oauth2_gives_up_after_one_refetch(
    server: PbxServer, make_adapter: AdapterFactory, share: TokenShare | None
) -> None:
    server.generic_auth = ("bearer",)  # never accepts the issued tokens
    adapter = make_adapter({**apply_action(), **OAUTH}, share=share)

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(DND)

    assert (caught.value.status, caught.value.transient, server.tokens_issued) == (401, False, 2)


def test_oauth2_with_a_refused_client_is_permanent(
    server: PbxServer, make_adapter: AdapterFactory, share: TokenShare | None
) -> None:
    adapter = make_adapter(
        {**apply_action(), **OAUTH},
        secret="not-the-secret",  # noqa: S106
        share=share,
    )

    with pytest.raises(PbxError) as caught:
        adapter.apply_profile(DND)

    assert caught.value.transient is False
    assert "not-the-secret" not in str(caught.value)


def test_a_query_api_key_never_reaches_the_log(
    server: PbxServer, make_adapter: AdapterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = make_adapter(
        {**apply_action(), "auth": {"type": "api_key", "name": "apikey", "location": "query"}}
    )
    with caplog.at_level(logging.DEBUG):
        adapter.apply_profile(DND)

    assert server.requests[0].params["apikey"] == SECRET
    assert "HTTP Request" in caplog.text
    assert SECRET not in caplog.text


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (403, False),
        (404, False),
        (409, False),
        (422, False),
    ],
)
def test_http_status_decides_transient_or_permanent(
    server: PbxServer, make_adapter: AdapterFactory, status: int, transient: bool
) -> None:
    server.fail(1, status)
    adapter = make_adapter(apply_action())

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(DND)

    assert (caught.value.status, caught.value.transient) == (status, transient)
    assert len(server.requests) == 1  # retrying is the queue's job, not the adapter's


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), (None, None)])
def test_429_carries_retry_after(
    server: PbxServer, make_adapter: AdapterFactory, header: str | None, seconds: float | None
) -> None:
    server.fail(1, 429, retry_after=header)

    with pytest.raises(HttpPbxError) as caught:
        make_adapter(apply_action()).apply_profile(DND)

    assert caught.value.retry_after == seconds


def test_a_timeout_is_transient(server: PbxServer, make_adapter: AdapterFactory) -> None:
    server.hang(1)
    adapter = make_adapter({**apply_action(), "timeout_seconds": 0.3})

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(DND)

    assert caught.value.transient is True
    assert "timed out" in str(caught.value)


def test_a_refused_connection_is_transient(make_adapter: AdapterFactory) -> None:
    adapter = make_adapter({**apply_action(), "base_url": f"http://127.0.0.1:{free_port()}"})

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(DND)

    assert caught.value.transient is True


def test_a_2xx_body_with_the_error_key_is_permanent(
    server: PbxServer, make_adapter: AdapterFactory
) -> None:
    server.canned["/generic/users/alice"] = (200, {"error": f"Invalid API key {SECRET}"})
    adapter = make_adapter(apply_action(error_path="error"))

    with pytest.raises(HttpPbxError) as caught:
        adapter.apply_profile(DND)

    assert caught.value.transient is False
    assert "Invalid API key ***" in str(caught.value)


def test_an_unknown_profile_without_a_default_is_permanent(make_adapter: AdapterFactory) -> None:
    adapter = make_adapter(
        {**apply_action(json={"s": "$status"}), "profiles": {"Do Not Disturb": {"status": "2"}}}
    )

    with pytest.raises(PbxError) as caught:
        adapter.apply_profile(ProfileChange(user="alice", profile="Lunch"))

    assert caught.value.transient is False


def test_one_quick_retry_after_a_connection_reset(make_adapter: AdapterFactory) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[bytes] = []

    def serve() -> None:
        for answer in (None, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"):
            conn, _ = listener.accept()
            accepted.append(conn.recv(65536))
            if answer is None:  # RST instead of FIN: SO_LINGER with a zero timeout
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    adapter = make_adapter({**apply_action(), "base_url": f"http://127.0.0.1:{port}"})

    adapter.apply_profile(DND)

    thread.join(timeout=10)
    listener.close()
    assert [request.split(b"\r\n")[0] for request in accepted] == [
        b"PUT /generic/users/alice HTTP/1.1"
    ] * 2


# -- options validation -----------------------------------------------------------------------


def problems_of(options: dict[str, Any], secret: str | None = None) -> list[str]:
    settings = PbxSettings(
        adapter="http", options=options, secret=SecretStr(secret) if secret else None
    )
    with pytest.raises(ConfigError) as caught:
        validate_options(settings, "acme")
    return caught.value.problems


def test_validation_lists_every_problem_with_its_key_path() -> None:
    problems = problems_of(
        {
            "timeout_seconds": 0,
            "auth": {"type": "oauth2"},
            "actions": {
                "apply_profile": {"url": "/set/$nope", "method": "BREW"},
                "read_profile": {"url": "/get"},
                "list_users": {"url": "/list", "username": "u", "query": {"t": "$tenant"}},
            },
        }
    )

    assert sorted(problems) == sorted(
        [
            "pbx.options.timeout_seconds: Input should be greater than 0",
            "pbx.options.auth.token_url: Field required",
            "pbx.options.auth.client_id: Field required",
            "pbx.options.actions.apply_profile.method: Input should be 'GET', 'POST', 'PUT', "
            "'PATCH' or 'DELETE'",
            "pbx.options.actions.read_profile.result: Field required",
        ]
    )


def test_validation_checks_templates_base_url_bodies_and_secret() -> None:
    problems = problems_of(
        {
            "auth": {"type": "bearer"},
            "actions": {
                "apply_profile": {"url": "/set/$nope", "json": {"a": 1}, "form": {"b": "2"}},
                "list_users": {"url": "/list", "username": "u", "query": {"t": "$tenant"}},
            },
        }
    )

    assert problems == [
        "pbx.options.vars.nope: not set, but actions.apply_profile.url uses $nope",
        "pbx.options.actions.apply_profile: use only one of json, form, content",
        "pbx.options.vars.tenant: not set, but actions.list_users.query uses $tenant",
        "pbx.options.base_url: required by relative action URLs",
        "pbx.secret: the bearer auth needs a secret in PRESENCE_BRIDGE_TENANT_ACME_PBX_SECRET",
    ]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "pbx.options.actions.apply_profile: required"),
        (
            {"base_url": "ftp://pbx", "actions": {"apply_profile": {"url": "/x"}}},
            "pbx.options.base_url: must start with http:// or https://",
        ),
        (
            {
                "base_url": "http://pbx",
                "actions": {"apply_profile": {"url": "/x", "merge_read": True}},
            },
            "pbx.options.actions.apply_profile.merge_read: needs actions.read_profile",
        ),
        (
            {
                "base_url": "http://pbx",
                "colour": "red",
                "actions": {"apply_profile": {"url": "/x"}},
            },
            "pbx.options.colour: Extra inputs are not permitted",
        ),
        (
            {
                "base_url": "http://pbx",
                "actions": {
                    "apply_profile": {"url": "/x/$profile"},
                    "read_profile": {"url": "/$profile", "result": "a"},
                },
            },
            "pbx.options.vars.profile: not set, but actions.read_profile.url uses $profile",
        ),
    ],
)
def test_validation_names_the_problem(options: dict[str, Any], problem: str) -> None:
    assert problem in problems_of(options)


def test_jwt_grant_needs_a_json_secret() -> None:
    problems = problems_of(
        {
            "base_url": "http://pbx",
            "actions": {"apply_profile": {"url": "/x"}},
            "auth": {
                "type": "oauth2",
                "token_url": "/t",
                "client_id": "c",
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            },
        },
        secret="only-a-client-secret",
    )  # noqa: S106

    assert problems == [
        "pbx.secret: the jwt-bearer grant needs a JSON object "
        '{"client_secret": ..., "assertion": ...}'
    ]
    assert "only-a-client-secret" not in str(problems)


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "bearer"},
        {"type": "basic", "username": "u"},
        {"type": "hmac"},
        {"type": "api_key", "name": "apikey", "location": "query"},
        {"type": "oauth2", "token_url": "/oauth/token", "client_id": CLIENT_ID},
    ],
)
def test_the_secret_is_in_no_repr_or_error(
    server: PbxServer, make_adapter: AdapterFactory, auth: dict[str, Any]
) -> None:
    server.canned["/generic/users/alice"] = (403, {"message": f"bad key {SECRET}"})
    adapter = make_adapter({**apply_action(), "auth": auth})

    with pytest.raises(PbxError) as caught:
        adapter.apply_profile(DND)

    texts = [
        repr(adapter),
        str(adapter),
        repr(adapter.options),
        str(caught.value),
        repr(caught.value),
        repr(vars(adapter)),
    ]
    assert all(SECRET not in text for text in texts)
