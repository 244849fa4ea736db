"""What changed in a write: one `Change` per entity created, updated or deleted, handed on inside the transaction.

store.save and store.remove describe every write as Changes and `publish` them before the transaction commits,
so whatever reacts to them (entity history, the subscription outbox) is written atomically with the change
itself: a change that rolls back notifies nobody, and a committed change is never lost to a crash between write
and delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from cityplus.modules.context.store import Row


@dataclass
class Change:
    """One entity's change. `old`/`new` are its expanded attributes before and after (None: did not exist)."""

    kind: str  # created | updated | deleted
    entity_id: str
    types: list[str]
    scopes: list[str] | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    changed: set[str] = field(default_factory=set)  # attributes created, updated or deleted
    created_at: datetime | None = None
    modified_at: datetime | None = None

    def attribute_events(self) -> dict[str, str]:
        """attributeCreated / attributeUpdated / attributeDeleted for each changed attribute."""
        old, new = self.old or {}, self.new or {}
        out = {}
        for name in self.changed:
            if name not in old:
                out[name] = "attributeCreated"
            elif name not in new:
                out[name] = "attributeDeleted"
            else:
                before, after = datasets(old[name]), datasets(new[name])
                out[name] = "attributeDeleted" if before - after else \
                    "attributeCreated" if after - before else "attributeUpdated"
        return out

    @property
    def entity_event(self) -> str:
        return {"created": "entityCreated", "updated": "entityUpdated", "deleted": "entityDeleted"}[self.kind]


def datasets(attr: Any) -> set[Any]:
    """The datasetIds of an attribute's instances (None: the default instance)."""
    return {i.get("datasetId") for i in (attr if isinstance(attr, list) else [attr]) if isinstance(i, dict)}


def created(row: Row) -> Change:
    return Change("created", row.entity_id, list(row.types), row.scopes, None, row.attrs, set(row.attrs),
                  created_at=row.created_at, modified_at=row.modified_at)


def updated(row: Row) -> Change:
    old = row.loaded or {}
    names = set(old) | set(row.attrs) if row.reindex is None else set(row.reindex)
    return Change("updated", row.entity_id, list(row.types), row.scopes, old, row.attrs, names,
                  created_at=row.created_at, modified_at=row.modified_at)


def deleted(row: Row) -> Change:
    attrs = row.attrs
    return Change("deleted", row.entity_id, list(row.types), row.scopes, attrs, None, set(attrs),
                  created_at=row.created_at, modified_at=row.modified_at)


Listener = Callable[[Session, int, list[Change]], None]
_LISTENERS: list[Listener] = []


def listen(listener: Listener) -> None:
    """Register `listener(session, tenant_id, changes)` to run inside every entity write's transaction.

    For other modules that must react to entity changes atomically (e.g. the device gateway turning a written
    command attribute into a command). A listener must be quick, must not commit, and may raise to refuse the
    write. Registering the same function twice has no effect."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def unlisten(listener: Listener) -> None:
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


def publish(session: Session, tenant_id: int, changes: list[Change]) -> None:
    """Hand the changes of one write to the module's consumers, in the writing transaction."""
    if not changes:
        return
    from cityplus.modules.context import subscriptions, temporal
    from cityplus.modules.context.settings import get_context_settings

    temporal.record(session, tenant_id, changes, enabled=get_context_settings().history)
    subscriptions.capture(session, tenant_id, changes)
    for listener in list(_LISTENERS):
        listener(session, tenant_id, changes)
