"""docs/openapi.yaml: it names every route the web process serves, and no generated request
against the real app (uvicorn, Redis, the Graph emulator) is answered with a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case as AnyCase
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation as AnyOperation
from starlette.routing import Route

from core.settings import load_settings
from core.state import coordination, guards
from emulator.control import ControlClient
from emulator.harness.ports import free_port
from emulator.harness.served import ServedApp
from emulator.server import EmulatorServer
from tests.core.conftest import make_site
from tests.emulator.conftest import control, emulator  # noqa: F401
from webhook.app import create_app
from webhook.fastpath import FastPath

SPEC = Path(__file__).parents[2] / "docs" / "openapi.yaml"
ADMIN_KEY = "admin-key-for-the-fuzzer-0123456789abcdef"
PBX_SECRET = "pbx-secret-for-the-fuzzer"  # noqa: S105 - test values
METRICS_TOKEN = "metrics-token-for-the-fuzzer"  # noqa: S105
EVENTS_KEY = b"k" * 32
EVENTS_SECRET = "whsec_" + base64.b64encode(EVENTS_KEY).decode()
EXAMPLES = 40  # per operation: 22 of them, well under a minute in all
JSON_EXAMPLES = 100  # where a JSON body is parsed: the most room for bad input
TENANT = "contoso"
Case = AnyCase[Any]
APIOperation = AnyOperation[Any, Any, Any, Any]
STREAMS = {"/admin/events", "/api/v1/tenants/{tenant}/events"}  # answer, then never end


def described() -> set[tuple[str, str]]:
    spec: dict[str, Any] = schemathesis.openapi.from_path(SPEC).raw_schema
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }


def test_the_description_names_every_route_the_app_serves_and_no_other() -> None:
    app = create_app(load_settings({}))
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"  # Starlette adds it to each GET
    }
    assert all(isinstance(route, Route) for route in app.routes)
    assert (sorted(served - described()), sorted(described() - served)) == ([], [])


@dataclass
class Finding:
    """A request answered with a 5xx (or a dropped connection), and what the server raised."""

    status: int
    operation: str
    request: str  # method, URL, headers and body as sent
    raised: str  # the app's exception, type and line; empty when none was logged

    def __str__(self) -> str:
        return (
            f"{self.status or 'dropped'} {self.operation}: {self.raised or '-'}\n  {self.request}"
        )


@dataclass
class Fuzzed:
    url: str
    redis: redis.Redis
    session: requests.Session
    errors: _ErrorLog
    findings: dict[tuple[str, str], Finding]  # (operation, raised) -> its shortest request
    undocumented: set[str] = field(default_factory=set)  # answers docs/openapi.yaml lacks

    def found(self, finding: Finding) -> None:
        key = (finding.operation, finding.raised)
        known = self.findings.get(key)
        if known is None or len(finding.request) < len(known.request):
            self.findings[key] = finding


class _ErrorLog(logging.Handler):
    """The app's unhandled exceptions, as uvicorn logs them: what each 5xx was."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return
        tb = error.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"
        self.seen.append(f"{type(error).__name__}: {str(error)[:80]} at {where}")


@pytest.fixture
def fuzzed(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    emulator: EmulatorServer,  # noqa: F811
    control: ControlClient,  # noqa: F811
) -> Iterator[Fuzzed]:
    """The app with every surface open to its credentials, a worker alive, its errors logged."""
    port = free_port()
    site = make_site(
        emulator,
        control,
        tmp_path,
        redis_url,
        public_base_url=f"http://127.0.0.1:{port}",
        admin_key=ADMIN_KEY,
        PRESENCE_BRIDGE_METRICS_TOKEN=METRICS_TOKEN,
        PRESENCE_BRIDGE_PBX_EVENTS_SECRET=EVENTS_SECRET,
        PRESENCE_BRIDGE_TENANT_CONTOSO_PBX_SECRET=PBX_SECRET,
    )
    coordination.beat(redis_client, coordination.Process.WORKER, time.time(), 600)
    errors = _ErrorLog()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(errors)
    try:
        # As `webhook.app:factory` serves it: Graph's POSTs take the fast path.
        app = FastPath(create_app(site.settings))
        with ServedApp(app, port=port), requests.Session() as session:
            yield Fuzzed(f"http://127.0.0.1:{port}", redis_client, session, errors, {})
    finally:
        logger.removeHandler(errors)


def _credentials(path: str) -> dict[str, str]:
    if path.startswith(("/admin", "/oauth/login")):
        return {"Authorization": f"Bearer {ADMIN_KEY}"}
    if path.startswith("/api/v1/"):
        return {"Authorization": f"Bearer {PBX_SECRET}"}
    if path == "/metrics":
        return {"Authorization": f"Bearer {METRICS_TOKEN}"}
    return {}


