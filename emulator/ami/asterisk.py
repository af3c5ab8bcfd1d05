"""The Asterisk behind the test AMI port: its state and what each action does to it.

Written from what a real Asterisk 20 (chan_sip) sent, recorded in emulator/ami/recordings/, and from
the answers Asterisk 20's manager, AstDB, PRESENCE_STATE and DEVICE_STATE code gives (read in
its source): Login and its refusals, Events, per-action write classes, list answers ending in
an `EventList: Complete` event, AstDB, Setvar of PRESENCE_STATE/DEVICE_STATE with Asterisk's
own validation (an unknown state or a bad fourth field is "Variable not set"; an `e` in it
base64-decodes the message), PresenceState, ExtensionState, CoreShowChannels, Ping, Logoff.

Events are what tests replay (the recorded ones) plus those Asterisk raises for a write
(PresenceStateChange/PresenceStatus, DeviceStateChange); replayed channel events keep a
channel table, so CoreShowChannels answers like Asterisk does mid-call. Not modelled: hint
aggregation (ExtensionState answers the last replayed ExtensionStatus), VarSet events, MD5
challenge login, ACLs, event filters, the authentication timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from emulator.ami.rules import (
    AUTHORITY,
    CHANNEL_FIELDS,
    DEVICE_STATES,
    PRESENCE_ORDER,
    Headers,
    ManagerUser,
    event_bytes,
    event_mask,
    header,
    lines,
    list_complete,
    parse_presence,
    reply,
)


@dataclass
class Channel:
    fields: dict[str, str]
    created: float
    application: str = ""
    data: str = ""
    bridge: str = ""


@dataclass(eq=False)
class Session:
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
class State:
    db: dict[tuple[str, str], str] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    channel_vars: dict[str, dict[str, str]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    presence: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # stasis cache
    hint_presence: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    exten_status: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    actions: list[ReceivedAction] = field(default_factory=list)
    logins: int = 0


class Asterisk:
    """Configuration, state and sessions of one emulated Asterisk; runs on the server's loop."""

    def __init__(
        self,
        users: Mapping[str, ManagerUser],
        hints: Mapping[tuple[str, str], str],
        functions: Iterable[str],
        auth_failure_delay: float,
    ) -> None:
        self.users = dict(users)
        self.hints = dict(hints)
        self.functions = {f.upper() for f in functions}
        self.auth_failure_delay = auth_failure_delay
        self.state = State()
        self.sessions: set[Session] = set()
        self.started_at = time.time()

    async def process(self, session: Session, m: Headers) -> bool:
        """process_message: False hangs the session up."""
        action = header(m, "Action", skip_empty=True)
        if not action:
            session.send(reply(m, "Error", "Missing action in request"))
            return True
        name = action.lower()
        self.state.actions.append(
            ReceivedAction(session.username, action, {k: v for k, v in m if k.lower() != "secret"})
        )
        if not session.authenticated and name not in ("login", "logoff", "challenge"):
            session.send(reply(m, "Error", "Permission denied"))
            return True
        if name == "login":
            return await self._login(session, m)
        if name not in AUTHORITY:
            session.send(
                reply(
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
            session.send(reply(m, "Error", "Permission denied"))
            return True
        handler = getattr(self, f"_action_{name}")
        result: bool = handler(session, m)
        return result

    async def _login(self, session: Session, m: Headers) -> bool:
        if session.authenticated:
            session.send(reply(m, "Success", "Already authenticated"))
            return True
        username = header(m, "Username")
        user = self.users.get(username)
        if (
            user is not None
            and not user.allow_multiple_login
            and any(s.authenticated and s.username == username for s in self.sessions)
        ):
            await asyncio.sleep(self.auth_failure_delay)
            session.send(reply(m, "Error", "Login Already In Use"))
            return False
        if not username or user is None or header(m, "Secret") != user.secret:
            await asyncio.sleep(self.auth_failure_delay)
            session.send(reply(m, "Error", "Authentication failed"))
            return False
        session.username, session.authenticated = username, True
        requested = event_mask(header(m, "Events"))
        session.send_events = user.read if requested is None else user.read & requested
        self.state.logins += 1
        session.send(reply(m, "Success", "Authentication accepted"))
        if "system" in session.send_events:
            uptime = int(time.time() - self.started_at)
            session.send(event_bytes({
                "Event": "FullyBooted", "Privilege": "system,all", "Uptime": str(uptime),
                "LastReload": str(uptime), "Status": "Fully Booted",
            }))  # fmt: skip
        return True

    # --- actions -------------------------------------------------------------------------

    def _action_logoff(self, session: Session, m: Headers) -> bool:
        session.send(reply(m, "Goodbye", "Thanks for all the fish."))
        return False

    def _action_challenge(self, session: Session, m: Headers) -> bool:
        session.send(reply(m, "Error", "Must specify AuthType"))  # MD5 is not modelled
        return True

    def _action_ping(self, session: Session, m: Headers) -> bool:
        now = time.time()
        stamp = f"{int(now)}.{int((now % 1) * 1_000_000):06d}"
        session.send(reply(m, "Success", more=lines(("Ping", "Pong"), ("Timestamp", stamp))))
        return True

    def _action_events(self, session: Session, m: Headers) -> bool:
        requested = event_mask(header(m, "EventMask"))
        if requested is None:
            session.send(reply(m, "Error", "Invalid event mask"))
            return True
        user = self.users[session.username]
        session.send_events = user.read & requested
        word = "On" if requested else "Off"
        session.send(reply(m, "Success", more=lines(("Events", word))))
        return True

    def _action_dbput(self, session: Session, m: Headers) -> bool:
        family, key = header(m, "Family"), header(m, "Key")
        if not family:
            session.send(reply(m, "Error", "No family specified"))
        elif not key:
            session.send(reply(m, "Error", "No key specified"))
        else:
            self.state.db[(family, key)] = header(m, "Val")
            session.send(reply(m, "Success", "Updated database successfully"))
        return True

    def _action_dbget(self, session: Session, m: Headers) -> bool:
        family, key = header(m, "Family"), header(m, "Key")
        if not family:
            session.send(reply(m, "Error", "No family specified."))
            return True
        if not key:
            session.send(reply(m, "Error", "No key specified."))
            return True
        value = self.state.db.get((family, key))
        if value is None:
            session.send(reply(m, "Error", "Database entry not found"))
            return True
        session.send(reply(m, "Success", "Result will follow", listflag="start"))
        event = lines(("Event", "DBGetResponse"), ("Family", family), ("Key", key), ("Val", value))
        if action_id := header(m, "ActionID"):
            event += lines(("ActionID", action_id))  # after Val, where Asterisk writes it
        session.send((event + "\r\n").encode("utf-8"))
        session.send(list_complete(m, "DBGetComplete", 1))
        return True

    def _action_dbdel(self, session: Session, m: Headers) -> bool:
        family, key = header(m, "Family"), header(m, "Key")
        if not family:
            session.send(reply(m, "Error", "No family specified."))
        elif not key:
            session.send(reply(m, "Error", "No key specified."))
        elif self.state.db.pop((family, key), None) is None:
            session.send(reply(m, "Error", "Database entry could not be deleted"))
        else:
            session.send(reply(m, "Success", "Key deleted successfully"))
        return True

    def _action_setvar(self, session: Session, m: Headers) -> bool:
        variable, value = header(m, "Variable"), header(m, "Value")
        channel = header(m, "Channel")
        if not variable:
            session.send(reply(m, "Error", "No variable specified"))
            return True
        if channel and not self._channel_named(channel):
            session.send(reply(m, "Error", "No such channel"))
            return True
        if variable.endswith(")"):
            ok = self._write_function(variable, value)
        else:
            target = self.state.channel_vars.setdefault(channel, {}) if channel else None
            (target if target is not None else self.state.globals)[variable] = value
            ok = True
        if ok:
            session.send(reply(m, "Success", "Variable Set"))
        else:
            session.send(reply(m, "Error", "Variable not set"))
        return True

    def _action_getvar(self, session: Session, m: Headers) -> bool:
        variable, channel = header(m, "Variable"), header(m, "Channel")
        if not variable:
            session.send(reply(m, "Error", "No variable specified"))
            return True
        if channel and not self._channel_named(channel):
            session.send(reply(m, "Error", "No such channel"))
            return True
        if variable.endswith(")"):
            value = self._read_function(variable)
        elif channel:
            value = self.state.channel_vars.get(channel, {}).get(variable, "")
        else:
            value = self.state.globals.get(variable, "")
        session.send(reply(m, "Success", more=lines(("Variable", variable), ("Value", value))))
        return True

    def _action_presencestate(self, session: Session, m: Headers) -> bool:
        provider = header(m, "Provider")
        if not provider:
            session.send(reply(m, "Error", "No provider specified"))
            return True
        state, subtype, message = self._presence(provider)
        if not state:
            session.send(
                reply(m, "Error", f"Invalid provider {provider} or provider in invalid state")
            )
            return True
        more = lines(("Message", "Presence State"), ("State", state))
        if subtype:
            more += lines(("Subtype", subtype))
        if message:
            # The second Message: is Asterisk's deprecated duplicate of PresenceMessage.
            more += lines(("Message", message), ("PresenceMessage", message))
        session.send(reply(m, "Success", more=more))
        return True

    def _action_extensionstate(self, session: Session, m: Headers) -> bool:
        exten = header(m, "Exten")
        context = header(m, "Context") or "default"
        if not exten:
            session.send(reply(m, "Error", "Extension not specified"))
            return True
        hint = self.hints.get((context, exten), "")
        status, text = ("-1", "Unknown") if not hint else self.state.exten_status.get(
            (context, exten), ("0", "Idle"))  # fmt: skip
        more = lines(("Message", "Extension Status"), ("Exten", exten), ("Context", context),
                      ("Hint", hint), ("Status", status), ("StatusText", text))  # fmt: skip
        session.send(reply(m, "Success", more=more))
        return True

    def _action_coreshowchannels(self, session: Session, m: Headers) -> bool:
        session.send(reply(m, "Success", "Channels will follow", listflag="start"))
        action_id = header(m, "ActionID")
        now = time.time()
        for channel in self.state.channels.values():
            seconds = int(now - channel.created)
            duration = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
            text = "Event: CoreShowChannel\r\n"
            if action_id:
                text += f"ActionID: {action_id}\r\n"
            text += lines(*((k, channel.fields.get(k, "")) for k in CHANNEL_FIELDS))
            text += lines(("Application", channel.application), ("ApplicationData", channel.data),
                           ("Duration", duration), ("BridgeId", channel.bridge))  # fmt: skip
            session.send((text + "\r\n").encode("utf-8"))
        session.send(list_complete(m, "CoreShowChannelsComplete", len(self.state.channels)))
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
        parsed = parse_presence(value)
        if parsed is None:
            return False
        state, subtype, message = parsed
        self.state.db[("CustomPresence", name)] = value
        self.state.presence[provider] = (state, subtype, message)
        self.publish({"Event": "PresenceStateChange", "Privilege": "call,all",
                       "Presentity": provider, "Status": state, "Subtype": subtype,
                       "Message": message})  # fmt: skip
        for (context, exten), hint in self.hints.items():
            sources = hint.partition(",")[2]
            if provider.lower() not in sources.lower():
                continue
            shown = self._presence(sources)
            if self.state.hint_presence.get((context, exten), ("not_set", "", "")) == shown:
                continue  # Asterisk: no change, no PresenceStatus
            self.state.hint_presence[(context, exten)] = shown
            self.publish({"Event": "PresenceStatus", "Privilege": "call,all", "Exten": exten,
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
        self.state.db[("CustomDevstate", name)] = value
        self.publish({"Event": "DeviceStateChange", "Privilege": "call,all",
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
                stored = self.state.db.get(("CustomDevstate", custom), "").upper()
                return stored if stored in DEVICE_STATES else "UNKNOWN"
            return self.state.devices.get(args, "UNKNOWN")
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
            found = self.state.presence.get(provider)
            if found is None:
                label, _, name = provider.partition(":")
                if label.lower() != "custompresence":
                    continue
                stored = self.state.db.get(("CustomPresence", name))
                found = ("not_set", "", "") if stored is None else parse_presence(stored)
                if found is None:
                    continue
            if PRESENCE_ORDER[found[0]] > PRESENCE_ORDER[best[0]]:
                best = found
        return best

    # --- the event side ------------------------------------------------------------------

    def _channel_named(self, name: str) -> bool:
        return any(c.fields.get("Channel") == name for c in self.state.channels.values())

    def publish(self, event: Mapping[str, str]) -> None:
        self.observe(event)
        category = event.get("Privilege", "").partition(",")[0].lower()
        data = event_bytes(event)
        for session in self.sessions:
            if session.authenticated and category in session.send_events:
                session.send(data)

    def observe(self, event: Mapping[str, str]) -> None:
        kind, uniqueid = event.get("Event", ""), event.get("Uniqueid", "")
        state = self.state
        if kind == "Newchannel" and uniqueid:
            state.channels[uniqueid] = Channel({}, time.time())
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
