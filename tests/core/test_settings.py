from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.blf_options import BlfSourceOptions
from core.errors import ConfigError
from core.settings import MIN_ADMIN_KEY_CHARS, load_settings

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


def test_a_misspelt_variable_is_reported_with_the_name_it_resembles(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    env = env_for(
        path,
        PRESENCE_BRIDGE_ADMIN_APIKEY="k",
        PRESENCE_BRIDGE_PORT="99999",
        PRESENCE_BRIDGE_NOT_A_THING="1",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.problems == [
        "PRESENCE_BRIDGE_PORT: Input should be less than or equal to 65535",
        f"tenants[0]: Value error, needs a client secret ({SECRET_ENV}) or a [certificate] table",
        "PRESENCE_BRIDGE_ADMIN_APIKEY: not a setting of presence-bridge; "
        "did you mean PRESENCE_BRIDGE_ADMIN_API_KEY?",
        "PRESENCE_BRIDGE_NOT_A_THING: not a setting of presence-bridge",
    ]


def test_a_secret_for_a_tenant_not_in_the_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    typo = "PRESENCE_BRIDGE_TENANT_CONTOSSO_PBX_SECRET"  # noqa: S105 - a name, not a secret
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(path, **{SECRET_ENV: "s", typo: "p"}))
    assert caught.value.problems == [
        f"{typo}: not a setting of presence-bridge; "
        "did you mean PRESENCE_BRIDGE_TENANT_CONTOSO_PBX_SECRET?"
    ]


def test_variables_read_outside_the_processes_are_known(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    env = env_for(
        path,
        **{
            SECRET_ENV: "s",
            "PRESENCE_BRIDGE_TENANT_CONTOSO_PBX_SECRET": "p",
            "PRESENCE_BRIDGE_TENANT_CONTOSO_CERT_PASSPHRASE": "c",
            "PRESENCE_BRIDGE_DEMO": "0",  # make run's switches
            "PRESENCE_BRIDGE_DEMO_DIR": str(tmp_path),
            "PRESENCE_BRIDGE_LOG_LEVEL": "DEBUG",
            "REDIS_URL": "redis://127.0.0.1:6379/1",  # not ours: never reported
            "PRESENCE_BRIDGEFOO": "x",
        },
    )
    assert load_settings(env).tenants[0].name == "contoso"


def test_tenant_secrets_are_not_judged_while_the_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text("[[tenants]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(path, **{SECRET_ENV: "s"}))
    assert len(caught.value.problems) == 1
    assert "not valid TOML" in caught.value.problems[0]


def test_without_a_tenants_file_a_tenant_secret_is_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({SECRET_ENV: "s"})
    assert caught.value.problems == [f"{SECRET_ENV}: not a setting of presence-bridge"]


@pytest.mark.parametrize("module", ["webhook", "workers", "subscriptions", "workers.callstate"])
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


def test_an_unknown_variable_stops_a_process_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    result = subprocess.run(  # noqa: S603 - our own module, by this interpreter
        [sys.executable, "-m", "webhook"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "PRESENCE_BRIDGE_TENANTS_FILE": str(path),
            SECRET_ENV: "s",
            "PRESENCE_BRIDGE_ADMIN_API_KY": "k",
        },
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert "did you mean PRESENCE_BRIDGE_ADMIN_API_KEY?" in result.stderr


ASTERISK = (
    GOOD
    + """
[tenants.pbx]
adapter = "asterisk"
options = { host = "10.0.0.5", username = "bridge-status", tls = true, port = 5039 }

[tenants.pbx.callstate]
source = "ami"
options = { host = "10.0.0.5", username = "bridge-calls", busy_from = "ringing" }

[[tenants.pbx_users]]
username = "alice"
extension = "200"

[[tenants.pbx_users]]
username = "201"
"""
)
PBX_SECRET_ENV = "PRESENCE_BRIDGE_TENANT_CONTOSO_PBX_SECRET"  # noqa: S105 - a name
CALLSTATE_SECRET_ENV = "PRESENCE_BRIDGE_TENANT_CONTOSO_CALLSTATE_SECRET"  # noqa: S105 - a name


def test_the_asterisk_adapter_and_the_ami_source_load_typed(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(ASTERISK)
    env = env_for(path, **{SECRET_ENV: "s", PBX_SECRET_ENV: "p", CALLSTATE_SECRET_ENV: "c"})
    pbx = load_settings(env).tenants[0].pbx
    assert (pbx.asterisk_options.host, pbx.asterisk_options.port) == ("10.0.0.5", 5039)
    assert pbx.asterisk_options.tls and pbx.asterisk_options.dnd  # a default
    assert pbx.callstate is not None and pbx.callstate.source == "ami"
    assert (pbx.callstate.options.username, pbx.callstate.options.busy_from) == (
        "bridge-calls",
        "ringing",
    )
    assert pbx.callstate.secret is not None and pbx.callstate.secret.get_secret_value() == "c"


def test_extensions_come_from_the_pbx_users_and_fall_back_to_the_username(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(ASTERISK)
    env = env_for(path, **{SECRET_ENV: "s", PBX_SECRET_ENV: "p", CALLSTATE_SECRET_ENV: "c"})
    tenant = load_settings(env).tenants[0]
    assert tenant.pbx_extensions() == {"alice": "200"}
    assert tenant.users_by_extension() == {"200": "alice", "201": "201"}


def test_asterisk_problems_are_listed_with_every_other_problem(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(
        GOOD
        + """
[tenants.pbx]
adapter = "asterisk"
options = { host = "pbx example", username = "bridge", presence_provider = "CustomPresence:me" }
[tenants.pbx.callstate]
source = "ami"
options = { host = "10.0.0.5", username = "bridge-calls", busy_from = "maybe" }
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(path, **{SECRET_ENV: "s"}, PRESENCE_BRIDGE_PORT="0"))
    assert caught.value.problems == [
        "PRESENCE_BRIDGE_PORT: Input should be greater than or equal to 1",
        f"tenants[0].pbx.secret: the AMI user's secret is required ({PBX_SECRET_ENV})",
        "tenants[0].pbx.callstate.secret: the AMI user's secret is required "
        f"({CALLSTATE_SECRET_ENV})",
        r"tenants[0].pbx.options.host: String should match pattern '^[A-Za-z0-9.:\[\]-]+$'",
        "tenants[0].pbx.options.presence_provider: Value error, 'CustomPresence:me' must "
        "contain {extension}",
        "tenants[0].pbx.callstate.options.busy_from: Input should be 'answer' or 'ringing'",
    ]


def test_a_call_source_secret_written_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    options = 'busy_from = "ringing" }'
    path.write_text(ASTERISK.replace(options, options + '\nsecret = "x"'))
    env = env_for(path, **{SECRET_ENV: "s", PBX_SECRET_ENV: "p", CALLSTATE_SECRET_ENV: "c"})
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.problems == [
        "tenants[0].pbx.callstate.secret: secrets belong in the environment, not the file"
    ]


def test_other_adapters_have_no_asterisk_options(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    with pytest.raises(ValueError, match="builtin"):
        _ = load_settings(env_for(path, **{SECRET_ENV: "s"})).tenants[0].pbx.asterisk_options


BLF = (
    GOOD
    + """
[tenants.pbx.callstate]
source = "blf"
[tenants.pbx.callstate.options]
host = "pbx.example.net"
domain = "example.net"
from_user = "bridge"
busy_from = "ringing"

[[tenants.pbx_users]]
username = "alice"
extension = "200"
"""
)


def test_the_blf_source_loads_typed_and_needs_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(BLF)
    callstate = load_settings(env_for(path, **{SECRET_ENV: "s"})).tenants[0].pbx.callstate
    assert callstate is not None and callstate.source == "blf"
    assert isinstance(callstate.options, BlfSourceOptions)
    assert (callstate.options.host, callstate.options.port, callstate.options.busy_from) == (
        "pbx.example.net",
        5060,
        "ringing",
    )
    assert callstate.secret is None  # a PBX that does not challenge SUBSCRIBE


def test_the_blf_digest_secret_comes_from_the_callstate_secret(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(BLF)
    env = env_for(path, **{SECRET_ENV: "s", CALLSTATE_SECRET_ENV: "digest"})
    callstate = load_settings(env).tenants[0].pbx.callstate
    assert callstate is not None and callstate.secret is not None
    assert callstate.secret.get_secret_value() == "digest"


def test_blf_problems_are_listed_with_every_other_problem(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(BLF.replace('busy_from = "ringing"', 'busy_from = "maybe"\nexpires = 5'))
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(path, **{SECRET_ENV: "s"}, PRESENCE_BRIDGE_PORT="0"))
    assert caught.value.problems == [
        "PRESENCE_BRIDGE_PORT: Input should be greater than or equal to 1",
        "tenants[0].pbx.callstate.options.expires: Input should be greater than or equal to 10",
        "tenants[0].pbx.callstate.options.busy_from: Input should be 'answer' or 'ringing'",
    ]


def test_an_unknown_call_source_names_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(BLF.replace('source = "blf"', 'source = "tapi"'))
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(path, **{SECRET_ENV: "s"}))
    (problem,) = caught.value.problems
    assert problem.startswith("tenants[0].pbx.callstate: ")
    assert "'ami', 'blf'" in problem


def test_a_short_admin_key_is_listed_with_every_other_problem(tmp_path: Path) -> None:
    short = "k" * (MIN_ADMIN_KEY_CHARS - 1)
    with pytest.raises(ConfigError) as caught:
        load_settings({"PRESENCE_BRIDGE_ADMIN_API_KEY": short, "PRESENCE_BRIDGE_PORT": "0"})
    text = str(caught.value)
    assert (
        f"PRESENCE_BRIDGE_ADMIN_API_KEY: Value error, must be at least {MIN_ADMIN_KEY_CHARS}"
        in text
    )
    assert "PRESENCE_BRIDGE_PORT" in text and short not in text


def test_an_admin_key_of_the_minimum_length_loads() -> None:
    settings = load_settings({"PRESENCE_BRIDGE_ADMIN_API_KEY": "k" * MIN_ADMIN_KEY_CHARS})
    assert settings.process.admin_api_key is not None


def test_forwarded_allow_ips_takes_only_addresses_and_networks() -> None:
    with pytest.raises(ConfigError, match="PRESENCE_BRIDGE_FORWARDED_ALLOW_IPS: .*'proxy.lan'"):
        load_settings({"PRESENCE_BRIDGE_FORWARDED_ALLOW_IPS": "10.0.0.0/8, proxy.lan"})


def test_an_empty_metrics_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PRESENCE_BRIDGE_METRICS_TOKEN: .*empty"):
        load_settings({"PRESENCE_BRIDGE_METRICS_TOKEN": " "})
