"""The user's own PBX profile comes back: what the PBX shows before a sticky profile begins is
read, and a change the PBX reports is taken for the user's. Our own writes read back count
for neither (`core.state.delivery.own_profiles`); the rules are pure (`workers.profile_state`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from redis import Redis

from core.errors import PbxError
from core.queue import ProfileReport
from core.state import delivery, links, profiles
from core.state.backoff import Backoff
from core.state.profiles import ProfileState
from workers.delivery import PbxTurn, is_pbx_wide
from workers.pbx.base import BatchRead, PbxAdapter, ProfileChange
from workers.profile_state import take_reported

log = logging.getLogger("workers.restore")

# The results a report leaves in the user's event log (the status page and the CLI show them).
REPORT_TAKEN = "set on the PBX"  # the user's own choice: now the desired profile
REPORT_NO_CHANGE = "reported, no change"  # our own write read back, or what is shown already


def read_shown(
    adapter: PbxAdapter, users: Sequence[str], shared: Backoff | None = None
) -> dict[str, str]:
    """What the PBX shows for each user, where it can tell. A PBX that is away, or backs
    off (`shared`), is not asked further: the writes that follow wait, the reads are not
    needed."""
    if shared is None:
        return _read_shown(adapter, users, None)
    turn = PbxTurn(shared)
    try:
        return _read_shown(adapter, users, turn) if turn.go else {}
    finally:
        turn.close()


def _read_shown(adapter: PbxAdapter, users: Sequence[str], turn: PbxTurn | None) -> dict[str, str]:
    if isinstance(adapter, BatchRead):
        try:
            shown = adapter.read_many(list(users))
        except PbxError as exc:
            log.warning("pbx read before a sticky profile failed", extra={"error": str(exc)})
            _verdict(turn, exc)
            return {}
        _verdict(turn, None)
        return shown
    shown = {}
    for user in users:
        try:
            profile = adapter.read_profile(user)
        except PbxError as exc:
            log.warning(
                "pbx read before a sticky profile failed",
                extra={"user": user, "error": str(exc), "transient": exc.transient},
            )
            _verdict(turn, exc)
            if exc.transient:
                break
            continue
        _verdict(turn, None)
        if profile is not None:
            shown[user] = profile
    return shown


def _verdict(turn: PbxTurn | None, exc: PbxError | None) -> None:
    if turn is None:
        return
    if exc is not None and is_pbx_wide(exc):
        turn.away(exc)
    else:
        turn.answered()


@dataclass
class ReportOutcome:
    changes: list[ProfileChange] = field(default_factory=list)  # the users' own choices
    publish: list[str] = field(default_factory=list)  # still to be published by the bridge


def _latest_reports(reports: Sequence[ProfileReport]) -> dict[str, ProfileReport]:
    """Per user, the newest report (the PBX's own order; the later one wins a tie)."""
    latest: dict[str, ProfileReport] = {}
    for report in reports:
        seen = latest.get(report.user)
        if seen is None or report.at >= seen.at:
            latest[report.user] = report
    return latest


def take_reports(
    redis: Redis,
    tenant: str,
    reports: Sequence[ProfileReport],
    static_links: Mapping[str, list[str]] | None = None,
) -> ReportOutcome:
    """Record the users' own choices: the state machine's `set_manual`, then a desired record
    that is applied already where the PBX shows it (or left for the caller to publish)."""
    outcome = ReportOutcome()
    latest = _latest_reports(reports)
    # A user no Teams user drives has no profile state to keep.
    users = [u for u in sorted(latest) if links.graph_ids_of(redis, tenant, u, static_links)]
    if not users:
        return outcome
    stored = profiles.load(redis, tenant, users)
    own = delivery.own_profiles(redis, tenant, users)
    states: dict[str, ProfileState] = {}
    events = []
    for user in users:
        report = latest[user]
        state, profile = take_reported(stored.get(user) or ProfileState(), report.profile,
                                       own[user], report.matches)  # fmt: skip
        result = REPORT_TAKEN if profile is not None else REPORT_NO_CHANGE
        events.append((user, {"profile": report.profile, "source": report.source,
                              "result": result}))  # fmt: skip
        if profile is None:
            continue
        states[user] = state
        outcome.changes.append(ProfileChange(user, profile, state.availability, state.activity))
    pipe = redis.pipeline(transaction=False)
    profiles.save(pipe, tenant, states)
    profiles.record_events(pipe, tenant, events)
    pipe.execute()
    made = delivery.set_desired(redis, tenant, outcome.changes)
    # The PBX shows these already: writing them again could only overwrite what the user set
    # beside the profile (a presence message, say).
    delivery.mark_applied(
        redis, tenant, [d for d in made if latest[d.user].on_pbx], {"by": "the user, on the PBX"}
    )
    outcome.publish = [d.user for d in made if not latest[d.user].on_pbx]
    return outcome
