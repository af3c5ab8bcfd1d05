"""Per PBX user: which profile to show, given a stream of mapping decisions. Pure, no I/O.

Rules, in order of precedence:
- a repeated decision is a no-op (Graph resends, and activity changes often map alike);
- a sticky profile (a meeting, a call) is not replaced by automatic decisions while it lasts;
  when its condition ends, a decision that names a profile wins, otherwise the last
  non-sticky profile (automatic or set by the user on the PBX) comes back;
- leaving a sticky profile, and any change made while Teams says Offline/PresenceUnknown,
  waits `hold_seconds`: it applies (from `tick`) only if nothing else was decided meanwhile,
  so flaps and short blips never reach the PBX. Entering a sticky profile is immediate;
- what the PBX shows just before a sticky profile begins is the restore target (`keep_shown`),
  and a change the PBX reports is the user's own (`take_reported`): it wins until Teams next
  decides. Neither counts when it is our own write read back.

The record itself (`ProfileState`) and its stored form belong to `core.state.profiles`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Final

from core.state.profiles import ProfileState
from workers.mapping import Decision, normalise

# Shown when a sticky profile ends and nothing is known about the profile before it:
# pascom and gloCOM both ship a system profile/status of this name.
DEFAULT_PROFILE: Final = "Available"

# Teams reports these for a few seconds while a client restarts or the network blinks.
_BLIP_VALUES: Final = frozenset({"offline", "presenceunknown"})


def step(
    state: ProfileState,
    decision: Decision,
    now: float,
    hold_seconds: float,
    *,
    availability: str = "",
    activity: str = "",
    default_profile: str = DEFAULT_PROFILE,
) -> tuple[ProfileState, str | None]:
    """Feed one decision; return the new state and the profile to apply now, if any."""
    before = state.current
    state = replace(_settle(state, now), availability=availability, activity=activity)
    if (decision.profile, decision.sticky) != (state.last_profile, state.last_sticky):
        blip = normalise(availability) in _BLIP_VALUES or normalise(activity) in _BLIP_VALUES
        state = _decide(state, decision, now, max(hold_seconds, 0.0), blip, default_profile)
    return _emit(before, state)


def tick(state: ProfileState, now: float) -> tuple[ProfileState, str | None]:
    """Apply a damped change whose hold time has passed."""
    return _emit(state.current, _settle(state, now))


def set_manual(state: ProfileState, profile: str) -> ProfileState:
    """The user chose a profile on the PBX: it wins now and becomes the restore target."""
    if profile == state.current:
        # Most likely our own change read back from the PBX: keep any sticky state.
        return state
    return replace(
        state,
        current=profile,
        restore_to=profile,
        sticky_since=None,
        pending_profile=None,
        pending_sticky=False,
        pending_due=None,
        version=state.version + 1,
    )


def enters_sticky(state: ProfileState, decision: Decision) -> bool:
    """Would this decision start a sticky profile? Then it is time to read the PBX first."""
    return (
        decision.sticky
        and decision.profile is not None
        and not state.sticky
        and (decision.profile, decision.sticky) != (state.last_profile, state.last_sticky)
    )


def keep_shown(state: ProfileState, shown: str | None, own: Collection[str]) -> ProfileState:
    """The PBX shows `shown` just before a sticky profile begins: that comes back afterwards.

    `own` names what we wrote and the PBX may still show (the last applied version, one on
    its way); such a read says nothing about the user, nor does a read that cannot tell.
    """
    if shown is None or shown in own:
        return state
    return replace(state, restore_to=shown)


def take_reported(
    state: ProfileState, shown: str, own: Collection[str], also: Collection[str] = ()
) -> tuple[ProfileState, str | None]:
    """The PBX reports that it shows `shown`: unless it is our own write read back (`own`),
    the user chose it there. Returns the new state and the profile that is now desired.

    `also` are the profiles the report is equally consistent with (it saw part of what the
    PBX shows): one of ours among them makes it ours too, as a write of ours on its way."""
    if shown in own or any(profile in own for profile in also):
        return state, None
    after = set_manual(state, shown)
    return after, (shown if after.version != state.version else None)


def _decide(
    state: ProfileState,
    decision: Decision,
    now: float,
    hold_seconds: float,
    blip: bool,
    default_profile: str,
) -> ProfileState:
    # A new decision means any pending one did not hold: drop it.
    state = replace(
        state,
        last_profile=decision.profile,
        last_sticky=decision.sticky,
        pending_profile=None,
        pending_sticky=False,
        pending_due=None,
    )
    if decision.profile is not None:
        profile, sticky = decision.profile, decision.sticky
    elif state.sticky:
        # "Leave unchanged" cannot keep a sticky profile: its condition is what ended.
        profile, sticky = state.restore_to or default_profile, False
    else:
        return state
    if profile != state.current and hold_seconds > 0 and (state.sticky or blip):
        return replace(
            state, pending_profile=profile, pending_sticky=sticky, pending_due=now + hold_seconds
        )
    return _arrive(state, profile, sticky, now)


def _arrive(state: ProfileState, profile: str, sticky: bool, at: float) -> ProfileState:
    if sticky:
        # restore_to is left alone: it still names the profile from before the sticky one.
        since = at if state.sticky_since is None else state.sticky_since
        return replace(state, current=profile, sticky_since=since)
    return replace(state, current=profile, restore_to=profile, sticky_since=None)


def _settle(state: ProfileState, now: float) -> ProfileState:
    if state.pending_due is None or state.pending_profile is None or now < state.pending_due:
        return state
    profile, sticky, due = state.pending_profile, state.pending_sticky, state.pending_due
    cleared = replace(state, pending_profile=None, pending_sticky=False, pending_due=None)
    return _arrive(cleared, profile, sticky, due)


def _emit(before: str | None, state: ProfileState) -> tuple[ProfileState, str | None]:
    if state.current is None or state.current == before:
        return state, None
    return replace(state, version=state.version + 1), state.current
