"""A faithful Asterisk Manager Interface server for tests, on a free loopback port.

Written from what a real Asterisk 20 (chan_sip) sent, recorded in tests/asterisk/, and from
the answers Asterisk 20's manager, AstDB, PRESENCE_STATE and DEVICE_STATE code gives (read in
its source, branch 20): the banner, Login and its refusals, Events,
ActionID correlation, list actions ending in an `EventList: Complete` event, AstDB, Setvar of
PRESENCE_STATE/DEVICE_STATE with Asterisk's own validation (an unknown state or a bad fourth
field is "Variable not set"; an `e` in it base64-decodes the message as Asterisk does),
PresenceState, ExtensionState, CoreShowChannels, Ping, Logoff and per-action write classes.

Events are what tests replay (the recorded ones), plus those Asterisk raises for a write
(PresenceStateChange/PresenceStatus, DeviceStateChange). Replayed channel events keep a
channel table, so CoreShowChannels answers like Asterisk does mid-call. Not modelled: hint
aggregation (ExtensionState answers the last replayed ExtensionStatus), VarSet events, MD5
challenge login, ACLs, event filters, the authentication timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

RECORDINGS = Path(__file__).parent / "asterisk"
AMI_VERSION = "9.0.0"  # what Asterisk 20 announces
PERMS = (
    "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
    "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security",
    "message",
)  # fmt: skip
MAX_LINE = 1024  # Asterisk reads at most 1024 bytes per request line
PRESENCE_STATES = ("not_set", "unavailable", "available", "away", "xa", "chat", "dnd")
PRESENCE_ORDER = {"": 0, "not_set": 1, "available": 2, "unavailable": 3, "chat": 4,
                  "away": 5, "xa": 6, "dnd": 7}  # fmt: skip
DEVICE_STATES = ("NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING",
                 "RINGINUSE", "ONHOLD")  # fmt: skip
CHANNEL_FIELDS = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten",
    "Priority", "Uniqueid", "Linkedid",
)  # fmt: skip
# Write classes an action needs (any one of them); empty: every session may use it.
AUTHORITY: dict[str, tuple[str, ...]] = {
    "login": (), "logoff": (), "ping": (), "events": (), "challenge": (),
    "setvar": ("call",), "getvar": ("call", "reporting"),
    "dbput": ("system",), "dbdel": ("system",), "dbget": ("system", "reporting"),
    "coreshowchannels": ("system", "reporting"),
    "presencestate": ("call", "reporting"), "extensionstate": ("call", "reporting"),
}  # fmt: skip
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TRUE = {"yes", "true", "y", "t", "1", "on"}
_FALSE = {"no", "false", "n", "f", "0", "off"}
T = TypeVar("T")
Headers = list[tuple[str, str]]


def recorded(name: str) -> list[dict[str, str]]:
    """A recording, one dict per AMI event in wire order, without the recorder's `_t`."""
    path = RECORDINGS / f"{name}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("_")} for line in lines]


def recorded_call() -> list[dict[str, str]]:
    """The recorded call 200 -> 201: every event from the first Newchannel to the last Hangup."""
    events = recorded("ami-call-events")
    kinds = [e["Event"] for e in events]
    first = kinds.index("Newchannel")
    last = len(kinds) - 1 - kinds[::-1].index("Hangup")
    return events[first : last + 1]


def renumbered(events: Iterable[Mapping[str, str]], tag: str) -> list[dict[str, str]]:
    """The same call again with other channel ids, so replays can overlap."""
    out = []
    for event in events:
        copy = dict(event)
        for key, value in event.items():
            is_id = key.endswith(("Uniqueid", "Linkedid")) and "Bridge" not in key
            if is_id or (key.endswith("Channel") and "-" in value):
                copy[key] = f"{value}{tag}"
        out.append(copy)
    return out


