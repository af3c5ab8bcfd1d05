"""The demo tenant and the scenario runner that plays presence changes into the world."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulator.control import ControlClient
from emulator.delivery import graph_time
from emulator.demo import (
    DEMO_CLIENT_ID,
    DEMO_TENANT_ID,
    PASSWORD_ENV,
    SECRET_ENV,
    ScenarioRunner,
    demo_user_id,
    seed_demo,
)
from emulator.server import EmulatorServer
from emulator.world import World
from tests.emulator.conftest import poll
from tests.emulator.graph import password_token, presence_subscription
from tests.emulator.subscriber import Subscriber, running_subscriber


@pytest.fixture
def server(emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    return emulator_factory()


@pytest.fixture
def control(server: EmulatorServer) -> Iterator[ControlClient]:
    with server.control() as client:
        yield client


def changed_users(world: World, user_ids: list[str]) -> list[str]:
    with world.lock:
        presence = world.tenant(DEMO_TENANT_ID).presence
        return [u for u in user_ids if u in presence and presence[u].sequence > 0]


def test_demo_ids_are_stable() -> None:
    assert demo_user_id(7) == demo_user_id(7) != demo_user_id(8)


def test_seed_demo_has_fixed_ids_and_a_service_account(
    server: EmulatorServer, control: ControlClient
) -> None:
    demo = seed_demo(control, users=700, base_url=server.base_url)
    assert (demo["tenant_id"], demo["client_id"]) == (DEMO_TENANT_ID, DEMO_CLIENT_ID)
    assert demo["user_ids"][:2] == [demo_user_id(0), demo_user_id(1)]
    assert len(demo["service_accounts"]) == 2  # one per 650 users
    assert demo["authority"] == f"{server.base_url}/demo"


def test_seed_demo_takes_credentials_from_the_environment(
    server: EmulatorServer, control: ControlClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "from-env-secret")
    monkeypatch.setenv(PASSWORD_ENV, "from-env-password")
    demo = seed_demo(control, users=1, base_url=server.base_url)
    assert (demo["client_secret"], demo["service_account_password"]) == (
        "from-env-secret",
        "from-env-password",
    )


@pytest.mark.parametrize(("options"), [{"scenario": "nope"}, {"speed": 0.0}])
def test_runner_refuses_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ScenarioRunner(World(), DEMO_TENANT_ID, [], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("scenario", ["office-day", "steady"])
def test_runner_changes_presence_in_the_world(
    server: EmulatorServer, control: ControlClient, scenario: str
) -> None:
    ids = seed_demo(control, users=20, base_url=server.base_url)["user_ids"]
    runner = ScenarioRunner(
        server.world,
        DEMO_TENANT_ID,
        ids,
        scenario=scenario,
        speed=3600,
        rate=5.0,
        wait_for_subscription=False,
    ).start()
    try:
        poll(lambda: len(changed_users(server.world, ids)) >= 5, timeout=20.0)
    finally:
        runner.stop()
    assert runner.applied >= 5


def subscribe_as_service_account(
    server: EmulatorServer,
    control: ControlClient,
    demo: dict[str, Any],
    subscriber: Subscriber,
) -> httpx.Response:
    with server.msal_session() as http:
        token = password_token(
            control,
            http,
            authority=server.authority(DEMO_TENANT_ID),
            client_id=DEMO_CLIENT_ID,
            secret=str(demo["client_secret"]),
            username=str(demo["service_accounts"][0]),
            password=str(demo["service_account_password"]),
            redirect_uri=f"{server.base_url}/_emulator/callback",
        )
    ids = list(demo["user_ids"])
    body = presence_subscription(ids, subscriber.url(), graph_time(server.world.clock.now() + 3600))
    assert server.tls is not None
    with httpx.Client(verify=server.tls.client_context()) as client:
        return client.post(
            f"{server.graph_url}/subscriptions",
            json=body,
            headers={"authorization": f"Bearer {token}"},
        )


def test_office_day_waits_for_a_subscription_then_notifies_it(
    server: EmulatorServer, control: ControlClient
) -> None:
    demo = seed_demo(control, users=20, base_url=server.base_url)
    runner = ScenarioRunner(
        server.world, DEMO_TENANT_ID, demo["user_ids"], scenario="office-day", speed=3600
    ).start()
    try:
        with running_subscriber() as subscriber:
            assert not runner.started.is_set()  # nobody has subscribed yet
            assert (
                subscribe_as_service_account(server, control, demo, subscriber).status_code == 201
            )
            items = subscriber.wait_items(5, timeout=30)
    finally:
        runner.stop()
    assert runner.started.is_set()
    notified = {item["resourceData"]["id"] for item in items}
    assert notified <= set(changed_users(server.world, demo["user_ids"]))
