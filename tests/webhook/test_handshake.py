from __future__ import annotations

import httpx
import pytest

from core.state import intake

ROUTES = ["/graph/notifications", "/graph/lifecycle"]


@pytest.mark.parametrize("route", ROUTES)
def test_handshake_echoes_the_decoded_token_as_plain_text(web: httpx.Client, route: str) -> None:
    response = web.post(f"{route}?validationToken=Validation%3A%20Testing%20client%2Bapp%26x")
    assert response.status_code == 200
    assert response.text == "Validation: Testing client+app&x"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_handshake_does_not_read_the_body(web: httpx.Client) -> None:
    response = web.post("/graph/notifications?validationToken=abc", content=b"{not json")
    assert (response.status_code, response.text) == (200, "abc")


@pytest.mark.parametrize(
    "token",
    ["x" * 1025, "abc%0Adef", "a%3Cscript%3E", "tab%09here", "del%7F", ""],
    ids=["too-long", "newline", "angle-brackets", "tab", "delete-char", "empty"],
)
def test_handshake_refuses_tokens_that_could_be_abused(web: httpx.Client, token: str) -> None:
    response = web.post(f"/graph/notifications?validationToken={token}")
    assert response.status_code == 400


def test_handshake_writes_nothing_to_redis(web: httpx.Client, redis_client) -> None:  # type: ignore[no-untyped-def]
    web.post("/graph/notifications?validationToken=abc")
    assert redis_client.exists(intake.STREAM) == 0