def base64_decode(text: str, limit: int = 255) -> str:
    """ast_base64decode: stops at '=', takes any other byte as 63, keeps up to a NUL."""
    out = bytearray()
    acc = bits = 0
    for ch in text:
        if ch == "=" or len(out) >= limit:
            break
        index = _B64.find(ch)
        acc = (acc << 6) | (index if index >= 0 else 63)
        bits += 6
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    raw = bytes(out).split(b"\0", 1)[0]
    return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ManagerUser:
    secret: str
    read: frozenset[str]
    write: frozenset[str]
    allow_multiple_login: bool = True

    @classmethod
    def of(
        cls, secret: str, read: str, write: str, allow_multiple_login: bool = True
    ) -> ManagerUser:
        return cls(secret, _perms(read), _perms(write), allow_multiple_login)


def _perms(text: str) -> frozenset[str]:
    names = {p.strip().lower() for p in text.split(",") if p.strip()}
    return frozenset(PERMS) if "all" in names else frozenset(names & set(PERMS))


# The manager user of the recorded system.
RECORDED_USER = ManagerUser.of(
    "checksecret",
    read="system,call,log,verbose,agent,user,config,dtmf,reporting,cdr,dialplan",
    write="system,call,agent,user,config,command,reporting,originate",
)
# The hints of the recorded system (context `internal`).
RECORDED_HINTS = {
    ("internal", "200"): "SIP/200&Custom:200,CustomPresence:200",
    ("internal", "201"): "SIP/201,CustomPresence:201",
}


@dataclass
class _Channel:
    fields: dict[str, str]
    created: float
    application: str = ""
    data: str = ""
    bridge: str = ""


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    username: str = ""
    authenticated: bool = False
    send_events: frozenset[str] = frozenset()

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


@dataclass(frozen=True)
class ReceivedAction:
    username: str
    action: str
    headers: dict[str, str]


