"""Core API for platform administrators: the audit log and the event journal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from cityplus.api.deps import DbSession, Scoped
from cityplus.api.schemas import AuditEntryPublic, AuditPage
from cityplus.core import audit, events

router = APIRouter(prefix="/api/v1")


@router.get("/audit", response_model=AuditPage, tags=["audit"], operation_id="list_audit_entries")
def list_audit_entries(
    _: Scoped("audit.read"),
    session: DbSession,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    org: Annotated[str | None, Query(max_length=32)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=128)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Annotated[int | None, Query(ge=1, description="keyset cursor: entries with seq below this")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPage:
    """Audit entries, newest first, filterable; page with `before=<next_before>`."""
    rows, total = audit.query(session, actor=actor, org=org, action=action, object_type=object_type,
                              object_id=object_id, since=_aware(since), until=_aware(until), before_seq=before,
                              limit=limit)
    nxt = rows[-1].seq if len(rows) == limit and rows[-1].seq > 1 else None
    return AuditPage(items=[AuditEntryPublic.model_validate(r) for r in rows], total=total, next_before=nxt)


@router.get("/audit/verify", tags=["audit"], operation_id="verify_audit_chain")
def verify_audit_chain(_: Scoped("audit.read"), session: DbSession) -> dict[str, Any]:
    """Recompute the hash chain and report the first broken entry, if any."""
    result = audit.verify(session)
    return {"ok": result.ok, "checked": result.checked, "first_broken_seq": result.first_broken_seq,
            "reason": result.reason}


class JournalEntryPublic(BaseModel):
    event_id: str
    name: str
    payload: dict[str, Any]
    occurred_at: datetime
    handled_at: datetime
    handled_by: str


@router.get("/events", response_model=list[JournalEntryPublic], tags=["events"], operation_id="list_events")
def list_events(
    _: Scoped("events.read"),
    session: DbSession,
    name: Annotated[str | None, Query(max_length=128, description="event name prefix")] = None,
    before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JournalEntryPublic]:
    """Recent domain events from the platform's event journal, newest first."""
    rows = events.recent_events(session, name_prefix=name, limit=limit, before=_aware(before))
    return [JournalEntryPublic(event_id=r.event_id, name=r.name, payload=r.payload, occurred_at=r.occurred_at,
                               handled_at=r.handled_at, handled_by=r.handled_by) for r in rows]


def _aware(value: datetime | None) -> datetime | None:
    """Query datetimes without a zone are taken as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
