"""The asterisk adapter's read feeds the restore: what the phone set before a meeting (FreePBX
DND in AstDB) comes back when it ends. The pipeline and delivery steps of a presence job, on a
real Redis, against the AMI server built from recorded Asterisk traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from pydantic import SecretStr

from core.settings import MappingSettings
from core.state import links
from emulator.ami.server import AmiServer
from tests.ami_fixtures import SECRET, endpoint_options
from workers.delivery import deliver
from workers.mapping import compile_rules
from workers.pbx.asterisk import AsteriskAdapter
from workers.pipeline import PresenceUpdate, process
from workers.restore import read_shown

T = "contoso"
PASCOM = compile_rules(MappingSettings(preset="pascom"))
MEETING = ("Busy", "InAMeeting")
LEFT = ("Available", "Available")


@pytest.fixture
def asterisk(ami_server: AmiServer) -> Iterator[AsteriskAdapter]:
    adapter = AsteriskAdapter(endpoint_options(ami_server), SecretStr(SECRET), {"alice": "200"})
    yield adapter
    adapter.close()


def through_asterisk(redis_client: redis.Redis, adapter: AsteriskAdapter,
                     availability: str, activity: str) -> None:  # fmt: skip
    """The presence job's own steps (pipeline, then delivery), with the asterisk adapter."""
    result = process(redis_client, T, PASCOM, 0.0,
                     [PresenceUpdate("g-alice", availability, activity, None, time.time())],
                     read_shown=lambda users: read_shown(adapter, users))  # fmt: skip
    deliver(redis_client, T, adapter, [c.user for c in result.changes])


def test_a_dnd_set_on_the_phone_before_the_meeting_comes_back(
    redis_client: redis.Redis, ami_server: AmiServer, asterisk: AsteriskAdapter
) -> None:
    links.replace(redis_client, T, {"g-alice": ["alice"]})
    ami_server.db_put("DND", "200", "YES")  # the user pressed DND (FreePBX's *78)
    through_asterisk(redis_client, asterisk, *MEETING)
    assert ami_server.db()[("CustomPresence", "200")] == "dnd,,Teams Meeting"
    through_asterisk(redis_client, asterisk, *LEFT)
    db = ami_server.db()
    assert (db[("DND", "200")], db[("CustomPresence", "200")]) == ("YES", "dnd,,Do Not Disturb")


def test_without_anything_set_on_the_phone_the_meeting_ends_available(
    redis_client: redis.Redis, ami_server: AmiServer, asterisk: AsteriskAdapter
) -> None:
    links.replace(redis_client, T, {"g-alice": ["alice"]})
    through_asterisk(redis_client, asterisk, *MEETING)
    through_asterisk(redis_client, asterisk, *LEFT)
    db = ami_server.db()
    assert ("DND", "200") not in db
    assert db[("CustomPresence", "200")] == "available,,Available"
