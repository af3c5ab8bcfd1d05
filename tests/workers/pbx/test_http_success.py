"""What counts as a write the PBX took: `success_status` and `verify`, against a local server."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from core.errors import ConfigError
from core.settings import PbxSettings
from tests.pbx_server import PbxServer
from tests.workers.pbx.conftest import HttpAdapterBuilder
from workers.pbx.base import ProfileChange
from workers.pbx.http import HttpAdapter, HttpPbxError
from workers.pbx.http_options import validate_options

DND = ProfileChange(user="alice", profile="Do Not Disturb", availability="DoNotDisturb")
AVAILABLE = ProfileChange(user="alice", profile="Available", availability="Available")
APPLY = "/generic/users/alice"
READ = "/generic/read/alice"


def options(**apply: Any) -> dict[str, Any]:
    return {
        "profiles": {"Do Not Disturb": {"dnd": "on"}},
        "default": {"dnd": "off"},
        "actions": {
            "apply_profile": {
                "url": "/generic/users/$user",
                "method": "PUT",
                "json": {"state": {"dnd": "$dnd"}},
                **apply,
            },
            "read_profile": {
                "url": "/generic/read/$user",
                "result": "state.dnd",
                "values": {"on": "Do Not Disturb", "off": "Available", "": "Available"},
            },
        },
    }


def adapter(server: PbxServer, build: HttpAdapterBuilder, **apply: Any) -> HttpAdapter:
    return build(PbxSettings(adapter="http", options={"base_url": server.url, **options(**apply)}))


# -- success_status ---------------------------------------------------------------------------


def test_a_documented_success_status_is_applied(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder
) -> None:
    adapter(server, build_http_adapter, success_status=[204]).apply_profile(DND)

    assert server.to(APPLY)[0].json() == {"state": {"dnd": "on"}}


def test_another_2xx_is_a_permanent_refusal_with_the_body_as_reason(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder
) -> None:
    server.canned[APPLY] = (200, {"message": "Unexpected error"})

    with pytest.raises(HttpPbxError) as caught:
        adapter(server, build_http_adapter, success_status=[204]).apply_profile(DND)

    assert caught.value.transient is False
    assert caught.value.status == 200
    assert str(caught.value) == (
        f'PUT {APPLY}: PBX answered 200, not 204 {{"message":"Unexpected error"}}'
    )


@pytest.mark.parametrize(("status", "transient"), [(503, True), (429, True), (404, False)])
def test_statuses_outside_2xx_keep_their_meaning(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder, status: int, transient: bool
) -> None:
    server.canned[APPLY] = (status, {"message": "no"})

    with pytest.raises(HttpPbxError) as caught:
        adapter(server, build_http_adapter, success_status=[204]).apply_profile(DND)

    assert (caught.value.transient, caught.value.status) == (transient, status)


def test_success_status_takes_only_2xx() -> None:
    settings = PbxSettings(adapter="http", options={"base_url": "http://pbx", **options(
        success_status=[204, 302])})  # fmt: skip

    with pytest.raises(ConfigError) as caught:
        validate_options(settings)

    assert caught.value.problems == [
        "pbx.options.actions.apply_profile.success_status: "
        "Value error, only 2xx statuses can mean success"
    ]


# -- verify -----------------------------------------------------------------------------------


def test_a_write_that_reads_back_is_applied(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder
) -> None:
    server.canned[READ] = (200, {"state": {"dnd": "on"}})

    adapter(server, build_http_adapter, verify=True).apply_profile(DND)

    assert [r.path for r in server.requests] == [APPLY, READ]


def test_values_that_name_the_same_profile_read_back_as_the_same(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder
) -> None:
    server.canned[READ] = (200, {"state": {}})  # "off" written, nothing shown: both Available

    adapter(server, build_http_adapter, verify=True).apply_profile(AVAILABLE)


def test_a_2xx_that_does_not_read_back_is_a_permanent_refusal_with_both_values(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder
) -> None:
    server.canned[APPLY] = (200, True)
    server.canned[READ] = (200, {"state": {"dnd": "off"}})

    with pytest.raises(HttpPbxError) as caught:
        adapter(server, build_http_adapter, verify=True).apply_profile(DND)

    assert caught.value.transient is False
    assert str(caught.value) == (
        f'PUT {APPLY}: PBX answered 200 but reads back state.dnd = "off", not "on"'
    )


def test_a_read_back_that_fails_for_now_is_retried(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder
) -> None:
    server.canned[READ] = (503, {"message": "busy"})

    with pytest.raises(HttpPbxError) as caught:
        adapter(server, build_http_adapter, verify=True).apply_profile(DND)

    assert caught.value.transient is True


def test_verify_needs_a_read_action_that_reads_what_is_written() -> None:
    opts = options(verify=True)
    opts["actions"]["read_profile"]["result"] = "elsewhere"
    no_read = options(verify=True)
    del no_read["actions"]["read_profile"]

    problems = []
    for bad in (opts, no_read):
        with pytest.raises(ConfigError) as caught:
            validate_options(PbxSettings(adapter="http", options={"base_url": "http://p", **bad}))
        problems += caught.value.problems

    assert problems == [
        "pbx.options.actions.apply_profile.verify: the json body must write what "
        "actions.read_profile.result reads",
        "pbx.options.actions.apply_profile.verify: needs actions.read_profile",
    ]


def test_verify_reads_after_a_full_object_write(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder
) -> None:
    server.canned[READ] = (200, {"state": {"dnd": "off"}, "other": 1})

    with pytest.raises(HttpPbxError) as caught:
        adapter(server, build_http_adapter, verify=True, merge_read=True).apply_profile(DND)

    assert server.to(APPLY)[0].json() == {"state": {"dnd": "on"}, "other": 1}
    assert 'reads back state.dnd = "off", not "on"' in str(caught.value)


def test_secrets_in_a_read_back_are_redacted(
    server: PbxServer, build_http_adapter: HttpAdapterBuilder
) -> None:
    server.canned[READ] = (200, {"state": {"dnd": "key=pbx-Secret-0123456789"}})
    settings = PbxSettings(
        adapter="http",
        secret=SecretStr("pbx-Secret-0123456789"),
        options={"base_url": server.url, **options(verify=True)},
    )

    with pytest.raises(HttpPbxError) as caught:
        build_http_adapter(settings).apply_profile(DND)

    assert 'reads back state.dnd = "key=***"' in str(caught.value)
