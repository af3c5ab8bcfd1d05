"""Reconcile against the Graph emulator with the real msal, real Redis and the real webhook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from core import certificates
from core.settings import Settings
from core.state import certificates as cert_state
from core.state import subscriptions as sub_state
from subscriptions import actions
from subscriptions import reconcile as rc
from tests.subscriptions.conftest import TENANT, Bridge, covered


def test_1400_users_over_3_accounts_make_3_subscriptions_of_at_most_650(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=1400, accounts=3)
    report = bridge.reconcile()
    live = bridge.live()
    assert sorted(report.created) == sorted(bridge.accounts)
    assert len(live) == 3
    assert all(len(s.user_ids) <= 650 for s in live)
    assert set(covered(bridge).values()) == {1}
    assert {s.creator_id for s in live} == {bridge.account_id(a) for a in bridge.accounts}


def test_a_fourth_account_takes_a_share_and_moves_few_subscriptions(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=1400, accounts=3)
    bridge.reconcile()
    before = {s.id for s in bridge.live()}
    (fourth,) = bridge.add_accounts(1)
    report = bridge.reconcile()
    live = bridge.live()
    assert len(live) == 4
    assert all(len(s.user_ids) <= 650 for s in live)
    assert set(covered(bridge).values()) == {1}
    assert fourth in report.created
    assert len(before & {s.id for s in live}) == 2  # only the donor was recreated


def test_users_who_leave_and_join_are_rebalanced(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=60, accounts=2)
    bridge.reconcile()
    bridge.unlink(bridge.users[:10])
    joined = bridge.control.seed_users(bridge.tenant_id, count=5, prefix="late")
    bridge.link(joined)
    bridge.reconcile()
    assert set(covered(bridge)) == set(bridge.users[10:]) | set(joined)
    assert set(covered(bridge).values()) == {1}
    assert sum(len(s.user_ids) for s in bridge.live()) == 55


def test_renewal_is_a_patch_that_keeps_the_subscription(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    bridge.control.advance_clock(45 * 60)  # inside the 20-minute renewal window
    report = bridge.reconcile()
    (after,) = bridge.live()
    assert report.renewed == bridge.accounts
    assert after.id == sub.id
    assert after.expiration - bridge.emulator.world.clock.now() > 55 * 60


def test_nothing_is_renewed_long_before_expiry(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    report = bridge.reconcile()
    assert (report.created, report.renewed, report.deleted) == ([], [], [])


def test_a_subscription_gone_at_graph_is_recreated_on_404(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    assert bridge.context().graph(bridge.accounts[0]).delete_subscription(sub.id)
    bridge.control.advance_clock(45 * 60)
    report = bridge.reconcile()
    (after,) = bridge.live()
    assert report.recreated == bridge.accounts
    assert after.id != sub.id
    assert sub_state.read(bridge.redis, sub.id) is None
    assert sub_state.registered_for(bridge.redis, after.id, TENANT)


def test_a_conflict_adopts_the_subscription_whose_client_state_we_know(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    # The answer to the create was lost: the webhook knows it, the account index does not.
    bridge.redis.delete(sub_state.accounts_key(TENANT))
    report = bridge.reconcile()
    (after,) = bridge.live()
    assert report.adopted == bridge.accounts
    assert after.id == sub.id
    assert sub_state.load(bridge.redis, TENANT)[bridge.accounts[0]].subscription_id == sub.id


def test_a_conflict_with_an_unknown_subscription_deletes_and_recreates(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=20, accounts=1)
    bridge.reconcile()
    (sub,) = bridge.live()
    # Redis lost our records: the clientState of the live subscription is unknown.
    bridge.redis.delete(sub_state.accounts_key(TENANT), sub_state.subscription_key(sub.id))
    report = bridge.reconcile()
    (after,) = bridge.live()
    assert report.recreated == bridge.accounts
    assert after.id != sub.id
    assert sub_state.registered_for(bridge.redis, after.id, TENANT)


def test_throttling_defers_the_account_for_retry_after(
    bridge_factory: Callable[..., Bridge],
) -> None:
    from emulator import faults

    bridge = bridge_factory(users=20, accounts=1)
    faults.add_route_fault(bridge.emulator.world, {
        "kind": "throttle", "path": "/v1.0/subscriptions", "method": "POST", "count": 1,
        "retryAfter": 120,
    })  # fmt: skip
    first = bridge.reconcile()
    second = bridge.reconcile()  # within Retry-After: not even tried
    bridge.control.advance_clock(121)
    third = bridge.reconcile()
    assert first.deferred and not first.created
    assert second.deferred == {bridge.accounts[0]: "backing off"}
    assert third.created == bridge.accounts


def test_server_errors_back_off_and_the_users_are_polled_meanwhile(
    bridge_factory: Callable[..., Bridge],
) -> None:
    from emulator import faults

    bridge = bridge_factory(users=20, accounts=1)
    faults.add_route_fault(bridge.emulator.world, {
        "kind": "error", "status": 502, "path": "/v1.0/subscriptions", "method": "POST",
        "count": 1,
    })  # fmt: skip
    report = bridge.reconcile()
    assert bridge.accounts[0] in report.deferred
    assert sorted(sub_state.polled_users(bridge.redis, TENANT)) == sorted(bridge.users)
    bridge.control.advance_clock(rc.BACKOFF_BASE_SECONDS * 2)
    assert bridge.reconcile().created == bridge.accounts
    assert sub_state.polled_users(bridge.redis, TENANT) == []


def test_users_beyond_capacity_are_polled_with_a_latency_bound(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=700, accounts=1)
    report = bridge.reconcile()
    status = sub_state.read_status(bridge.redis, TENANT)
    assert status is not None
    assert report.polled == 50 == status.polled
    assert len(sub_state.polled_users(bridge.redis, TENANT)) == 50
    assert (status.polling_latency_bound or 0) > 0


def test_a_revoked_account_drops_out_and_its_users_are_polled(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=1400, accounts=3)
    bridge.reconcile()
    revoked = bridge.accounts[0]
    bridge.control.revoke_user(bridge.tenant_id, bridge.account_id(revoked))
    bridge.control.advance_clock(45 * 60)
    bridge.reconcile()  # its access token still works (as at Entra: revocation stops refreshes)
    bridge.control.advance_clock(45 * 60)  # now the renewal needs a refresh, which is refused
    first = bridge.reconcile()
    second = bridge.reconcile()
    health = bridge.auth.account_health(TENANT)
    assert revoked in first.failed
    assert [h.account for h in health if h.status == "needs_sign_in"] == [revoked]
    assert revoked in second.deleted or revoked not in sub_state.load(bridge.redis, TENANT)
    assert len(sub_state.polled_users(bridge.redis, TENANT)) == 1400 - 2 * 650
    revoked_id = bridge.account_id(revoked)
    assert sum(len(s.user_ids) for s in bridge.live() if s.creator_id != revoked_id) == 1300


def test_a_disabled_tenant_deletes_its_subscriptions(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(users=20, accounts=2)
    bridge.reconcile()
    bridge.replace_settings(
        Settings(
            process=bridge.settings.process,
            tenants=(bridge.tenant.model_copy(update={"enabled": False}),),
        )
    )
    report = bridge.reconcile()
    assert sorted(report.deleted) == sorted(bridge.accounts)
    assert bridge.live() == []
    assert sub_state.load(bridge.redis, TENANT) == {}


def test_rich_notifications_carry_a_certificate_whose_key_is_stored_encrypted(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=20, accounts=1, rich_notifications=True)
    bridge.reconcile()
    (sub,) = bridge.live()
    cert_id = sub.encryption_certificate_id
    assert sub.include_resource_data and cert_id
    raw = bridge.redis.hget(cert_state.certificates_key(TENANT), cert_id)
    assert raw is not None and b"PRIVATE KEY" not in raw
    pem = certificates.private_key(bridge.redis, bridge.auth.cipher(), TENANT, cert_id)
    assert pem is not None and pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_a_rotated_certificate_rides_on_the_renewal_and_the_old_key_is_kept(
    bridge_factory: Callable[..., Bridge],
) -> None:
    bridge = bridge_factory(users=20, accounts=1, rich_notifications=True)
    bridge.reconcile()
    (sub,) = bridge.live()
    old = sub.encryption_certificate_id
    assert old is not None
    current = certificates.current_certificate(bridge.redis, TENANT)
    assert current is not None
    # Make the current certificate due for rotation.
    entry = cert_state.read(bridge.redis, TENANT, old)
    assert entry is not None
    aged = replace(entry, created_at=entry.created_at - actions.CERTIFICATE_ROTATE_AFTER_SECONDS)
    cert_state.add(bridge.redis, TENANT, old, aged)
    bridge.control.advance_clock(45 * 60)
    bridge.reconcile()
    (after,) = bridge.live()
    assert after.id == sub.id
    assert after.encryption_certificate_id not in (None, old)
    # Graph may still retry with it.
    assert old in cert_state.certificate_ids(bridge.redis, TENANT)
