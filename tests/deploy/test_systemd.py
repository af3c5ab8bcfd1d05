"""deploy/systemd: units systemd accepts as written, hardened, one per Procfile process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/presence-bridge"
# The units a host enables; the worker is a template, verified as its first instance.
ENABLED = [
    "presence-bridge-web.service",
    "presence-bridge-worker@1.service",
    "presence-bridge-clock.service",
    "presence-bridge-callstate.service",
    "presence-bridge.target",
]


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        raise RuntimeError("systemd-analyze is not installed; `make setup` installs systemd")
    return found


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units with the install path pointed at this virtualenv: verify checks ExecStart."""
    venv = Path(sys.executable).parent.parent
    for unit in UNITS.iterdir():
        if unit.suffix in {".service", ".target"}:
            text = unit.read_text().replace(f"{INSTALLED}/venv", str(venv))
            (tmp_path / unit.name).write_text(text.replace(INSTALLED, str(ROOT)))
    return tmp_path


def verify(units: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - systemd's own tool on our units
        [analyze(), "verify", "--man=no", "--generators=no", *(f"./{n}" for n in names)],
        cwd=units, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_systemd_accepts_every_unit_without_a_word(units: Path) -> None:
    # verify exits 0 on keys it ignores; anything it prints is a mistake in a unit.
    result = verify(units, *ENABLED)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_a_mistyped_key_is_caught(units: Path) -> None:
    """The check above can fail: systemd names a key it does not know."""
    unit = units / "presence-bridge-web.service"
    unit.write_text(unit.read_text().replace("ProtectHome=", "ProtectHomee="))
    assert "Unknown key 'ProtectHomee'" in verify(units, unit.name).stderr


@pytest.mark.parametrize("name", ENABLED[:-1])
def test_every_unit_is_hardened_to_an_exposure_of_at_most_2(units: Path, name: str) -> None:
    # systemd's own score, 0 (locked down) to 10 (unprotected); --threshold is it times ten.
    result = subprocess.run(  # noqa: S603 - systemd's own tool on our units
        [analyze(), "security", "--offline=yes", "--threshold=20", f"./{name}"],
        cwd=units, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize(
    ("unit", "module"),
    [("web", "webhook"), ("worker@", "workers"), ("clock", "subscriptions"),
     ("callstate", "workers.callstate")],
)  # fmt: skip
def test_each_unit_runs_its_procfile_process(unit: str, module: str) -> None:
    text = (UNITS / f"presence-bridge-{unit}.service").read_text()
    procfile = (ROOT / "Procfile").read_text()
    assert f"ExecStart={INSTALLED}/venv/bin/python -m {module}\n" in text
    assert f"python -m {module}\n" in procfile
    for line in ("User=presence-bridge", "EnvironmentFile=/etc/presence-bridge/env",
                 "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict"):  # fmt: skip
        assert line in text.splitlines()
