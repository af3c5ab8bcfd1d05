"""A subscription's life: expiry, removal, and the lifecycle notifications Graph sends."""

from __future__ import annotations

from typing import Any

from emulator.delivery import Item, engine_for, graph_time, setting
from emulator.world import Subscription, World, extension

LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


def live(world: World, sub_id: str) -> Subscription | None:
    """A subscription that exists and has not expired; expired ones are forgotten."""
    with world.lock:
        sub = world.subscriptions.get(sub_id)
        if sub is not None and sub.expiration <= world.clock.now():
            remove(world, sub)
            return None
        return sub


def remove(world: World, sub: Subscription) -> None:
    engine = engine_for(world)
    with world.lock:
        world.subscriptions.pop(sub.id, None)
        for user_id in sub.user_ids:
            ids = engine.index.get(user_id)
            if ids is not None:
                ids.discard(sub.id)
                if not ids:
                    del engine.index[user_id]


def send_lifecycle(world: World, sub: Subscription, event: str) -> bool:
    """Queue one lifecycle notification; False when the subscription has no lifecycle URL."""
    if sub.lifecycle_notification_url is None:
        return False  # Graph sends none to subscriptions created without one
    payload = {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": graph_time(sub.expiration, suffix="+00:00"),
        "tenantId": sub.tenant_id,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    }
    engine = engine_for(world)
    engine.enqueue(
        Item(sub.lifecycle_notification_url, payload, "lifecycle", sub.id, world.clock.now())
    )
    return True


def _reauth_state(world: World) -> dict[str, float]:
    return extension(world, "subscriptions.reauth_sent", dict)


def watch(world: World, sub: Subscription) -> None:
    """Schedule the reauthorizationRequired check for when the token or subscription nears end."""
    lead = float(setting(world, "reauthorization_lead"))
    deadline = min(sub.expiration, sub.token_expires_at or sub.expiration)
    engine_for(world).scheduler.at(deadline - lead, lambda: _check_reauth(world, sub.id))


def _check_reauth(world: World, sub_id: str) -> None:
    sub = live(world, sub_id)
    if sub is None:
        return
    now = world.clock.now()
    lead = float(setting(world, "reauthorization_lead"))
    every = float(setting(world, "reauthorization_every"))
    deadline = min(sub.expiration, sub.token_expires_at or sub.expiration)
    if deadline - now > lead:
        return  # renewed since this check was scheduled
    sent = _reauth_state(world)
    last = sent.get(sub_id)
    due = last is None or now - last >= every - 1e-6
    if due and send_lifecycle(world, sub, "reauthorizationRequired"):
        sent[sub_id] = now
    engine_for(world).scheduler.at(now + every, lambda: _check_reauth(world, sub_id))


def reauthorized(world: World, sub: Subscription, claims: dict[str, Any]) -> None:
    sub.token_expires_at = float(claims.get("exp", 0))
    _reauth_state(world).pop(sub.id, None)
    watch(world, sub)
    engine_for(world).release(sub.id)