@dataclass
class _State:
    db: dict[tuple[str, str], str] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)
    channels: dict[str, _Channel] = field(default_factory=dict)
    channel_vars: dict[str, dict[str, str]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    presence: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # stasis cache
    hint_presence: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    exten_status: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    actions: list[ReceivedAction] = field(default_factory=list)
    logins: int = 0


def _lines(*pairs: tuple[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in pairs)


def _header(m: Headers, name: str, skip_empty: bool = False) -> str:
    """astman_get_header: the first `Name:` line, leading blanks of the value skipped."""
    for key, value in m:
        if key.lower() == name.lower():
            if skip_empty and not value:
                continue
            return value
    return ""


def _reply(
    m: Headers,
    response: str,
    message: str | None = None,
    listflag: str | None = None,
    more: str | None = None,
) -> bytes:
    """astman_send_response_full; `more` continues the message (astman_start_ack)."""
    text = f"Response: {response}\r\n"
    if action_id := _header(m, "ActionID"):
        text += f"ActionID: {action_id}\r\n"
    if listflag:
        text += f"EventList: {listflag}\r\n"
    if message is not None:
        text += f"Message: {message}\r\n"
    return (text + (more or "") + "\r\n").encode("utf-8")


def _list_complete(m: Headers, event: str, count: int) -> bytes:
    text = f"Event: {event}\r\n"
    if action_id := _header(m, "ActionID"):
        text += f"ActionID: {action_id}\r\n"
    return (text + f"EventList: Complete\r\nListItems: {count}\r\n\r\n").encode("utf-8")


def _event_bytes(event: Mapping[str, str]) -> bytes:
    return (_lines(*event.items()) + "\r\n").encode("utf-8")


def _mask(text: str) -> frozenset[str] | None:
    """strings_to_mask: on/off words, a comma list of classes; None when empty."""
    word = text.strip().lower()
    if not word:
        return None
    if word.isdigit():
        return frozenset(p for i, p in enumerate(PERMS) if int(word) & (1 << i))
    if word in _FALSE:
        return frozenset()
    if word in _TRUE:
        return frozenset(PERMS)
    return _perms(word)


class AmiServer:
    """One AMI server on a loopback port, run in a thread; use it as a context manager."""

    def __init__(
        self,
        users: Mapping[str, ManagerUser] | None = None,
        *,
        hints: Mapping[tuple[str, str], str] | None = None,
        functions: Iterable[str] = ("PRESENCE_STATE", "DEVICE_STATE"),
        auth_failure_delay: float = 1.0,  # Asterisk sleeps 1 s before "Authentication failed"
        ssl_context: Any = None,
    ) -> None:
        self._defaults = (
            dict(users if users is not None else {"check": RECORDED_USER}),
            dict(hints if hints is not None else RECORDED_HINTS),
            frozenset(f.upper() for f in functions),
            auth_failure_delay,
        )
        self._configure()
        self._ssl = ssl_context
        self.host = "127.0.0.1"
        self.port = 0
        self._state = _State()
        self._sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started_at = time.time()

    def _configure(self) -> None:
        """Tests may change these between connections; reset() puts them back."""
        users, hints, functions, delay = self._defaults
        self.users: dict[str, ManagerUser] = dict(users)
        self.hints: dict[tuple[str, str], str] = dict(hints)
        self.functions: set[str] = set(functions)
        self.auth_failure_delay = delay

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> AmiServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(_quiet_tls_refusals)
            self._loop = loop
            loop.run_until_complete(self._listen())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="ami-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("AMI server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._session, self.host, self.port, ssl=self._ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        await self._go_down()

    def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(_wrap(fn), self._loop).result(10)

    # --- control API (any thread) --------------------------------------------------------

    def reset(self) -> None:
        """Forget state and drop clients; the listening port stays."""

        async def go() -> None:
            self._drop()
            self._state = _State()
            self._configure()
            if self._server is None:
                await self._listen()

        self._call(go)

    def publish(self, *events: Mapping[str, str]) -> None:
        """Raise events as Asterisk would: the channel table follows, sessions get them."""

        async def go() -> None:
            for event in events:
                self._publish(event)
            await self._drain()

        self._call(go)

    def replay(self, events: Iterable[Mapping[str, str]]) -> None:
        self.publish(*list(events))

    def drop_connections(self) -> None:
        """Cut every client off at once, as a crash or a network failure does."""

        async def go() -> None:
            self._drop()

        self._call(go)

    def go_down(self) -> None:
        """Stop listening and cut clients off (Asterisk stopped); state survives."""
        self._call(self._go_down)

    def come_back(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen)

    def db(self) -> dict[tuple[str, str], str]:
        async def go() -> dict[tuple[str, str], str]:
            return dict(self._state.db)

        return self._call(go)

    def db_put(self, family: str, key: str, value: str) -> None:
        async def go() -> None:
            self._state.db[(family, key)] = value

        self._call(go)

    def channels(self) -> list[dict[str, str]]:
        async def go() -> list[dict[str, str]]:
            return [dict(c.fields) for c in self._state.channels.values()]

        return self._call(go)

    def actions(self) -> list[ReceivedAction]:
        async def go() -> list[ReceivedAction]:
            return list(self._state.actions)

        return self._call(go)

    def sessions(self) -> int:
        """Logged-in sessions right now."""

        async def go() -> int:
            return sum(1 for s in self._sessions if s.authenticated)

        return self._call(go)

    def logins(self) -> int:
        async def go() -> int:
            return self._state.logins

        return self._call(go)

    def wait_for(self, check: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("AMI server: condition not met in time")
            time.sleep(0.01)

    # --- sessions ------------------------------------------------------------------------

    def _drop(self) -> None:
        for session in list(self._sessions):
            transport = session.writer.transport
            transport.abort()
        self._sessions.clear()

    async def _go_down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._drop()
            await self._server.wait_closed()
            self._server = None
        self._drop()

    async def _drain(self) -> None:
        for session in list(self._sessions):
            with contextlib.suppress(ConnectionError, OSError):
                await session.writer.drain()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self._sessions.add(session)
        session.send(f"Asterisk Call Manager/{AMI_VERSION}\r\n".encode())
        message: Headers = []
        too_long = False
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError:
                    await reader.read(MAX_LINE * 64)
                    too_long = True
                    continue
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line = raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")
                if len(line) > MAX_LINE:
                    too_long = True
                    continue
                if line:
                    key, _, value = line.partition(":")
                    message.append((key, value.lstrip(" \t")))
                    continue
                if too_long:
                    session.send(_reply(message, "Error", "Failed to parse message: line too long"))
                    message, too_long = [], False
                    continue
                if not message:
                    continue
                keep = await self._process(session, message)
                message = []
                await writer.drain()
                if not keep:
                    return
        finally:
            self._sessions.discard(session)
            writer.close()

    async def _process(self, session: _Session, m: Headers) -> bool:
        """process_message: False hangs the session up."""
        action = _header(m, "Action", skip_empty=True)
        if not action:
            session.send(_reply(m, "Error", "Missing action in request"))
            return True
        name = action.lower()
        self._state.actions.append(
            ReceivedAction(session.username, action, {k: v for k, v in m if k.lower() != "secret"})
        )
        if not session.authenticated and name not in ("login", "logoff", "challenge"):
            session.send(_reply(m, "Error", "Permission denied"))
            return True
        if name == "login":
            return await self._login(session, m)
        if name not in AUTHORITY:
            session.send(
                _reply(
                    m,
                    "Error",
                    f"Invalid/unknown command: {action}. "
                    "Use Action: ListCommands to show available commands.",
                )
            )
            return True
        needs = AUTHORITY[name]
        user = self.users.get(session.username)
        if needs and not (user and set(needs) & user.write):
            session.send(_reply(m, "Error", "Permission denied"))
            return True
        handler = getattr(self, f"_action_{name}")
        result: bool = handler(session, m)
        return result

    async def _login(self, session: _Session, m: Headers) -> bool:
        if session.authenticated:
            session.send(_reply(m, "Success", "Already authenticated"))
            return True
        username = _header(m, "Username")
        user = self.users.get(username)
        if (
            user is not None
            and not user.allow_multiple_login
            and any(s.authenticated and s.username == username for s in self._sessions)
        ):
            await asyncio.sleep(self.auth_failure_delay)
            session.send(_reply(m, "Error", "Login Already In Use"))
            return False
        if not username or user is None or _header(m, "Secret") != user.secret:
            await asyncio.sleep(self.auth_failure_delay)
            session.send(_reply(m, "Error", "Authentication failed"))
            return False
        session.username, session.authenticated = username, True
        requested = _mask(_header(m, "Events"))
        session.send_events = user.read if requested is None else user.read & requested
        self._state.logins += 1
        session.send(_reply(m, "Success", "Authentication accepted"))
        if "system" in session.send_events:
            uptime = int(time.time() - self._started_at)
            session.send(_event_bytes({
                "Event": "FullyBooted", "Privilege": "system,all", "Uptime": str(uptime),
                "LastReload": str(uptime), "Status": "Fully Booted",
            }))  # fmt: skip
        return True

    # --- actions -------------------------------------------------------------------------

    def _action_logoff(self, session: _Session, m: Headers) -> bool:
        session.send(_reply(m, "Goodbye", "Thanks for all the fish."))
        return False

    def _action_challenge(self, session: _Session, m: Headers) -> bool:
        session.send(_reply(m, "Error", "Must specify AuthType"))  # MD5 is not modelled
        return True

    def _action_ping(self, session: _Session, m: Headers) -> bool:
        now = time.time()
        stamp = f"{int(now)}.{int((now % 1) * 1_000_000):06d}"
        session.send(_reply(m, "Success", more=_lines(("Ping", "Pong"), ("Timestamp", stamp))))
        return True

    def _action_events(self, session: _Session, m: Headers) -> bool:
        requested = _mask(_header(m, "EventMask"))
        if requested is None:
            session.send(_reply(m, "Error", "Invalid event mask"))
            return True
        user = self.users[session.username]
        session.send_events = user.read & requested
        word = "On" if requested else "Off"
        session.send(_reply(m, "Success", more=_lines(("Events", word))))
        return True

    def _action_dbput(self, session: _Session, m: Headers) -> bool:
        family, key = _header(m, "Family"), _header(m, "Key")
        if not family:
            session.send(_reply(m, "Error", "No family specified"))
        elif not key:
            session.send(_reply(m, "Error", "No key specified"))
        else:
            self._state.db[(family, key)] = _header(m, "Val")
            session.send(_reply(m, "Success", "Updated database successfully"))
        return True

    def _action_dbget(self, session: _Session, m: Headers) -> bool:
        family, key = _header(m, "Family"), _header(m, "Key")
        if not family:
            session.send(_reply(m, "Error", "No family specified."))
            return True
        if not key:
            session.send(_reply(m, "Error", "No key specified."))
            return True
        value = self._state.db.get((family, key))
        if value is None:
            session.send(_reply(m, "Error", "Database entry not found"))
            return True
        session.send(_reply(m, "Success", "Result will follow", listflag="start"))
        event = _lines(("Event", "DBGetResponse"), ("Family", family), ("Key", key), ("Val", value))
        if action_id := _header(m, "ActionID"):
            event += _lines(("ActionID", action_id))  # after Val, where Asterisk writes it
        session.send((event + "\r\n").encode("utf-8"))
        session.send(_list_complete(m, "DBGetComplete", 1))
        return True

    def _action_dbdel(self, session: _Session, m: Headers) -> bool:
        family, key = _header(m, "Family"), _header(m, "Key")
        if not family:
            session.send(_reply(m, "Error", "No family specified."))
        elif not key:
            session.send(_reply(m, "Error", "No key specified."))
        elif self._state.db.pop((family, key), None) is None:
            session.send(_reply(m, "Error", "Database entry could not be deleted"))
        else:
            session.send(_reply(m, "Success", "Key deleted successfully"))
        return True

    def _action_setvar(self, session: _Session, m: Headers) -> bool:
        variable, value = _header(m, "Variable"), _header(m, "Value")
        channel = _header(m, "Channel")
        if not variable:
            session.send(_reply(m, "Error", "No variable specified"))
            return True
        if channel and not self._channel_named(channel):
            session.send(_reply(m, "Error", "No such channel"))
            return True
        if variable.endswith(")"):
            ok = self._write_function(variable, value)
        else:
            target = self._state.channel_vars.setdefault(channel, {}) if channel else None
            (target if target is not None else self._state.globals)[variable] = value
            ok = True
        if ok:
            session.send(_reply(m, "Success", "Variable Set"))
        else:
            session.send(_reply(m, "Error", "Variable not set"))
        return True

    def _action_getvar(self, session: _Session, m: Headers) -> bool:
        variable, channel = _header(m, "Variable"), _header(m, "Channel")
        if not variable:
            session.send(_reply(m, "Error", "No variable specified"))
            return True
        if channel and not self._channel_named(channel):
            session.send(_reply(m, "Error", "No such channel"))
            return True
        if variable.endswith(")"):
            value = self._read_function(variable)
        elif channel:
            value = self._state.channel_vars.get(channel, {}).get(variable, "")
        else:
            value = self._state.globals.get(variable, "")
        session.send(_reply(m, "Success", more=_lines(("Variable", variable), ("Value", value))))
        return True

    def _action_presencestate(self, session: _Session, m: Headers) -> bool:
        provider = _header(m, "Provider")
        if not provider:
            session.send(_reply(m, "Error", "No provider specified"))
            return True
        state, subtype, message = self._presence(provider)
        if not state:
            session.send(
                _reply(m, "Error", f"Invalid provider {provider} or provider in invalid state")
            )
            return True
        more = _lines(("Message", "Presence State"), ("State", state))
        if subtype:
            more += _lines(("Subtype", subtype))
        if message:
            # The second Message: is Asterisk's deprecated duplicate of PresenceMessage.
            more += _lines(("Message", message), ("PresenceMessage", message))
        session.send(_reply(m, "Success", more=more))
        return True

    def _action_extensionstate(self, session: _Session, m: Headers) -> bool:
        exten = _header(m, "Exten")
        context = _header(m, "Context") or "default"
        if not exten:
            session.send(_reply(m, "Error", "Extension not specified"))
            return True
        hint = self.hints.get((context, exten), "")
        status, text = ("-1", "Unknown") if not hint else self._state.exten_status.get(
            (context, exten), ("0", "Idle"))  # fmt: skip
        more = _lines(("Message", "Extension Status"), ("Exten", exten), ("Context", context),
                      ("Hint", hint), ("Status", status), ("StatusText", text))  # fmt: skip
        session.send(_reply(m, "Success", more=more))
        return True

    def _action_coreshowchannels(self, session: _Session, m: Headers) -> bool:
        session.send(_reply(m, "Success", "Channels will follow", listflag="start"))
        action_id = _header(m, "ActionID")
        now = time.time()
        for channel in self._state.channels.values():
            seconds = int(now - channel.created)
            duration = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
            text = "Event: CoreShowChannel\r\n"
            if action_id:
                text += f"ActionID: {action_id}\r\n"
            text += _lines(*((k, channel.fields.get(k, "")) for k in CHANNEL_FIELDS))
            text += _lines(("Application", channel.application), ("ApplicationData", channel.data),
                           ("Duration", duration), ("BridgeId", channel.bridge))  # fmt: skip
            session.send((text + "\r\n").encode("utf-8"))
        session.send(_list_complete(m, "CoreShowChannelsComplete", len(self._state.channels)))
        return True

    # --- dialplan functions ---------------------------------------------------------------

    def _write_function(self, variable: str, value: str) -> bool:
        """ast_func_write; False is what Setvar reports as "Variable not set"."""
        name, _, args = variable[:-1].partition("(")
        name = name.upper()
        if name not in self.functions:
            return False  # "Function ... not registered"
        if name == "PRESENCE_STATE":
            return self._write_presence(args, value)
        if name == "DEVICE_STATE":
            return self._write_device(args, value)
        return False

    def _write_presence(self, provider: str, value: str) -> bool:
        label, _, name = provider.partition(":")
        if label.lower() != "custompresence" or not name:
            return False
        parsed = _parse_presence(value)
        if parsed is None:
            return False
        state, subtype, message = parsed
        self._state.db[("CustomPresence", name)] = value
        self._state.presence[provider] = (state, subtype, message)
        self._publish({"Event": "PresenceStateChange", "Privilege": "call,all",
                       "Presentity": provider, "Status": state, "Subtype": subtype,
                       "Message": message})  # fmt: skip
        for (context, exten), hint in self.hints.items():
            sources = hint.partition(",")[2]
            if provider.lower() not in sources.lower():
                continue
            shown = self._presence(sources)
            if self._state.hint_presence.get((context, exten), ("not_set", "", "")) == shown:
                continue  # Asterisk: no change, no PresenceStatus
            self._state.hint_presence[(context, exten)] = shown
            self._publish({"Event": "PresenceStatus", "Privilege": "call,all", "Exten": exten,
                           "Context": context, "Hint": hint, "Status": shown[0],
                           "Subtype": shown[1], "Message": shown[2]})  # fmt: skip
        return True

    def _write_device(self, device: str, value: str) -> bool:
        label, _, name = device.partition(":")
        if label.lower() != "custom" or not name:
            return False
        state = value.upper()
        if state not in DEVICE_STATES:
            return False
        self._state.db[("CustomDevstate", name)] = value
        self._publish({"Event": "DeviceStateChange", "Privilege": "call,all",
                       "Device": f"Custom:{name}", "State": state})  # fmt: skip
        return True

    def _read_function(self, variable: str) -> str:
        name, _, args = variable[:-1].partition("(")
        name = name.upper()
        if name not in self.functions:
            return ""
        if name == "DEVICE_STATE":
            label, _, custom = args.partition(":")
            if label.lower() == "custom":
                stored = self._state.db.get(("CustomDevstate", custom), "").upper()
                return stored if stored in DEVICE_STATES else "UNKNOWN"
            return self._state.devices.get(args, "UNKNOWN")
        if name == "PRESENCE_STATE":
            provider, _, field_name = args.partition(",")
            state, subtype, message = self._presence(provider)
            wanted = field_name.partition(",")[0].lower()
            return {"value": state, "subtype": subtype, "message": message}.get(wanted, "")
        return ""

    def _presence(self, providers: str) -> tuple[str, str, str]:
        """ast_presence_state: the strongest of '&'-joined providers; state "" when invalid."""
        best = ("", "", "")
        for provider in providers.split("&"):
            found = self._state.presence.get(provider)
            if found is None:
                label, _, name = provider.partition(":")
                if label.lower() != "custompresence":
                    continue
                stored = self._state.db.get(("CustomPresence", name))
                found = ("not_set", "", "") if stored is None else _parse_presence(stored)
                if found is None:
                    continue
            if PRESENCE_ORDER[found[0]] > PRESENCE_ORDER[best[0]]:
                best = found
        return best

    # --- the event side ------------------------------------------------------------------

    def _channel_named(self, name: str) -> bool:
        return any(c.fields.get("Channel") == name for c in self._state.channels.values())

    def _publish(self, event: Mapping[str, str]) -> None:
        self._observe(event)
        category = event.get("Privilege", "").partition(",")[0].lower()
        data = _event_bytes(event)
        for session in self._sessions:
            if session.authenticated and category in session.send_events:
                session.send(data)

    def _observe(self, event: Mapping[str, str]) -> None:
        kind, uniqueid = event.get("Event", ""), event.get("Uniqueid", "")
        state = self._state
        if kind == "Newchannel" and uniqueid:
            state.channels[uniqueid] = _Channel({}, time.time())
        channel = state.channels.get(uniqueid)
        if channel is not None:
            channel.fields.update({k: v for k, v in event.items() if k in CHANNEL_FIELDS})
            if kind == "Newexten":
                channel.application = event.get("Application", "")
                channel.data = event.get("AppData", "")
            elif kind == "BridgeEnter":
                channel.bridge = event.get("BridgeUniqueid", "")
            elif kind == "BridgeLeave":
                channel.bridge = ""
            elif kind == "Hangup":
                del state.channels[uniqueid]
        if kind == "DeviceStateChange":
            state.devices[event.get("Device", "")] = event.get("State", "")
        elif kind == "ExtensionStatus":
            key = (event.get("Context", ""), event.get("Exten", ""))
            state.exten_status[key] = (event.get("Status", ""), event.get("StatusText", ""))
        elif kind == "PresenceStateChange":
            state.presence[event.get("Presentity", "")] = (
                event.get("Status", ""),
                event.get("Subtype", ""),
                event.get("Message", ""),
            )


def _parse_presence(value: str) -> tuple[str, str, str] | None:
    """How PRESENCE_STATE parses a value, then the 'e' option's base64 decoding."""
    parts = value.split(",", 3)  # strsep four times: the rest stays in the options
    state = parts[0].lower()
    if state not in PRESENCE_STATES:
        return None
    subtype = parts[1] if len(parts) > 1 else ""
    message = parts[2] if len(parts) > 2 else ""
    options = parts[3] if len(parts) > 3 else ""
    if options and "e" not in options:
        return None  # "Invalid options"
    if "e" in options:
        return state, base64_decode(subtype), base64_decode(message)
    return state, subtype, message


def _quiet_tls_refusals(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A client that refuses our certificate is a test passing, not a server error."""
    if not isinstance(context.get("exception"), ssl.SSLError):
        loop.default_exception_handler(context)


async def _wrap(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[AmiServer]:
    with AmiServer(**kwargs) as server:
        yield server
