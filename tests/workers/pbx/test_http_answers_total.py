"""Whatever a PBX answers the `http` adapter (status, headers, body), it returns or raises a
PbxError: a real local server over loopback answers what hypothesis makes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.errors import PbxError
from core.settings import PbxSettings
from emulator.harness.served import ServedApp
from tests.workers.pbx.conftest import HttpAdapterBuilder
from workers.pbx.base import ProfileChange
from workers.pbx.http import HttpAdapter

DND = ProfileChange("alice", "Do Not Disturb", "DoNotDisturb", "Presenting")


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Pbx:
    url: str
    answer: Answer


@pytest.fixture(scope="module")
def pbx() -> Iterator[Pbx]:
    holder = Pbx("", Answer())

    async def answer(request: Request) -> Response:
        await request.body()
        now = holder.answer
        return Response(now.body, status_code=now.status, headers=now.headers)

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "PUT", "POST"])])
    with ServedApp(app) as served:
        holder.url = served.url
        yield holder


@pytest.fixture
def adapter(pbx: Pbx, build_http_adapter: HttpAdapterBuilder) -> HttpAdapter:
    options = {
        "base_url": pbx.url,
        "actions": {
            "apply_profile": {"url": "/set/$user", "method": "PUT", "error_path": "error"},
            "read_profile": {"url": "/get/$user", "result": "data.0.state"},
            "list_users": {
                "url": "/users",
                "items": "users",
                "username": "name",
                "email": "mail",
                "extension": "ext",
                "id": "id",
                "next": "next",
            },
        },
    }
    return build_http_adapter(PbxSettings(adapter="http", options=options))


scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits and 4,300 digits too: the stdlib's json writes them
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["users", "name", "mail", "ext", "id", "next", "data", "state", "error"]
            )
            | st.text(max_size=5),
            inner,
            max_size=4,
        )
    ),
    max_leaves=15,
)
bodies = json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200)
answers = st.builds(
    Answer,
    status=st.sampled_from([200, 201, 301, 400, 401, 404, 408, 429, 500, 503]),
    body=bodies,
    headers=st.fixed_dictionaries(
        {},
        optional={
            "retry-after": st.text(
                st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
                max_size=40,
            ),
            "content-type": st.sampled_from(["application/json", "text/plain", "text/html"]),
        },
    ),
)


@given(answer=answers)
def test_any_answer_to_each_action_is_a_result_or_a_pbx_error(
    pbx: Pbx, adapter: HttpAdapter, answer: Answer
) -> None:
    pbx.answer = answer
    actions = (
        lambda: adapter.apply_profile(DND),
        lambda: adapter.read_profile("alice"),
        adapter.list_users,
    )
    for action in actions:
        with contextlib.suppress(PbxError):  # what else escapes fails the test
            action()


@pytest.mark.parametrize("value", ["²", "1" * 5000, "9" * 400])
def test_a_retry_after_that_is_not_seconds_or_a_date_is_ignored(
    pbx: Pbx, adapter: HttpAdapter, value: str
) -> None:
    pbx.answer = Answer(503, b"", {"retry-after": value})
    with pytest.raises(PbxError) as caught:
        adapter.apply_profile(DND)
    assert caught.value.transient is True


def test_a_next_page_link_that_cannot_be_requested_is_a_pbx_error(
    pbx: Pbx, adapter: HttpAdapter
) -> None:
    """Found by hypothesis: httpx.InvalidURL escaped the adapter."""
    pbx.answer = Answer(200, json.dumps({"users": [], "next": "\u001f"}).encode())
    with pytest.raises(PbxError, match="cannot be requested"):
        adapter.list_users()


def test_a_next_page_link_to_another_host_is_never_followed(pbx: Pbx, adapter: HttpAdapter) -> None:
    """Every request carries the PBX's credentials: a link must not take them elsewhere."""
    seen: list[str] = []

    async def record(request: Request) -> Response:
        seen.append(request.headers.get("authorization", ""))
        return Response(b'{"users": []}', media_type="application/json")

    other = Starlette(routes=[Route("/{path:path}", record)])
    with ServedApp(other) as elsewhere:
        body = {"users": [{"name": "alice"}], "next": f"{elsewhere.url}/steal"}
        pbx.answer = Answer(200, json.dumps(body).encode())
        with pytest.raises(PbxError, match="names another host"):
            adapter.list_users()
    assert seen == []
