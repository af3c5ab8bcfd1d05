"""Graph change-notification payloads: shape checks and normalisation (pure)."""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import unquote_plus

from core.timestamps import parse_graph_datetime

MAX_TOKEN_LENGTH = 1024
_FORBIDDEN_IN_TOKEN = re.compile(r"[\x00-\x1f\x7f<>]")
_USER_IN_RESOURCE = re.compile(
    r"(?:communications/presences/|users/)([0-9A-Za-z-]{1,64})", re.IGNORECASE
)
_TIME_FIELDS = ("subscriptionExpirationDateTime",)
_ODATA_KEYS = ("@odata.type", "@odata.id")


class PayloadError(ValueError):
    """The body is not a changeNotificationCollection."""


def validation_token_ok(token: str) -> bool:
    """Echo only what cannot be abused; escaping would break Graph's exact-match check."""
    return 0 < len(token) <= MAX_TOKEN_LENGTH and not _FORBIDDEN_IN_TOKEN.search(token)


def parse_collection(payload: Any) -> tuple[list[Any], list[str] | None]:
    if not isinstance(payload, dict) or not isinstance(payload.get("value"), list):
        raise PayloadError("expected an object with a 'value' array")
    tokens = payload.get("validationTokens")
    if tokens is not None and not (
        isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
    ):
        raise PayloadError("'validationTokens' must be an array of strings")
    return payload["value"], tokens


def _case_insensitive(data: dict[str, Any], name: str) -> Any:
    if name in data:
        return data[name]
    lowered = name.lower()
    return next((v for k, v in data.items() if k.lower() == lowered), None)


@functools.lru_cache(maxsize=4096)
def _graph_time(value: str) -> str | None:
    """Every item of a subscription carries the same expiry: parse each form once."""
    try:
        return parse_graph_datetime(value).isoformat()
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _decoded(resource: str) -> str:
    return unquote_plus(resource) if "%" in resource or "+" in resource else resource


def normalise(item: dict[str, Any]) -> dict[str, Any]:
    """A copy without clientState, with Graph's quirks smoothed out for the workers."""
    out = {k: v for k, v in item.items() if k != "clientState"}
    resource = item.get("resource")
    if isinstance(resource, str):
        out["resource"] = _decoded(resource)
    data = item.get("resourceData")
    if isinstance(data, dict):
        data = dict(data)
        odata_type = _case_insensitive(data, "@odata.type")
        odata_id = _case_insensitive(data, "@odata.id")
        for key in [k for k in data if k[:1] == "@" and k.lower() in _ODATA_KEYS]:
            del data[key]
        if isinstance(odata_type, str):
            data["@odata.type"] = odata_type.lower()
        if odata_id is not None:
            data["@odata.id"] = odata_id
        out["resourceData"] = data
    for field in _TIME_FIELDS:
        value = item.get(field)
        if isinstance(value, str):
            parsed = _graph_time(value)
            if parsed is not None:  # otherwise kept as sent: the workers do not need it
                out[field] = parsed
    user_id = user_id_of(out)
    if user_id:
        out["userId"] = user_id
        resource = out.get("resource")
        if isinstance(data, dict) and isinstance(resource, str) and "$filter" in resource:
            # Graph echoes a bulk subscription's resource, all its ids (650: ~26 KB), in
            # every item; resourceData says which user changed, so the copy stops here.
            del out["resource"]
    return out


def user_id_of(item: dict[str, Any]) -> str | None:
    data = item.get("resourceData")
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])
    resource = item.get("resource")
    if isinstance(resource, str):
        match = _USER_IN_RESOURCE.search(resource)
        if match and "$filter" not in resource:
            return match.group(1)
    return None


def kind_of(item: dict[str, Any]) -> str:
    return "lifecycle" if item.get("lifecycleEvent") else "notification"
