"""The live feed `/admin/events`: a presence change reaches the page (both sources)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
import redis

from tests.webhook.admin.conftest import BEARER, T, run_pipeline


def next_event(stream: Iterator[str]) -> dict[str, object]:
    for line in stream:
        if line.startswith("data: "):
            return dict(orjson.loads(line[6:]))
    raise AssertionError("the event stream ended")


@pytest.mark.parametrize("pbx", ['adapter = "builtin"', 'adapter = "http"'])
def test_a_presence_change_reaches_the_event_stream(
    bridge: Callable[..., str], redis_client: redis.Redis, pbx: str
) -> None:
    """builtin: its profile stream wakes the feed; other adapters: the periodic comparison."""
    url = bridge(pbx=pbx)
    with (
        httpx.Client(base_url=url, headers=BEARER, timeout=10) as client,
        client.stream("GET", "/admin/events") as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")  # subscribed: the snapshot is taken
        run_pipeline(redis_client, "g-alice", "DoNotDisturb", "0001")
        event = next_event(lines)
    assert event == {
        "tenant": T,
        "user": "alice",
        "profile": "Do Not Disturb",
        "availability": "DoNotDisturb",
        "activity": "DoNotDisturb",
    }
