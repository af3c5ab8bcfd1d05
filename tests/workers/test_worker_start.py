from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from emulator.harness.tenants import secret_env, tenant_toml, write_env

ROOT = Path(__file__).resolve().parents[2]


def test_bad_pbx_adapter_options_stop_the_worker_with_every_problem(
    tmp_path: Path, redis_url: str
) -> None:
    env = write_env(
        tmp_path,
        tenant_toml(pbx='adapter = "http"\noptions = { timeout = "x" }'),
        PRESENCE_BRIDGE_REDIS_URL=redis_url,
        PATH="/usr/bin:/bin",
        **{secret_env("contoso", "CLIENT_SECRET"): "s"},
    )
    result = subprocess.run(
        [sys.executable, "-m", "workers"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert "pbx.options" in result.stderr
