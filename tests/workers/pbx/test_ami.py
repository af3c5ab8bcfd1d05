"""The AMI wire codec and clients, and the test AMI server's fidelity to the recordings."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from emulator import tls
from emulator.ami.recorded import recorded
from emulator.ami.rules import ManagerUser, base64_decode
from emulator.ami.server import AmiServer
from tests.ami_fixtures import SECRET, RawSession, endpoint_options
from workers.pbx.ami import (
    AmiClient,
    AmiConnectionError,
    AmiEndpoint,
    AmiLoginFailed,
    AmiRefused,
    AsyncAmiClient,
)
from workers.pbx.ami_wire import ActionResult, AmiProtocolError, MessageReader, encode

T = TypeVar("T")
BANNER = b"Asterisk Call Manager/9.0.0\r\n"


def endpoint(server: AmiServer, **extra: object) -> AmiEndpoint:
    return AmiEndpoint.model_validate(endpoint_options(server, **extra))


@pytest.fixture
def client(ami_server: AmiServer) -> Iterator[AmiClient]:
    made = AmiClient(endpoint(ami_server), SECRET)
    made.connect()
    yield made
    made.close()


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


# --- the codec ---------------------------------------------------------------------------


def test_reader_takes_the_banner_then_blank_line_separated_messages() -> None:
    reader = MessageReader()
    data = BANNER + b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
    data += b"Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n"
    messages = reader.feed(data)
    assert reader.banner == "Asterisk Call Manager/9.0.0"
    assert [m.response or m.event for m in messages] == ["Success", "FullyBooted"]


def test_reader_gives_the_same_messages_however_the_bytes_are_split() -> None:
    data = BANNER + encode([("Event", "Newstate"), ("Channel", "SIP/200-00000005")])
    data += encode([("Response", "Success"), ("Ping", "Pong")])
    for cut in range(1, len(data)):
        reader = MessageReader()
        messages = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert [m.as_dict() for m in messages] == [
            {"Event": "Newstate", "Channel": "SIP/200-00000005"},
            {"Response": "Success", "Ping": "Pong"},
        ]


def test_reader_keeps_a_repeated_header_in_order() -> None:
    reader = MessageReader(expect_banner=False)
    (message,) = reader.feed(
        b"Response: Success\r\nMessage: Presence State\r\nState: dnd\r\n"
        b"Message: Teams Meeting\r\nPresenceMessage: Teams Meeting\r\n\r\n"
    )
    assert message.get("message") == "Presence State"
    assert message.get_all("Message") == ["Presence State", "Teams Meeting"]


def test_reader_refuses_a_peer_that_is_not_asterisk() -> None:
    with pytest.raises(AmiProtocolError):
        MessageReader().feed(b"SSH-2.0-OpenSSH_9.2\r\n")


def test_encode_refuses_a_value_that_would_inject_headers() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        encode([("Value", "dnd,,x\r\nAction: Logoff")])


def test_a_list_answer_is_done_only_at_its_complete_event() -> None:
    reader = MessageReader(expect_banner=False)
    result = ActionResult("DBGet", "a-1")
    stream = (
        b"Response: Success\r\nActionID: a-1\r\nEventList: start\r\n"
        b"Message: Result will follow\r\n\r\n"
        b"Event: DBGetResponse\r\nFamily: DND\r\nKey: 200\r\nVal: YES\r\nActionID: a-1\r\n\r\n"
        b"Event: DBGetComplete\r\nActionID: a-1\r\nEventList: Complete\r\nListItems: 1\r\n\r\n"
    )
    states = []
    for seq, message in enumerate(reader.feed(stream), 1):
        result.add(message, seq)
        states.append(result.done)
    assert states == [False, False, True]
    assert [e.get("Val") for e in result.events] == ["YES"]


# --- login and the session rules ---------------------------------------------------------


def test_login_reads_the_banner_and_is_accepted(client: AmiClient) -> None:
    assert client.banner == "Asterisk Call Manager/9.0.0"


@pytest.mark.parametrize("username", ["check", "nobody"])
def test_a_bad_login_is_refused_as_asterisk_words_it_and_hung_up(
    ami_server: AmiServer, username: str
) -> None:
    ami_server.auth_failure_delay = 0.05
    with RawSession(ami_server) as raw:
        raw.send(("Action", "Login"), ("ActionID", "x1"), ("Username", username), ("Secret", "x"))
        answer = raw.read()
        assert answer.as_dict() == {
            "Response": "Error",
            "ActionID": "x1",
            "Message": "Authentication failed",
        }
        assert raw.closed_by_peer()


def test_the_client_raises_login_failed_and_asterisk_takes_a_second(ami_server: AmiServer) -> None:
    started = time.monotonic()
    with pytest.raises(AmiLoginFailed, match="Authentication failed"):
        AmiClient(endpoint(ami_server), "wrong").connect()
    assert time.monotonic() - started >= 1.0  # Asterisk sleeps before it answers


def test_actions_before_login_are_permission_denied(ami_server: AmiServer) -> None:
    with RawSession(ami_server) as raw:
        raw.send(("Action", "DBGet"), ("ActionID", "x2"), ("Family", "DND"), ("Key", "200"))
        assert raw.read().get("Message") == "Permission denied"


def test_a_message_without_action_is_refused(ami_server: AmiServer) -> None:
    with RawSession(ami_server) as raw:
        raw.send(("ActionID", "x3"), ("Family", "DND"))
        assert raw.read().as_dict() == {
            "Response": "Error",
            "ActionID": "x3",
            "Message": "Missing action in request",
        }


def test_an_unknown_action_gets_asterisks_words(client: AmiClient) -> None:
    with pytest.raises(AmiRefused) as unknown:
        client.action("Frobnicate")
    assert unknown.value.reason == (
        "Invalid/unknown command: Frobnicate. Use Action: ListCommands to show available commands."
    )


def test_an_action_outside_the_users_write_classes_is_permission_denied(
    ami_server: AmiServer,
) -> None:
    ami_server.users["listener"] = ManagerUser.of("pw", read="call", write="reporting")
    limited = AmiClient(endpoint(ami_server, username="listener"), "pw")
    limited.connect()
    assert limited.action("CoreShowChannels").ok  # reporting is enough to list channels
    with pytest.raises(AmiRefused, match="Permission denied"):
        limited.action("DBPut", {"Family": "DND", "Key": "200", "Val": "YES"})
    limited.close()


def test_login_already_in_use_when_multiple_logins_are_off(ami_server: AmiServer) -> None:
    ami_server.auth_failure_delay = 0.05
    ami_server.users["single"] = ManagerUser.of("pw", "call", "call", allow_multiple_login=False)
    first = AmiClient(endpoint(ami_server, username="single"), "pw")
    first.connect()
    with pytest.raises(AmiLoginFailed, match="Login Already In Use"):
        AmiClient(endpoint(ami_server, username="single"), "pw").connect()
    first.close()


def test_logoff_says_goodbye_and_hangs_up(ami_server: AmiServer) -> None:
    with RawSession(ami_server) as raw:
        raw.send(("Action", "Login"), ("Username", "check"), ("Secret", SECRET), ("Events", "off"))
        assert raw.read().get("Message") == "Authentication accepted"
        raw.send(("Action", "Logoff"))
        assert raw.read().as_dict() == {
            "Response": "Goodbye",
            "Message": "Thanks for all the fish.",
        }
        assert raw.closed_by_peer()


def test_ping_answers_pong_with_a_timestamp(client: AmiClient) -> None:
    answer = client.action("Ping")
    assert answer.get("Ping") == "Pong"
    assert float(answer.get("Timestamp") or "0") > 0


# --- variables, AstDB and presence (the recorded refusals) -------------------------------


def test_setvar_of_a_state_asterisk_does_not_know_is_variable_not_set(client: AmiClient) -> None:
    with pytest.raises(AmiRefused) as refused:
        client.action(
            "Setvar", {"Variable": "PRESENCE_STATE(CustomPresence:200)", "Value": "busy,,Busy"}
        )
    assert refused.value.reason == "Variable not set"


def test_setvar_with_a_comma_in_the_message_and_no_e_is_variable_not_set(
    client: AmiClient,
) -> None:
    with pytest.raises(AmiRefused, match="Variable not set"):
        client.action(
            "Setvar",
            {"Variable": "PRESENCE_STATE(CustomPresence:200)", "Value": "away,,On Call, sorry"},
        )


def test_a_word_with_e_after_a_comma_publishes_base64_garbage_as_recorded(
    ami_server: AmiServer,
) -> None:
    """Recorded: "Lunch" and such a word after it reached watchers as '.\\ufffd\\ufffd'."""
    garbage = [e for e in recorded("ami-presence-events") if e.get("Message") == ".\ufffd\ufffd"]
    assert garbage  # the recording holds it

    async def scenario() -> dict[str, str]:
        conn = await AsyncAmiClient.connect(endpoint(ami_server), SECRET, events="call")
        await conn.action(
            "Setvar",
            {
                "Variable": "PRESENCE_STATE(CustomPresence:200)",
                "Value": "away,,Lunch, then errands",
            },
        )
        item = await conn.next_event(timeout=5)
        await conn.close()
        assert item is not None
        return item[1].as_dict()

    event = run(scenario)
    assert event["Event"] == "PresenceStateChange"
    assert event["Message"] == ".\ufffd\ufffd" == base64_decode("Lunch")


def test_presence_writes_raise_the_recorded_events(ami_server: AmiServer) -> None:
    wanted = [
        (e["Event"], e.get("Presentity") or e.get("Exten"), e["Status"], e["Message"])
        for e in recorded("ami-presence-events")
        if e["Event"].startswith("Presence")
        and e.get("Presentity", "") != "CustomPresence:alice@contoso.test"
        and "\ufffd" not in e["Message"]
    ]
    values = [
        "available,,Available",
        "away,,Away",
        "dnd,,Do Not Disturb",
        "dnd,,Teams Meeting",
        "away,,Busy",
        "away,,On Call",
    ]

    async def scenario() -> list[tuple[str, str | None, str, str]]:
        conn = await AsyncAmiClient.connect(endpoint(ami_server), SECRET, events="call")
        seen = []
        for value in values:
            await conn.action(
                "Setvar", {"Variable": "PRESENCE_STATE(CustomPresence:200)", "Value": value}
            )
        while (item := await conn.next_event(timeout=0.5)) is not None:
            e = item[1].as_dict()
            seen.append(
                (e["Event"], e.get("Presentity") or e.get("Exten"), e["Status"], e["Message"])
            )
        await conn.close()
        return seen

    seen = run(scenario)
    # Asterisk raises the pair from two topics, so their order varies within a pair.
    assert sorted(seen) == sorted(wanted)


def test_presence_state_answers_with_the_message_twice(client: AmiClient) -> None:
    client.action("Setvar", {"Variable": "PRESENCE_STATE(CustomPresence:200)",
                             "Value": "dnd,,Teams Meeting"})  # fmt: skip
    answer = client.action("PresenceState", {"Provider": "CustomPresence:200"})
    assert answer.get("State") == "dnd"
    assert answer.get("PresenceMessage") == "Teams Meeting"
    assert answer.response is not None
    assert answer.response.get_all("Message") == ["Presence State", "Teams Meeting"]


def test_presence_of_a_provider_never_set_is_not_set(client: AmiClient) -> None:
    answer = client.action("PresenceState", {"Provider": "CustomPresence:299"})
    assert (answer.get("State"), answer.get("PresenceMessage")) == ("not_set", None)


def test_astdb_put_get_del_and_their_refusals(client: AmiClient) -> None:
    assert client.action("DBPut", {"Family": "DND", "Key": "200", "Val": "YES"}).message == (
        "Updated database successfully"
    )
    got = client.action("DBGet", {"Family": "DND", "Key": "200"})
    assert [e.as_dict()["Val"] for e in got.events] == ["YES"]
    assert got.complete is not None and got.complete.get("ListItems") == "1"
    assert client.action("DBDel", {"Family": "DND", "Key": "200"}).message == (
        "Key deleted successfully"
    )
    with pytest.raises(AmiRefused, match="Database entry not found"):
        client.action("DBGet", {"Family": "DND", "Key": "200"})
    with pytest.raises(AmiRefused, match="Database entry could not be deleted"):
        client.action("DBDel", {"Family": "DND", "Key": "200"})


def test_custom_device_state_is_stored_and_read_back(client: AmiClient) -> None:
    client.action("Setvar", {"Variable": "DEVICE_STATE(Custom:DND200)", "Value": "BUSY"})
    value = client.action("Getvar", {"Variable": "DEVICE_STATE(Custom:DND200)"}).get("Value")
    assert value == "BUSY"
    with pytest.raises(AmiRefused, match="Variable not set"):
        client.action("Setvar", {"Variable": "DEVICE_STATE(SIP/200)", "Value": "BUSY"})


def test_extension_state_answers_the_hint(client: AmiClient) -> None:
    answer = client.action("ExtensionState", {"Exten": "200", "Context": "internal"})
    assert answer.get("Hint") == "SIP/200&Custom:200,CustomPresence:200"
    assert (answer.get("Status"), answer.get("StatusText")) == ("0", "Idle")


# --- the asyncio client: events, correlation, loss ---------------------------------------


def test_overlapping_actions_each_get_their_own_answer(ami_server: AmiServer) -> None:
    ami_server.db_put("DND", "200", "YES")

    async def scenario() -> list[str | None]:
        conn = await AsyncAmiClient.connect(endpoint(ami_server), SECRET, events="off")
        answers = await asyncio.gather(
            conn.action("DBGet", {"Family": "DND", "Key": "200"}),
            conn.action("Ping"),
            conn.action("ExtensionState", {"Exten": "201", "Context": "internal"}),
        )
        await conn.close()
        return [answers[0].events[0].get("Val"), answers[1].get("Ping"), answers[2].get("Hint")]

    assert run(scenario) == ["YES", "Pong", "SIP/201,CustomPresence:201"]


def test_events_follow_the_login_mask_and_the_events_action(ami_server: AmiServer) -> None:
    newstate = recorded("ami-call-events")[10]
    assert newstate["Event"] == "Newstate"

    async def scenario() -> list[str]:
        conn = await AsyncAmiClient.connect(endpoint(ami_server), SECRET, events="on")
        first = await conn.next_event(timeout=5)  # FullyBooted: the system class is on
        await asyncio.to_thread(ami_server.publish, newstate)
        second = await conn.next_event(timeout=5)
        off = await conn.action("Events", {"EventMask": "off"})
        await asyncio.to_thread(ami_server.publish, newstate)
        third = await conn.next_event(timeout=0.3)
        await conn.close()
        assert first is not None and second is not None and third is None
        return [first[1].event or "", second[1].event or "", off.get("Events") or ""]

    assert run(scenario) == ["FullyBooted", "Newstate", "Off"]


def test_a_dropped_connection_fails_next_event(ami_server: AmiServer) -> None:
    async def scenario() -> None:
        conn = await AsyncAmiClient.connect(endpoint(ami_server), SECRET, events="call")
        await asyncio.to_thread(ami_server.drop_connections)
        with pytest.raises(AmiConnectionError):
            await conn.next_event(timeout=5)
        with pytest.raises(AmiConnectionError):
            await conn.action("Ping")
        await conn.close()

    run(scenario)


def test_an_unreachable_asterisk_is_a_connection_error(ami_server: AmiServer) -> None:
    ami_server.go_down()
    with pytest.raises(AmiConnectionError):
        AmiClient(endpoint(ami_server), SECRET).connect()
    with pytest.raises(AmiConnectionError):
        run(lambda: AsyncAmiClient.connect(endpoint(ami_server), SECRET))


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    files = tls.generate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_path, files.key_path)
    with AmiServer(ssl_context=context) as server:
        secure = endpoint(server, tls=True, tls_ca_file=str(files.ca_path))
        blocking = AmiClient(secure, SECRET)
        blocking.connect()
        assert blocking.action("Ping").get("Ping") == "Pong"
        blocking.close()

        async def scenario() -> str | None:
            conn = await AsyncAmiClient.connect(secure, SECRET, events="off")
            answer = await conn.action("Ping")
            await conn.close()
            return answer.get("Ping")

        assert run(scenario) == "Pong"
        with pytest.raises(AmiConnectionError):
            AmiClient(endpoint(server, tls=True), SECRET).connect()  # untrusted certificate
