"""Named presets of the `http` adapter, one per PBX whose published API has a plain HTTP call.

Each preset is plain option data; the operator's options are merged on top, so any field can be
overridden. `confidence` says how the calls were found: high = read in the vendor's own doc,
spec or source; medium = part of the call only third-party or inferred; low = no set call
found. `source` names where. Nothing here was tried against a real PBX.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DND = "Do Not Disturb"
MEETING = "Teams Meeting"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    confidence: Literal["high", "medium", "low"]
    source: str  # where the calls were read: the vendor's doc, spec or source
    drives: Literal["routing", "display"]  # who rings, or only what others see
    required: tuple[str, ...]  # option paths the operator must set
    options: Mapping[str, Any]
    notes: tuple[str, ...] = field(default=())  # what the reference leaves uncertain


PRESETS: dict[str, Preset] = {}
# Presets taken out, each with why and what replaces it; naming one stops the start.
RETIRED: dict[str, str] = {
    "asterisk-ari-presence": (
        "ARI answers 204 even when Asterisk refuses the value and cannot read presence back, "
        'so a refused write would count as applied; use adapter = "asterisk" instead '
        "(over AMI: refusals reported, Do Not Disturb that routes, read back; "
        "docs/pbx/asterisk.md)"
    ),
}


def _add(preset: Preset) -> None:
    PRESETS[preset.name] = preset


_add(
    Preset(
        name="bicom-dnd",
        title="Bicom PBXware: extension Do Not Disturb (pbxware.ext.es.dnd.edit)",
        confidence="high",
        source="Bicom's official PBXware API Postman collection",
        drives="routing",
        required=("base_url", "vars.server"),
        notes=(
            "gloCOM's coloured status is not changed: PBXware has no API for it, only DND.",
            "dnd=0/1/2 is edited with `edit`; `dnd.set state=yes` probably toggles the service "
            "itself (inferred), so it is not used.",
            "dst defaults to the user's extension as voicemail box (inferred); override "
            "actions.apply_profile.query.dst for a forward target.",
            "read_profile can only tell DND from not-DND.",
        ),
        options={
            "auth": {"type": "api_key", "name": "apikey", "location": "query"},
            "vars": {"dsttype": "voicemail"},
            "profiles": {DND: {"dnd": "2"}, MEETING: {"dnd": "2"}},
            "default": {"dnd": "0"},
            "actions": {
                "apply_profile": {
                    "method": "GET",
                    "url": "/index.php",
                    "error_path": "error",
                    "query": {
                        "action": "pbxware.ext.es.dnd.edit",
                        "server": "$server",
                        "id": "$id",
                        "dnd": "$dnd",
                        "dsttype": "$dsttype",
                        "dst": "$extension",
                    },
                },
                "read_profile": {
                    "method": "GET",
                    "url": "/index.php",
                    "error_path": "error",
                    "result": "dnd",
                    "query": {
                        "action": "pbxware.ext.es.dnd.configuration",
                        "server": "$server",
                        "id": "$id",
                    },
                    "values": {"0": "Available", "1": DND, "2": DND},
                },
                "list_users": {
                    "method": "GET",
                    "url": "/index.php",
                    "error_path": "error",
                    "query": {"action": "pbxware.ext.list", "server": "$server"},
                    "username": "ext",
                    "email": "email",
                    "extension": "ext",
                    "id": "$key",
                },
            },
        },
    )
)

_add(
    Preset(
        name="3cx",
        title="3CX V20 XAPI: the user's current forwarding profile (CurrentProfileName)",
        confidence="medium",
        source="3CX XAPI swagger.yaml (behaviour of the PATCH not stated by 3CX)",
        drives="routing",
        required=("base_url", "auth.client_id"),
        notes=(
            "CurrentProfileName is writable in 3CX's OpenAPI, but no 3CX document says a PATCH "
            "switches the live status; a third party confirms the sibling QueueStatus works.",
            "Accepted values are the internal profile names (probably Available, Away, "
            "Out of office, Custom 1, Custom 2); the DND mapping to 'Out of office' is inferred. "
            "Check Users({Id})/ForwardingProfiles on your PBX and adjust `profiles`.",
            "One active token per client: all workers of one host share the cached token, but "
            "several hosts with the same client id will log each other out.",
            'Before 20.0.9 expires_in was in minutes: set auth.expires_in_unit = "minutes".',
            "Needs an Enterprise (8SC+) or AI licence; warn if 3CX's own M365 sync is active too.",
            "Busy and On Call (the simple and glocom mappings) map to Away, our choice: 3CX has "
            "no busy status.",
        ),
        options={
            "auth": {"type": "oauth2", "token_url": "/connect/token"},
            # Every profile the shipped mappings make; 3CX has no busy status, so a Teams call
            # (Busy, On Call) takes Away like a meeting. A profile not named here is refused.
            "profiles": {
                "Available": "Available",
                "Away": "Away",
                DND: "Out of office",
                MEETING: "Away",
                "Busy": "Away",
                "On Call": "Away",
            },
            "actions": {
                "apply_profile": {
                    "method": "PATCH",
                    "url": "/xapi/v1/Users($id)",
                    "json": {"CurrentProfileName": "$value"},
                },
                "read_profile": {
                    "method": "GET",
                    "url": "/xapi/v1/Users($id)",
                    "query": {"$select": "CurrentProfileName"},
                    "result": "CurrentProfileName",
                },
                "list_users": {
                    "method": "GET",
                    "url": "/xapi/v1/Users",
                    "query": {"$select": "Id,Number,EmailAddress,DisplayName"},
                    "items": "value",
                    "username": "Number",
                    "email": "EmailAddress",
                    "extension": "Number",
                    "id": "Id",
                    "next": ["@odata.nextLink"],
                },
            },
        },
    )
)

_add(
    Preset(
        name="freepbx-dnd",
        title="FreePBX: Do Not Disturb through the API module's REST route",
        confidence="medium",
        source="FreePBX donotdisturb module source (endpoints third-party)",
        drives="routing",
        required=("base_url", "auth.client_id"),
        notes=(
            'The route PUT /donotdisturb/users/{id} {"status": "YES"|""} is in the module '
            "source; the /admin/api/api/rest prefix and the token URL /admin/api/api/token are "
            "seen only in third-party clients.",
            "Whether the REST route also updates the Custom:DND device state (BLF lamps) is not "
            "documented; AMI DBPut + Setvar is the fully documented path.",
            "The PUT answers true whatever its AMI calls did, so every write is read back with "
            "the same route's GET (status: the AstDB value); the scope needs read as well.",
            "Off reads as false or an empty string, depending on FreePBX's AMI library "
            "(not checked): both mean Available.",
            'One API module version answers a missing scope with 200 {"status": false, '
            '"message": "unauthorized"}: error_path "message" makes it a refusal.',
        ),
        options={
            "auth": {"type": "oauth2", "token_url": "/admin/api/api/token"},
            "profiles": {DND: {"status": "YES"}, MEETING: {"status": "YES"}},
            "default": {"status": ""},
            "actions": {
                "apply_profile": {
                    "method": "PUT",
                    "url": "/admin/api/api/rest/donotdisturb/users/$extension",
                    "json": {"status": "$status"},
                    "error_path": "message",
                    "verify": True,
                },
                "read_profile": {
                    "method": "GET",
                    "url": "/admin/api/api/rest/donotdisturb/users/$extension",
                    "error_path": "message",
                    "result": "status",
                    "values": {"YES": DND, "false": "Available", "": "Available"},
                },
            },
        },
    )
)

_add(
    Preset(
        name="starface-dnd",
        title="STARFACE: the user's doNotDisturb in phoneconfig",
        confidence="high",
        source="STARFACE REST OpenAPI 6.7.0.22 and Java example",
        drives="routing",
        required=("base_url", "auth.login"),
        notes=(
            "phoneconfig is a full-object PUT, so the adapter reads it first and changes only "
            "doNotDisturb (a change made in between by someone else can be overwritten).",
            "The authToken lifetime is not documented: it is kept until the PBX answers 401.",
            'The phoneconfig PUT documents 204 as success and 200 as "Unexpected error": '
            "only 204 counts as applied.",
        ),
        options={
            "auth": {"type": "starface"},
            "headers": {"X-Version": "2"},
            "profiles": {DND: {"dnd": True}, MEETING: {"dnd": True}},
            "default": {"dnd": False},
            "actions": {
                "apply_profile": {
                    "method": "PUT",
                    "url": "/rest/users/$id/phoneconfig",
                    "json": {"doNotDisturb": "$dnd"},
                    "merge_read": True,
                    "success_status": [204],
                },
                "read_profile": {
                    "method": "GET",
                    "url": "/rest/users/$id/phoneconfig",
                    "result": "doNotDisturb",
                    "values": {"true": DND, "false": "Available"},
                },
                "list_users": {
                    "method": "GET",
                    "url": "/rest/users",
                    "username": "login",
                    "email": "email",
                    "id": "id",
                },
            },
        },
    )
)

_add(
    Preset(
        name="ringcentral",
        title="RingCentral: Update User Status (presence)",
        confidence="high",
        source="RingCentral REST API v1.0, Update User Status (RingCentral SDK references)",
        drives="routing",
        required=("auth.client_id",),
        notes=(
            "The JWT-bearer token request (POST /restapi/oauth/token, client id/secret as Basic) "
            "follows RingCentral's developer guide; the secret is a JSON object "
            '{"client_secret": ..., "assertion": <JWT credential>}.',
            "Rate limits are per user and app: 429 carries Retry-After, which the adapter reports.",
        ),
        options={
            "base_url": "https://platform.ringcentral.com",
            "auth": {
                "type": "oauth2",
                "token_url": "/restapi/oauth/token",
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "client_auth": "basic",
            },
            "profiles": {
                DND: {"user_status": "Busy", "dnd_status": "DoNotAcceptAnyCalls"},
                MEETING: {"user_status": "Busy", "dnd_status": "DoNotAcceptAnyCalls"},
                "Busy": {"user_status": "Busy", "dnd_status": "TakeAllCalls"},
            },
            "default": {"user_status": "Available", "dnd_status": "TakeAllCalls"},
            "actions": {
                "apply_profile": {
                    "method": "PUT",
                    "url": "/restapi/v1.0/account/~/extension/$id/presence",
                    "json": {"userStatus": "$user_status", "dndStatus": "$dnd_status"},
                },
                "read_profile": {
                    "method": "GET",
                    "url": "/restapi/v1.0/account/~/extension/$id/presence",
                    "result": "dndStatus",
                    "values": {"DoNotAcceptAnyCalls": DND, "TakeAllCalls": "Available"},
                },
                "list_users": {
                    "method": "GET",
                    "url": "/restapi/v1.0/account/~/extension",
                    "items": "records",
                    "username": "extensionNumber",
                    "email": "contact.email",
                    "extension": "extensionNumber",
                    "id": "id",
                    "next": "navigation.nextPage.uri",
                },
            },
        },
    )
)

_add(
    Preset(
        name="webex-dnd",
        title="Webex Calling: a person's Do Not Disturb",
        confidence="high",
        source="Webex API reference, user call settings (Do Not Disturb)",
        drives="routing",
        required=(),
        notes=(
            "Needs an admin token with spark-admin:people_write (bearer auth); Webex presence "
            "itself cannot be set.",
            "Whether a partial PUT body is accepted is not stated: the adapter reads the settings "
            "first and changes only `enabled`.",
        ),
        options={
            "base_url": "https://webexapis.com",
            "auth": {"type": "bearer"},
            "profiles": {DND: {"enabled": True}, MEETING: {"enabled": True}},
            "default": {"enabled": False},
            "actions": {
                "apply_profile": {
                    "method": "PUT",
                    "url": "/v1/people/$id/features/doNotDisturb",
                    "json": {"enabled": "$enabled"},
                    "merge_read": True,
                },
                "read_profile": {
                    "method": "GET",
                    "url": "/v1/people/$id/features/doNotDisturb",
                    "result": "enabled",
                    "values": {"true": DND, "false": "Available"},
                },
            },
        },
    )
)

_add(
    Preset(
        name="pascom",
        title="pascom: user directory only; the profile switch is yours to fill in",
        confidence="low",
        source="pascom REST API docs and connector docs (no set call published)",
        drives="routing",
        required=("base_url", "actions.apply_profile"),
        notes=(
            "No documented API switches a pascom client profile: read the instance's interactive "
            "REST documentation (Information -> Developer) and set actions.apply_profile.",
            "The list response shape of /services/identity/ was not seen; the field names come "
            "from pascom's connector docs. Experimental.",
            "No read of the active profile exists: the bridge can only remember what it wrote.",
        ),
        options={
            "auth": {"type": "basic", "username": "moby"},
            "actions": {
                "list_users": {
                    "method": "GET",
                    "url": "/services/identity/",
                    "username": "003use_name",
                    "email": "016voi_email",
                    "extension": "009ext_extension",
                },
            },
        },
    )
)


def _merge(base: Any, top: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(top, Mapping):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _merge(base.get(key), value)
        return merged
    return top


def _missing(options: Mapping[str, Any], path: str) -> bool:
    node: Any = options
    for part in path.split("."):
        if not isinstance(node, Mapping) or node.get(part) in (None, "", {}):
            return True
        node = node[part]
    return False


def apply_preset(options: Mapping[str, Any], prefix: str) -> tuple[dict[str, Any], list[str]]:
    """The operator's options on top of the named preset, and what the preset still needs."""
    name = options.get("preset")
    if name is None:
        return dict(options), []
    if str(name) in RETIRED:
        return {k: v for k, v in options.items() if k != "preset"}, [
            f"{prefix}.preset: {name!r} is retired: {RETIRED[str(name)]}"
        ]
    preset = PRESETS.get(str(name))
    if preset is None:
        known = ", ".join(sorted(PRESETS))
        return {k: v for k, v in options.items() if k != "preset"}, [
            f"{prefix}.preset: unknown preset {name!r} (known: {known})"
        ]
    merged = _merge(preset.options, options)
    problems = [
        f"{prefix}.{path}: required by the {preset.name} preset"
        for path in preset.required
        if _missing(merged, path)
    ]
    return merged, problems
