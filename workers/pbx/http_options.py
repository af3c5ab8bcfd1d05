"""Options of the `http` PBX adapter: the action models and their validation."""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import ConfigError
from core.settings import PbxSettings, secret_env_name
from workers.pbx.http_auth import AuthOptions, secret_problems
from workers.pbx.http_presets import apply_preset

BUILTIN_NAMES = frozenset({"user", "profile", "availability", "activity", "extension", "id"})
PathSpec = str | list[str | int]  # "a.b.0" or ["@odata.nextLink"] when a key has dots
Scalar = str | int | float | bool


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Action(_Frozen):
    url: str = Field(min_length=1)  # absolute, or relative to base_url
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    query: dict[str, str] = {}  # a parameter that renders empty is left out
    headers: dict[str, str] = {}
    json_body: Any = Field(default=None, alias="json")
    form: dict[str, str] | None = None
    content: str | None = None
    error_path: PathSpec | None = None  # a 2xx JSON body with this key is a failure (Bicom)
    # The 2xx statuses the PBX documents as success; any other 2xx is a refusal (STARFACE's
    # phoneconfig PUT: 204 is success, 200 "Unexpected error"). None: every 2xx.
    success_status: list[int] | None = Field(default=None, min_length=1)

    @field_validator("success_status")
    @classmethod
    def _only_2xx(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 200 <= s <= 299 for s in value):
            raise ValueError("only 2xx statuses can mean success")
        return value


class ApplyAction(Action):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    merge_read: bool = False  # full-object PUT: send the read_profile answer with `json` on top
    # After a 2xx, read back with read_profile and fail when the value at its `result` path
    # differs from what was written there (FreePBX answers `true` whatever happened).
    verify: bool = False


class ReadAction(Action):
    result: PathSpec
    values: dict[str, str] = {}  # PBX value -> profile; unmatched values are returned as-is


class ListAction(Action):
    items: PathSpec = ""  # a list, or an object of objects ($key is the object key)
    username: PathSpec
    email: PathSpec | None = None
    extension: PathSpec | None = None
    id: PathSpec | None = None
    next: PathSpec | None = None  # URL of the next page


class Actions(_Frozen):
    apply_profile: ApplyAction | None = None
    read_profile: ReadAction | None = None
    list_users: ListAction | None = None


class UserRef(_Frozen):
    id: str | None = None
    extension: str | None = None


class HttpOptions(_Frozen):
    preset: str | None = None
    base_url: str = ""
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    max_connections: int = Field(default=10, ge=1, le=200)
    ca_bundle: Path | None = None
    headers: dict[str, str] = {}  # sent with every action
    auth: AuthOptions | None = None
    vars: dict[str, Scalar] = {}
    profiles: dict[str, Scalar | dict[str, Scalar]] = {}
    default: dict[str, Scalar] = {}  # values for profiles not listed (and missing names)
    users: dict[str, str | UserRef] = {}  # username -> PBX id, or {id, extension}
    directory_ttl_seconds: float = Field(default=300.0, ge=0)
    actions: Actions = Actions()


def lookup(data: Any, path: PathSpec | None) -> Any:
    """The value at `path` ("a.b.0", or a list of keys) in decoded JSON; None when absent."""
    if path is None:
        return None
    parts: list[str | int] = (
        list(path) if isinstance(path, list) else [p for p in path.split(".") if p]
    )
    for part in parts:
        if isinstance(data, dict):
            data = data.get(str(part))
        elif isinstance(data, list) and str(part).lstrip("-").isdigit():
            index = int(part)
            data = data[index] if -len(data) <= index < len(data) else None
        else:
            return None
    return data


def _names(value: Any) -> set[str]:
    if isinstance(value, str):
        found: set[str] = set()
        for m in Template.pattern.finditer(value):
            name = m.group("named") or m.group("braced")
            if name:
                found.add(name)
        return found
    if isinstance(value, dict):
        return set().union(*(_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_names(v) for v in value)) if value else set()
    return set()


