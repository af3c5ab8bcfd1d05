from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import load_settings

GOOD = """
[[tenants]]
name = "contoso"
tenant_id = "11111111-2222-3333-4444-555555555555"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
public_base_url = "https://bridge.example.com"
"""
SECRET_ENV = "PRESENCE_BRIDGE_TENANT_CONTOSO_CLIENT_SECRET"  # noqa: S105 - a name, not a secret


def env_for(path: Path, **extra: str) -> dict[str, str]:
    return {"PRESENCE_BRIDGE_TENANTS_FILE": str(path), **extra}


def test_no_tenants_file_means_no_tenants() -> None:
    assert load_settings({}).tenants == ()


def test_a_good_file_with_its_secret_loads(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    settings = load_settings(env_for(path, **{SECRET_ENV: "s3cret-value"}))
    tenant = settings.tenants[0]
    assert tenant.client_secret is not None
    assert tenant.client_secret.get_secret_value() == "s3cret-value"


def test_secret_never_shows_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    settings = load_settings(env_for(path, **{SECRET_ENV: "s3cret-value"}))
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings)


def test_every_problem_is_listed_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text("""
[[tenants]]
name = "Bad Name"
client_id = "x"
public_base_url = "not a url"
mapping = { preset = "nope" }
""")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(path, PRESENCE_BRIDGE_PORT="99999"))
    text = str(caught.value)
    for expected in [
        "PORT",
        "tenants[0].name",
        "tenants[0].tenant_id",
        "tenants[0].public_base_url",
        "tenants[0].mapping.preset",
    ]:
        assert expected in text


def test_missing_secret_names_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(path))
    assert SECRET_ENV in str(caught.value)


def test_secret_written_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD + 'client_secret = "in-file-secret"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(path, **{SECRET_ENV: "s"}))
    assert "tenants[0].client_secret" in str(caught.value)
    assert "in-file-secret" not in str(caught.value)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text("[[tenants]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env_for(path))


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env_for(tmp_path / "absent.toml"))


@pytest.mark.parametrize("module", ["webhook", "workers", "subscriptions"])
def test_bad_config_stops_each_process_with_exit_code_2(tmp_path: Path, module: str) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    result = subprocess.run(  # noqa: S603 - our own module, by this interpreter
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PRESENCE_BRIDGE_TENANTS_FILE": str(path)},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert SECRET_ENV in result.stderr
