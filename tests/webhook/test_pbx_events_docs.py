"""The examples of docs/pbx/webhooks.md, run as written against the real web app over loopback:
the shell script (bash, openssl, curl) and the Python sender. The page and the route cannot
drift apart."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from core.standard_webhooks import new_secret
from emulator.harness.served import ServedApp
from emulator.harness.tenants import secret_env
from tests.webhook.conftest import stream_items

DOC = Path(__file__).resolve().parents[2] / "docs" / "pbx" / "webhooks.md"
SECRET = new_secret()


def documented(marker: str, language: str) -> str:
    """The fenced block of `language` right after the comment that starts with `marker`."""
    text = DOC.read_text(encoding="utf-8")
    pattern = re.escape(marker) + rf"[^\n]*-->\n```{language}\n(.*?)\n```\n"
    found = re.search(pattern, text, re.DOTALL)
    assert found, f"{DOC}: no ```{language} block after {marker!r}"
    return found.group(1) + "\n"


@pytest.fixture
def script(tmp_path: Path) -> Path:
    for tool in ("bash", "openssl", "curl", "od"):
        assert shutil.which(tool), f"{tool} is needed to run the documented example"
    path = tmp_path / "report-call.sh"
    path.write_text(documented("<!-- report-call.sh:", "bash"))
    return path


@pytest.fixture
def url(serve_contoso: Callable[..., ServedApp]) -> str:
    secrets = {secret_env("contoso", "PBX_EVENTS_SECRET"): f"{new_secret()},{SECRET}"}
    return serve_contoso(**secrets).url


def run(
    script: Path, url: str, *args: str, secret: str = SECRET
) -> subprocess.CompletedProcess[str]:
    """The script in a bare environment: only PATH and the three variables it documents."""
    env = {"PATH": os.environ["PATH"], "BRIDGE_URL": url, "BRIDGE_TENANT": "contoso"}
    return subprocess.run(  # noqa: S603 (our own documented script, fixed arguments)
        [str(shutil.which("bash")), str(script), *args],
        env=env | {"PBX_EVENTS_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_documented_script_reports_a_call_start_and_end(
    script: Path, url: str, redis_client: redis.Redis
) -> None:
    for kind in ("call_started", "call_ended"):
        done = run(script, url, kind, "alice", "1763794800.42")
        assert (done.returncode, done.stderr) == (0, "")
    assert [e["item"] for e in stream_items(redis_client)] == [
        {"type": kind, "user": "alice", "call_id": "1763794800.42"}
        for kind in ("call_started", "call_ended")
    ]


def test_the_documented_script_fails_loudly_on_a_refusal(
    script: Path, url: str, redis_client: redis.Redis
) -> None:
    done = run(script, url, "call_started", "alice", "c1", secret=new_secret())
    assert done.returncode != 0
    assert "no signature matches" in done.stdout
    assert stream_items(redis_client) == []


def test_the_documented_python_sender_reports_a_call(url: str, redis_client: redis.Redis) -> None:
    namespace: dict[str, Any] = {}
    exec(documented("<!-- report():", "python"), namespace)  # noqa: S102 (our own docs)
    namespace["report"](url, SECRET, "contoso", "call_started", "bob", "c7")
    assert [e["item"] for e in stream_items(redis_client)] == [
        {"type": "call_started", "user": "bob", "call_id": "c7"}
    ]