def template_names(action: Action) -> dict[str, set[str]]:
    return {
        "url": _names(action.url),
        "query": _names(action.query),
        "headers": _names(action.headers),
        "json": _names(action.json_body),
        "form": _names(action.form),
        "content": _names(action.content),
    }


def validate_options(
    settings: PbxSettings, tenant: str = "", prefix: str = "pbx.options"
) -> HttpOptions:
    """Preset merged under the operator's options, validated; every problem in one ConfigError."""
    merged, problems = apply_preset(settings.options, prefix)
    options: HttpOptions | None = None
    bad: set[str] = set()
    try:
        options = HttpOptions.model_validate(merged)
    except ValidationError as exc:
        for e in exc.errors():
            parts = list(e["loc"])
            if parts[:1] == ["auth"] and len(parts) > 2:
                del parts[1]  # the discriminator tag pydantic adds: auth.oauth2.client_id
            bad.add(str(parts[0]) if parts else "")
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
            problems.append(f"{prefix}{loc}: {e['msg']}")
    if options is None and "" not in bad:
        # Check the rest too, so one run lists every problem; drop what the bad keys explain.
        try:
            options = HttpOptions.model_validate({k: v for k, v in merged.items() if k not in bad})
        except ValidationError:
            options = None
    if options is not None:
        env = secret_env_name(tenant or "<name>", "PBX_SECRET")
        secret_path = prefix.removesuffix(".options") + ".secret"
        more = _semantic_problems(options, prefix) + secret_problems(
            options.auth, settings.secret, env, secret_path
        )
        problems += [p for p in more if not any(p.startswith(f"{prefix}.{key}") for key in bad)]
    if problems or options is None:
        raise ConfigError(_one_per_path(problems))
    return options


def _one_per_path(problems: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for problem in problems:
        path = problem.split(": ", 1)[0]
        if path not in seen:
            seen.add(path)
            kept.append(problem)
    return kept


def _semantic_problems(options: HttpOptions, prefix: str) -> list[str]:
    problems: list[str] = []
    acts = options.actions
    if acts.apply_profile is None:
        hint = f" (the {options.preset} preset leaves it to you)" if options.preset else ""
        problems.append(f"{prefix}.actions.apply_profile: required{hint}")
    elif acts.apply_profile.merge_read and acts.read_profile is None:
        problems.append(f"{prefix}.actions.apply_profile.merge_read: needs actions.read_profile")
    if acts.apply_profile is not None and acts.apply_profile.verify:
        apply, read = acts.apply_profile, acts.read_profile
        if read is None:
            problems.append(f"{prefix}.actions.apply_profile.verify: needs actions.read_profile")
        elif not apply.merge_read and lookup(apply.json_body, read.result) is None:
            problems.append(
                f"{prefix}.actions.apply_profile.verify: the json body must write what "
                f"actions.read_profile.result reads"
            )
    known = BUILTIN_NAMES | set(options.vars) | set(options.default) | {"value"}
    for value in options.profiles.values():
        if isinstance(value, dict):
            known |= set(value)
    for name, action in (
        ("apply_profile", acts.apply_profile),
        ("read_profile", acts.read_profile),
        ("list_users", acts.list_users),
    ):
        if action is None:
            continue
        allowed = {
            "apply_profile": known,
            "read_profile": {"user", "extension", "id"} | set(options.vars),
            "list_users": set(options.vars),
        }[name]
        for part, names in template_names(action).items():
            for unknown in sorted(names - allowed):
                problems.append(
                    f"{prefix}.vars.{unknown}: not set, but actions.{name}.{part} uses ${unknown}"
                )
        bodies = [b for b in (action.json_body, action.form, action.content) if b is not None]
        if len(bodies) > 1:
            problems.append(f"{prefix}.actions.{name}: use only one of json, form, content")
    if not options.base_url and any(
        a is not None and not a.url.startswith(("http://", "https://"))
        for a in (acts.apply_profile, acts.read_profile, acts.list_users)
    ):
        problems.append(f"{prefix}.base_url: required by relative action URLs")
    elif options.base_url and not options.base_url.startswith(("http://", "https://")):
        problems.append(f"{prefix}.base_url: must start with http:// or https://")
    return problems
