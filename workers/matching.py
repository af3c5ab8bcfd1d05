"""Link Graph users to PBX users by one attribute each, and decide which links are enabled.

Pure functions, no I/O. Both sides are indexed by a normalised key, so 100,000 x 100,000
users match in one pass plus a sort.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from core.settings import MatchingSettings, PbxUser
from core.state.directory import Conflict, GraphUser


class PbxUserLike(Protocol):
    """What matching reads of a PBX user (tenants-file `PbxUser` or an adapter's record)."""

    @property
    def username(self) -> str: ...

    @property
    def email(self) -> str | None: ...

    @property
    def extension(self) -> str | None: ...


@dataclass(frozen=True, order=True)
class Link:
    """One Graph user drives one PBX user (named by its PBX username)."""

    graph_id: str
    pbx_user: str


@dataclass(frozen=True)
class MatchResult:
    """Every Graph user and every PBX user lands in exactly one of links, conflicts, unlinked."""

    links: tuple[Link, ...]
    unlinked_graph: tuple[str, ...]
    unlinked_pbx: tuple[str, ...]
    conflicts: tuple[Conflict, ...]

    def pbx_users_by_graph_id(self) -> dict[str, list[str]]:
        """Graph user id -> the PBX usernames it drives (one Graph user may drive several)."""
        out: dict[str, list[str]] = defaultdict(list)
        for link in self.links:
            out[link.graph_id].append(link.pbx_user)
        return dict(out)


def normalise(value: str | None, strip_domain: bool) -> str | None:
    """The comparison key of one attribute value, or None when it must never match."""
    if value is None:
        return None
    key = value.strip().casefold()
    if strip_domain and "@" in key:
        # Both sides are stripped, so "alice@contoso.com" meets "alice" or "alice@fabrikam.com".
        key = key.rpartition("@")[0].strip()
    return key or None


def _pbx_value(user: PbxUserLike, attribute: str) -> str | None:
    if attribute == "username":
        return user.username
    if attribute == "email":
        return user.email
    if attribute == "extension":
        return user.extension
    raise ValueError(f"unknown PBX attribute {attribute!r}")


def _graph_value(user: GraphUser, attribute: str) -> str | None:
    if attribute not in ("userPrincipalName", "mail", "mailNickname", "onPremisesSamAccountName"):
        raise ValueError(f"unknown Graph attribute {attribute!r}")
    value: str | None = getattr(user, attribute)
    return value


def match_users(
    graph_users: Iterable[GraphUser],
    pbx_users: Iterable[PbxUserLike],
    settings: MatchingSettings,
) -> MatchResult:
    """Link users whose chosen attributes are equal, case-insensitively; never guess."""
    graph_by_key: dict[str, list[str]] = defaultdict(list)
    graph_ids: dict[str, None] = {}
    for g in graph_users:
        if g.id in graph_ids:
            continue  # a repeated delta item is the same user
        graph_ids[g.id] = None
        key = normalise(_graph_value(g, settings.graph_attribute), settings.strip_domain)
        if key is not None:
            graph_by_key[key].append(g.id)

    pbx_by_key: dict[str, list[str]] = defaultdict(list)
    unlinked_pbx: list[str] = []
    seen_pbx: set[str] = set()
    for p in pbx_users:
        if p.username in seen_pbx:
            continue  # the PBX username is the identity; a second record cannot be a second user
        seen_pbx.add(p.username)
        key = normalise(_pbx_value(p, settings.pbx_attribute), settings.strip_domain)
        if key is None:
            unlinked_pbx.append(p.username)
        else:
            pbx_by_key[key].append(p.username)

    links: list[Link] = []
    conflicts: list[Conflict] = []
    matched_graph: set[str] = set()
    for key, usernames in pbx_by_key.items():
        claimants = graph_by_key.get(key)
        if not claimants:
            unlinked_pbx.extend(usernames)
            continue
        matched_graph.update(claimants)
        if len(claimants) == 1:
            # Several PBX users may share the key (two extensions, one e-mail): link them all.
            links.extend(Link(claimants[0], username) for username in usernames)
        else:
            ids = tuple(sorted(claimants))
            conflicts.extend(Conflict(username, ids) for username in usernames)

    return MatchResult(
        links=tuple(sorted(links)),
        unlinked_graph=tuple(sorted(gid for gid in graph_ids if gid not in matched_graph)),
        unlinked_pbx=tuple(sorted(unlinked_pbx)),
        conflicts=tuple(sorted(conflicts, key=lambda c: c.pbx_user)),
    )


def is_enabled(tenant_enabled: bool, user_override: bool | None) -> bool:
    """Bicom's precedence: the user's Yes/No wins; not set follows the tenant."""
    return tenant_enabled if user_override is None else user_override


def enabled_links(
    result: MatchResult,
    pbx_overrides: Mapping[str, bool | None],
    tenant_enabled: bool,
) -> list[Link]:
    """The links whose PBX user is enabled; a user absent from the overrides is not set."""
    return [
        link
        for link in result.links
        if is_enabled(tenant_enabled, pbx_overrides.get(link.pbx_user))
    ]


def overrides_from(pbx_users: Iterable[PbxUser]) -> dict[str, bool | None]:
    """Per-user enable overrides from the tenants file's `[[tenants.pbx_users]]`."""
    return {user.username: user.enabled for user in pbx_users}


def linked_graph_ids(links: Iterable[Link]) -> list[str]:
    """The distinct Graph users behind some links, sorted: what subscriptions must cover."""
    return sorted({link.graph_id for link in links})
