"""Events published by identity and access."""

from __future__ import annotations

from dataclasses import dataclass

from cityplus.core.events import Event, event_type


@event_type("identity.user_changed")
@dataclass(frozen=True, kw_only=True)
class UserChanged(Event):
    """A user was created or changed (role, organisation, activation, password)."""

    change: str
    user_id: int
    username: str
    role: str