def _sign(body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for `body`, under a fresh message id."""
    msg_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    mac = hmac.new(EVENTS_KEY, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(mac).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}


def _request(fuzzed: Fuzzed, case: Case, signed: bool) -> dict[str, Any]:
    """The case as `requests` arguments; the body as bytes, so what is signed is what is sent."""
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url=fuzzed.url)
    if "json" in kwargs:
        kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
    body = kwargs.get("data")
    if isinstance(body, str):
        kwargs["data"] = body.encode()
    if case.operation.path == "/pbx/events" and signed:
        kwargs["headers"].update(_sign(kwargs.get("data") or b""))
    return kwargs


NOISE = {"user-agent", "accept-encoding", "accept", "connection", "x-schemathesis-testcaseid"}


def _described(kwargs: dict[str, Any]) -> str:
    secrets = (ADMIN_KEY, PBX_SECRET, METRICS_TOKEN)
    headers = {k: ("<credential>" if any(x in str(v) for x in secrets) else v)
               for k, v in kwargs["headers"].items() if k.lower() not in NOISE}  # fmt: skip
    query = f" params={kwargs['params']!r}" if kwargs.get("params") else ""
    return (
        f"{kwargs['method']} {kwargs['url']}{query} headers={headers!r} body={kwargs.get('data')!r}"
    )


def _send(fuzzed: Fuzzed, case: Case, signed: bool) -> int:
    kwargs = _request(fuzzed, case, signed)
    logged = len(fuzzed.errors.seen)
    try:
        response = fuzzed.session.request(**kwargs, timeout=30, stream=True, allow_redirects=False)
        if case.operation.path not in STREAMS:  # those answer, then never end
            response.content  # noqa: B018 - read the whole answer
        response.close()
        status = response.status_code
    except requests.ConnectionError:
        status, fuzzed.session = 0, requests.Session()  # the server dropped the connection
    if status >= 500 or status == 0:
        raised = "; ".join(fuzzed.errors.seen[logged:])
        fuzzed.found(Finding(status, case.operation.label, _described(kwargs), raised))
    return status


def _name_the_tenant(fuzzed: Fuzzed, case: Case) -> None:
    """The configured tenant wherever the request names one, and a sign-in under way where it
    answers one, so the checks past those are reached."""
    for where in (case.path_parameters, case.query, case.body):
        if isinstance(where, dict) and "tenant" in where:
            where["tenant"] = TENANT
    if case.operation.path == "/oauth/callback":
        login, credentials = f"{fuzzed.url}/oauth/login", _credentials("/oauth/login")
        started = fuzzed.session.get(
            login, params={"tenant": TENANT}, headers=credentials, allow_redirects=False
        )
        state = parse_qs(urlsplit(started.json()["auth_uri"]).query)["state"][0]
        if case.method == "GET" or not isinstance(case.body, dict):
            case.query = {**(case.query or {}), "state": state}
        else:
            case.body["state"] = state


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
CONFUSING = st.one_of(  # containers first: a scalar where a scalar belongs is seldom news
    st.lists(JSON, max_size=2), st.dictionaries(st.text(max_size=4), JSON, max_size=2), JSON
)


def _confuse(data: st.DataObject, value: Any) -> Any:
    """`value` with members here and there replaced by any JSON at all: a list where a name
    belongs, an object where a list does (what the schema's own negatives rarely try)."""
    if not isinstance(value, dict | list) or not value:
        return data.draw(CONFUSING)
    for member in sorted(value) if isinstance(value, dict) else range(len(value)):
        what = data.draw(st.sampled_from(["replace", "go into", "keep"]))
        if what == "replace":
            value[member] = data.draw(CONFUSING)
        elif what == "go into":
            value[member] = _confuse(data, value[member])
    return value


def _takes_json(operation: APIOperation) -> bool:
    return any(body.media_type == "application/json" for body in operation.body)


def _fuzz(fuzzed: Fuzzed, operation: APIOperation) -> None:
    path = operation.path
    cases = st.one_of(
        *(
            operation.as_strategy(mode, headers=_credentials(path))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        )
    )

    @given(
        case=cases,
        signed=st.integers(0, 3).map(lambda n: n < 3),
        known_tenant=st.booleans(),
        anonymous=st.integers(0, 3).map(lambda n: n == 3),
        confused=st.booleans(),
        data=st.data(),
    )
    @settings(
        max_examples=JSON_EXAMPLES if _takes_json(operation) else EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # every failure listed, none shrunk
        suppress_health_check=list(HealthCheck),
    )
    def one(
        case: Case,
        signed: bool,
        known_tenant: bool,
        anonymous: bool,
        confused: bool,
        data: st.DataObject,
    ) -> None:
        # The lockout has its own tests; here it would hide every admin route after ten guesses.
        fuzzed.redis.delete(guards.login_failures_key("127.0.0.1"))
        if confused and isinstance(case.body, dict | list) and _takes_json(operation):
            case.body = _confuse(data, case.body)
        if known_tenant:
            _name_the_tenant(fuzzed, case)
        if anonymous and case.headers:
            case.headers.pop("Authorization", None)
        status = _send(fuzzed, case, signed)
        if 0 < status < 500 and str(status) not in operation.responses.status_codes:
            fuzzed.undocumented.add(f"{operation.label} {status}")

    one()


def test_generated_requests_get_no_5xx_and_only_documented_answers(fuzzed: Fuzzed) -> None:
    schema = schemathesis.openapi.from_path(SPEC)
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        _fuzz(fuzzed, result.ok())
    findings = [str(f) for f in sorted(fuzzed.findings.values(), key=str)]
    undocumented = [f"undocumented: {answer}" for answer in sorted(fuzzed.undocumented)]
    assert not findings + undocumented, "\n".join(findings + undocumented)
