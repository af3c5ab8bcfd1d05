"""The interface of PBX adapters: what every adapter does, and the optional capabilities.

Callers test a capability with `isinstance(adapter, BatchApply)` (and so on); adapters name
the capabilities they have as base classes, so mypy checks their signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class PbxUserRecord:
    """A user as the PBX knows it; the attributes matching can use."""

    username: str
    email: str | None = None
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """What to apply to one PBX user. Applying the same change twice must be harmless."""

    user: str  # PBX username
    profile: str  # profile name, e.g. "Teams Meeting", "Do Not Disturb", "Available"
    availability: str = ""  # the Teams values that led here, for adapters that show them
    activity: str = ""
    version: int = 0  # grows with every desired-state change of this user


class PbxAdapter(Protocol):
    """What every adapter does. Raise core.errors.PbxError(transient=...) on failure; never
    return silently."""

    name: str

    def list_users(self) -> list[PbxUserRecord] | None:
        """The PBX's users, or None when this PBX cannot list them (use the tenants file)."""
        ...

    def apply_profile(self, change: ProfileChange) -> None: ...

    def read_profile(self, user: str) -> str | None:
        """The profile the PBX shows now, or None when it cannot tell."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class BatchApply(Protocol):
    """Applies many changes in one round trip; one failure fails the whole batch."""

    def apply_many(self, changes: list[ProfileChange]) -> None: ...


@runtime_checkable
class BatchRead(Protocol):
    """Reads many users' profiles in one round trip."""

    def read_many(self, users: list[str]) -> dict[str, str]:
        """The profile each user shows; users the PBX cannot tell about are left out."""
        ...


@runtime_checkable
class Refreshing(Protocol):
    """Holds what lapses on the PBX unless refreshed (SIP publications and their Expires)."""

    def refresh_due(self, now: float | None = None) -> list[str]:
        """Refresh what is past its refresh point; the users refreshed."""
        ...


@runtime_checkable
class Stateful(Protocol):
    """Keeps state that must outlive the worker (SIP entity tags); the registry saves it."""

    def export_state(self) -> str: ...

    def import_state(self, data: str) -> None:
        """Raise ValueError for a snapshot this adapter cannot read."""
        ...
