"""A real local PBX stand-in for the `http` adapter tests: Starlette under uvicorn on loopback.

It records every request, answers the documented request shapes of each preset's PBX (and
400s, noting a problem, on anything else), and can be told to fail the next requests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.harness.served import ServedApp

SECRET = "pbx-Secret-0123456789"  # noqa: S105 - the one secret every simulated PBX accepts
CLIENT_ID = "bridge-client"
JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJicmlkZ2UifQ."  # RingCentral JWT credential stand-in
THREECX_PROFILES = {"Available", "Away", "Out of office", "Custom 1", "Custom 2"}
RC_USER = {"Offline", "Busy", "Available"}
RC_DND = {
    "TakeAllCalls",
    "DoNotAcceptDepartmentCalls",
    "TakeDepartmentCallsOnly",
    "DoNotAcceptAnyCalls",
}
STARFACE_PHONECONFIG = {
    "callWaiting": bool,
    "displayNumberId": str,
    "doNotDisturb": bool,
    "primaryPhoneId": str,
}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float = 0.0  # when it arrived (epoch seconds)

    @property
    def params(self) -> dict[str, str]:
        return dict(self.query)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


@dataclass
class _Fault:
    status: int | None  # None: hang until the server stops
    retry_after: str | None = None


class Problem(Exception):
    """A request that does not match the documented shape."""


Handler = Callable[[Recorded, "re.Match[str]"], Awaitable[Response]]


class PbxServer:
    """One uvicorn server in a thread. Use as a context manager; reset() between tests."""

    def __init__(self) -> None:
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
                )
            ],
            lifespan=self._lifespan,
        )
        self._served = ServedApp(app, name="the PBX test server")
        self.port = self._served.port
        self.url = self._served.url
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token_ids = itertools.count(1)
        self.reset()
        self._routes: list[tuple[re.Pattern[str], Handler]] = [
            (re.compile(r"/index\.php"), self._bicom),
            (re.compile(r"/connect/token"), self._token_3cx),
            (re.compile(r"/xapi/v1/Users(?:\((?P<id>\d+)\))?"), self._threecx),
            (re.compile(r"/admin/api/api/token"), self._token_3cx),
            (re.compile(r"/admin/api/api/rest/donotdisturb/users/(?P<ext>\w+)"), self._freepbx),
            (re.compile(r"/rest/login"), self._starface_login),
            (re.compile(r"/rest/users(?:/(?P<id>\w+)/phoneconfig)?"), self._starface),
            (re.compile(r"/restapi/oauth/token"), self._token_ringcentral),
            (
                re.compile(r"/restapi/v1\.0/account/~/extension(?:/(?P<id>\w+)/presence)?"),
                self._ringcentral,
            ),
            (re.compile(r"/v1/people/(?P<id>\w+)/features/doNotDisturb"), self._webex),
            (re.compile(r"/[\w-]+/services/identity/"), self._pascom),
            (re.compile(r"/oauth/token"), self._token_3cx),
            (re.compile(r"/generic/.*"), self._generic),
        ]

    # -- control ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget requests, tokens, faults and PBX state, as if freshly started."""
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self.tokens_issued = 0
        self.generic_writes: list[Recorded] = []  # writes to /generic/* answered with a 2xx
        self.canned: dict[str, tuple[int, Any]] = {}  # /generic/* answers: (status, JSON)
        self.generic_auth: tuple[str, ...] | None = None  # ("bearer",) ("basic", user) ...
        self.page_size = 1  # list answers are paged, to exercise next-page links
        self.token_lifetime = 3600
        self._faults: deque[_Fault] = deque()
        self._down: tuple[float, _Fault] | None = None  # (until, answer): see `down`
        # FreePBX: extensions whose AMI calls fail inside the DND module (the route still
        # answers true), and the status a token without the route's scope gets (the API
        # module's 17.0 answers 401; one other version 200, both {"status": false, ...}).
        self.freepbx_ami_refuses: set[str] = set()
        self.freepbx_missing_scope: int | None = None
        # STARFACE: the phoneconfig PUT answers 200 ("Unexpected error" in its OpenAPI).
        self.starface_unexpected_error = False
        self._tokens: set[str] = set()
        self._nonces: set[str] = set()
        self.state: dict[str, Any] = {
            "bicom": {"42": {"dnd": "0", "dst": "", "dsttype": "voicemail", "duration": ""}},
            "3cx": {7: "Available", 8: "Available"},
            "freepbx": {},
            "starface": {
                "0815": {
                    "callWaiting": True,
                    "displayNumberId": "n1",
                    "doNotDisturb": False,
                    "primaryPhoneId": "p9",
                }
            },
            "ringcentral": {"101": {"userStatus": "Available", "dndStatus": "TakeAllCalls"}},
            "webex": {"P1": {"enabled": False, "ringSplashEnabled": True}},
        }

    def fail(self, times: int, status: int = 500, retry_after: str | None = None) -> None:
        self._faults.extend(_Fault(status, retry_after) for _ in range(times))

    def down(self, seconds: float, status: int = 503, retry_after: str | None = None) -> float:
        """Answer every request with `status` for `seconds` from now (an outage, not a count);
        returns when the outage ends (epoch seconds)."""
        self._down = (time.time() + seconds, _Fault(status, retry_after))
        return self._down[0]

    def clear_faults(self) -> None:
        """Answer normally again (faults not yet used are dropped)."""
        self._faults.clear()
        self._down = None

    def hang(self, times: int = 1) -> None:
        self._faults.extend(_Fault(None) for _ in range(times))

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> PbxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._served.start()

    def stop(self) -> None:
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)
        self._served.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._release = asyncio.Event()
        yield

    # -- dispatch ---------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        rec = Recorded(
            request.method,
            request.url.path,
            tuple(parse_qsl(request.url.query, keep_blank_values=True)),
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
            time.time(),
        )
        self.requests.append(rec)
        fault: _Fault | None = None
        if self._down is not None and rec.at < self._down[0]:
            fault = self._down[1]
        elif self._faults:
            fault = self._faults.popleft()
        if fault is not None:
            if fault.status is None:
                assert self._release is not None
                await self._release.wait()
                return Response(status_code=504)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return JSONResponse({"error": "injected"}, fault.status, headers=headers)
        for pattern, handler in self._routes:
            m = pattern.fullmatch(rec.path)
            if m:
                try:
                    return await handler(rec, m)
                except Problem as exc:
                    self.problems.append(f"{rec.method} {rec.path}: {exc}")
                    return JSONResponse({"message": str(exc)}, 400)
        return JSONResponse({"message": "no such resource"}, 404)

    # -- shared checks ----------------------------------------------------------------------

    def _issue(self) -> str:
        self.tokens_issued += 1
        token = f"tok-{next(self._token_ids)}"
        self._tokens.add(token)
        return token

    def _bearer_ok(self, rec: Recorded) -> bool:
        value = rec.headers.get("authorization", "")
        return value.startswith("Bearer ") and value[7:] in self._tokens

    def _basic_ok(self, rec: Recorded, user: str) -> bool:
        expected = "Basic " + base64.b64encode(f"{user}:{SECRET}".encode()).decode()
        return hmac.compare_digest(rec.headers.get("authorization", ""), expected)

    @staticmethod
    def _json(rec: Recorded) -> Any:
        if not rec.headers.get("content-type", "").startswith("application/json"):
            raise Problem("expected a JSON body")
        try:
            return rec.json()
        except ValueError:
            raise Problem("body is not JSON") from None

    def verify_hmac(self, rec: Recorded, prefix: str = "v1=", tolerance: int = 300) -> bool:
        """Svix order: fields present, timestamp fresh, then the signature in constant time."""
        timestamp = rec.headers.get("x-timestamp")
        signature = rec.headers.get("x-signature")
        if not timestamp or not signature or not timestamp.isdigit():
            return False
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
        mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + rec.body, hashlib.sha256)
        return hmac.compare_digest(signature, prefix + mac.hexdigest())

    # -- simulated PBXs ---------------------------------------------------------------------

    async def _generic(self, rec: Recorded, m: re.Match[str]) -> Response:
        kind, *args = self.generic_auth or ("none",)
        if kind == "bearer":
            ok = hmac.compare_digest(rec.headers.get("authorization", ""), f"Bearer {SECRET}")
        elif kind == "basic":
            ok = self._basic_ok(rec, args[0])
        elif kind == "hmac":
            ok = self.verify_hmac(rec)
        else:
            ok = kind == "none" or self._bearer_ok(rec)
        if not ok:
            return JSONResponse({"message": "unauthorized"}, 401)
        status, body = self.canned.get(rec.path, (204, None))
        if rec.method != "GET" and 200 <= status < 300:
            self.generic_writes.append(rec)
        return Response(status_code=status) if body is None else JSONResponse(body, status)

    async def _token_3cx(self, rec: Recorded, m: re.Match[str]) -> Response:
        form = rec.form()
        if rec.method != "POST" or form.get("grant_type") != "client_credentials":
            raise Problem("token request must POST grant_type=client_credentials")
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != SECRET:
            return JSONResponse({"error": "invalid_client"}, 400)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "access_token": self._issue(),
                "refresh_token": None,
            }
        )

    async def _bicom(self, rec: Recorded, m: re.Match[str]) -> Response:
        p = rec.params
        if rec.method not in ("GET", "POST"):
            raise Problem("PBXware takes GET or POST")
        if not hmac.compare_digest(p.get("apikey", ""), SECRET):
            return JSONResponse({"error": "Invalid API key."})
        if p.get("server") != "3":
            return JSONResponse({"error": "Invalid server."})
        action = p.get("action")
        if action == "pbxware.ext.list":
            return JSONResponse(
                {
                    "42": {
                        "name": "Alice",
                        "email": "alice@example.com",
                        "ext": "1001",
                        "protocol": "sip",
                        "status": "active",
                    },
                    "43": {
                        "name": "Bob",
                        "email": "bob@example.com",
                        "ext": "1002",
                        "protocol": "sip",
                        "status": "active",
                    },
                }
            )
        ext = self.state["bicom"].get(p.get("id", ""))
        if ext is None or "ext" in p:
            return JSONResponse({"error": "Extension not found."})
        if action == "pbxware.ext.es.dnd.configuration":
            return JSONResponse(ext)
        if action == "pbxware.ext.es.dnd.edit":
            if p.get("dnd") not in ("0", "1", "2"):
                raise Problem("dnd must be 0, 1 or 2")
            if p["dnd"] != "0" and (
                p.get("dsttype") not in ("voicemail", "call forward") or not p.get("dst")
            ):
                raise Problem("dsttype voicemail|call forward and dst are needed")
            ext.update({k: p[k] for k in ("dnd", "dst", "dsttype", "duration") if k in p})
            return JSONResponse({"success": "DND updated.", "dnd": p["dnd"]})
        return JSONResponse({"error": "Unknown action."})

    async def _threecx(self, rec: Recorded, m: re.Match[str]) -> Response:
        if not self._bearer_ok(rec):
            return JSONResponse({"error": "unauthorized"}, 401)
        users = self.state["3cx"]
        if m.group("id") is None:
            skip = int(rec.params.get("$skip", "0"))
            ids = sorted(users)[skip : skip + self.page_size]
            page: dict[str, Any] = {
                "value": [
                    {
                        "Id": i,
                        "Number": str(94 + i),
                        "EmailAddress": f"u{i}@example.com",
                        "DisplayName": f"User {i}",
                    }
                    for i in ids
                ]
            }
            if skip + self.page_size < len(users):
                page["@odata.nextLink"] = (
                    f"{self.url}/xapi/v1/Users?$select="
                    f"{rec.params.get('$select', '')}"
                    f"&$skip={skip + self.page_size}"
                )
            return JSONResponse(page)
        user_id = int(m.group("id"))
        if user_id not in users:
            return JSONResponse({"error": {"message": "Not found"}}, 404)
        if rec.method == "GET":
            return JSONResponse({"CurrentProfileName": users[user_id]})
        body = self._json(rec)
        if rec.method != "PATCH" or set(body) != {"CurrentProfileName"}:
            raise Problem("expected PATCH with {CurrentProfileName}")
        if body["CurrentProfileName"] not in THREECX_PROFILES:
            raise Problem(f"unknown profile {body['CurrentProfileName']!r}")
        users[user_id] = body["CurrentProfileName"]
        return Response(status_code=204)

    async def _freepbx(self, rec: Recorded, m: re.Match[str]) -> Response:
        if not self._bearer_ok(rec):
            return JSONResponse({"error": "unauthorized"}, 401)
        if self.freepbx_missing_scope is not None:
            return JSONResponse(
                {"status": False, "message": "unauthorized"}, self.freepbx_missing_scope
            )
        ext = m.group("ext")
        if rec.method == "GET":
            # The AstDB value of DND/<ext>; a missing key reads as false.
            return JSONResponse({"status": self.state["freepbx"].get(ext) or False})
        body = self._json(rec)
        if rec.method != "PUT" or body not in ({"status": "YES"}, {"status": ""}):
            raise Problem('expected PUT {"status": "YES" | ""}')
        if ext not in self.freepbx_ami_refuses:
            self.state["freepbx"][ext] = body["status"]
        return JSONResponse(True)  # whatever the AMI calls did

    async def _starface_login(self, rec: Recorded, m: re.Match[str]) -> Response:
        if rec.method == "GET":
            nonce = f"nonce-{len(self._nonces) + 1}"
            self._nonces.add(nonce)
            return JSONResponse({"loginType": "Internal", "nonce": nonce, "secret": None})
        body = self._json(rec)
        if rec.headers.get("x-version") != "2" or set(body) != {"loginType", "nonce", "secret"}:
            raise Problem("login POST needs X-Version 2 and {loginType, nonce, secret}")
        nonce = body["nonce"]
        inner = hashlib.sha512(SECRET.encode()).hexdigest()
        expected = "alice:" + hashlib.sha512(f"alice{nonce}{inner}".encode()).hexdigest()
        if nonce not in self._nonces or not hmac.compare_digest(body["secret"], expected):
            return JSONResponse({"message": "login failed"}, 401)
        self._nonces.discard(nonce)
        return JSONResponse({"token": self._issue()})

    async def _starface(self, rec: Recorded, m: re.Match[str]) -> Response:
        if rec.headers.get("x-version") != "2":
            raise Problem("X-Version: 2 is required")
        if rec.headers.get("authtoken") not in self._tokens:
            return JSONResponse({"message": "unauthorized"}, 401)
        if m.group("id") is None:
            return JSONResponse(
                [
                    {
                        "id": "0815",
                        "login": "alice",
                        "firstName": "Alice",
                        "familyName": "A",
                        "email": "alice@example.com",
                    }
                ]
            )
        config = self.state["starface"].get(m.group("id"))
        if config is None:
            return JSONResponse({"message": "not found"}, 404)
        if rec.method == "GET":
            return JSONResponse(config)
        body = self._json(rec)
        if (
            rec.method != "PUT"
            or set(body) != set(STARFACE_PHONECONFIG)
            or not all(isinstance(body[k], t) for k, t in STARFACE_PHONECONFIG.items())
        ):
            raise Problem("PUT phoneconfig needs all four fields with their types")
        if self.starface_unexpected_error:
            # The OpenAPI does not describe this answer's body; this one is the stand-in's.
            return JSONResponse({"message": "Unexpected error"}, 200)
        config.update(body)
        return Response(status_code=204)

    async def _token_ringcentral(self, rec: Recorded, m: re.Match[str]) -> Response:
        form = rec.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            raise Problem("expected the jwt-bearer grant")
        if not self._basic_ok(rec, CLIENT_ID) or form.get("assertion") != JWT:
            return JSONResponse({"error": "invalid_client"}, 401)
        return JSONResponse(
            {
                "access_token": self._issue(),
                "token_type": "bearer",
                "expires_in": self.token_lifetime,
            }
        )

    async def _ringcentral(self, rec: Recorded, m: re.Match[str]) -> Response:
        if not self._bearer_ok(rec):
            return JSONResponse({"errorCode": "TokenInvalid"}, 401)
        if m.group("id") is None:
            page = int(rec.params.get("page", "1"))
            rows = [
                {"id": 101, "extensionNumber": "101", "contact": {"email": "a@example.com"}},
                {"id": 102, "extensionNumber": "102", "contact": {"email": "b@example.com"}},
            ]
            nav: dict[str, Any] = {}
            if page < len(rows):
                nav["nextPage"] = {"uri": f"{self.url}{rec.path}?page={page + 1}"}
            return JSONResponse({"records": rows[page - 1 : page], "navigation": nav})
        presence = self.state["ringcentral"].setdefault(m.group("id"), {})
        if rec.method == "GET":
            return JSONResponse(presence)
        body = self._json(rec)
        if (
            rec.method != "PUT"
            or body.get("userStatus") not in RC_USER
            or body.get("dndStatus") not in RC_DND
        ):
            raise Problem("PUT presence needs userStatus and dndStatus from the documented sets")
        presence.update(body)
        return JSONResponse(presence)

    async def _webex(self, rec: Recorded, m: re.Match[str]) -> Response:
        if not hmac.compare_digest(rec.headers.get("authorization", ""), f"Bearer {SECRET}"):
            return JSONResponse({"message": "unauthorized"}, 401)
        dnd = self.state["webex"].get(m.group("id"))
        if dnd is None:
            return JSONResponse({"message": "not found"}, 404)
        if rec.method == "GET":
            return JSONResponse(dnd)
        body = self._json(rec)
        if rec.method != "PUT" or not isinstance(body.get("enabled"), bool):
            raise Problem("PUT doNotDisturb needs a boolean enabled")
        dnd.update(body)
        return Response(status_code=204)

    async def _pascom(self, rec: Recorded, m: re.Match[str]) -> Response:
        if not self._basic_ok(rec, "moby"):
            return JSONResponse({"message": "unauthorized"}, 401)
        return JSONResponse(
            [
                {
                    "003use_name": "alice",
                    "003use_bez": "Alice",
                    "009ext_extension": "101",
                    "016voi_email": "alice@example.com",
                }
            ]
        )
