"""The one interface every PBX adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PbxUserRecord:
    """A user as the PBX knows it; the attributes matching can use."""

    username: str
    email: str | None = None
    extension: str | None = None


@dataclass(frozen=True)
class ProfileChange:
    """What to apply to one PBX user. Applying the same change twice must be harmless."""

    user: str  # PBX username
    profile: str  # profile name, e.g. "Teams Meeting", "Do Not Disturb", "Available"
    availability: str = ""  # the Teams values that led here, for adapters that show them
    activity: str = ""
    version: int = 0  # grows with every desired-state change of this user


class PbxAdapter(Protocol):
    """Raise core.errors.PbxError(transient=...) on failure; never return silently."""

    name: str

    def list_users(self) -> list[PbxUserRecord] | None:
        """The PBX's users, or None when this PBX cannot list them (use the tenants file)."""
        ...

    def apply_profile(self, change: ProfileChange) -> None: ...

    def read_profile(self, user: str) -> str | None:
        """The profile the PBX shows now, or None when it cannot tell."""
        ...

    def close(self) -> None: ...
