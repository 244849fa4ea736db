"""Append-only, hash-chained audit log (审计日志) of every state change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from cityplus.core.db import Base, UTCDateTime, utcnow

GENESIS = "0" * 64
# Arbitrary constant key for the PostgreSQL advisory lock that serialises appends across processes.
_PG_LOCK_KEY = 0x43495459_41554454 & 0x7FFFFFFFFFFFFFFF

request_id_var: ContextVar[str | None] = ContextVar("cityplus_request_id", default=None)


@dataclass(frozen=True)
class Actor:
    """Who performs a change: a signed-in user, a token holder, the CLI or the system."""

    username: str
    user_id: int | None = None
    org_code: str | None = None
    role: str | None = None

    @classmethod
    def system(cls, what: str = "system") -> Actor:
        return cls(username=what)


class AuditEntry(Base):
    """One audited state change; entry_hash chains it to the previous entry."""

    __tablename__ = "core_audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    org: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(64), index=True)
    object_id: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    change_digest: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The chain's last sequence number and hash, so deleting the newest entries is detected too."""

    __tablename__ = "core_audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    entry_hash: Mapped[str] = mapped_column(String(64))


def canonical(data: Any) -> str:
    """Stable JSON text used for digests."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def digest_change(change: Any) -> str:
    return hashlib.sha256(canonical(change).encode("utf-8")).hexdigest()


def _entry_hash(e: AuditEntry) -> str:
    body = canonical(
        [e.seq, e.at.isoformat(), e.actor, e.org, e.action, e.object_type, e.object_id, e.request_id,
         e.change_digest, e.prev_hash]
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append(
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | int,
    change: Any = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back with the change)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    # SQLite transactions start with BEGIN IMMEDIATE, which already serialises writers.
    head = session.get(AuditHead, 1)
    prev_seq, prev_hash = (head.seq, head.entry_hash) if head else (0, GENESIS)
    entry = AuditEntry(
        seq=prev_seq + 1,
        at=utcnow(),
        actor=actor.username,
        org=actor.org_code,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        request_id=request_id_var.get(),
        change_digest=digest_change(change),
        prev_hash=prev_hash,
    )
    entry.entry_hash = _entry_hash(entry)
    session.add(entry)
    if head is None:
        session.add(AuditHead(id=1, seq=entry.seq, entry_hash=entry.entry_hash))
    else:
        head.seq, head.entry_hash = entry.seq, entry.entry_hash
    session.flush()
    return entry


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str | None = None


def verify(session: Session, batch: int = 5000) -> VerifyResult:
    """Walk the chain in order and report the first entry that was edited, removed or reordered."""
    expected_prev = GENESIS
    expected_seq = 1
    checked = 0
    for entry in _iter_entries(session, batch):
        if entry.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq, f"entry {expected_seq} is missing")
        if entry.prev_hash != expected_prev:
            return VerifyResult(False, checked, entry.seq, "previous-hash link broken")
        if _entry_hash(entry) != entry.entry_hash:
            return VerifyResult(False, checked, entry.seq, "entry content does not match its hash")
        expected_prev = entry.entry_hash
        expected_seq += 1
        checked += 1
    head = session.get(AuditHead, 1)
    last_seq = expected_seq - 1
    if head is None:
        if checked:
            return VerifyResult(False, checked, 1, "chain head record is missing")
    elif head.seq != last_seq or head.entry_hash != expected_prev:
        return VerifyResult(False, checked, last_seq + 1, f"entries after {last_seq} were removed")
    return VerifyResult(True, checked)


def _iter_entries(session: Session, batch: int) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def query(
    session: Session,
    *,
    actor: str | None = None,
    org: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> tuple[list[AuditEntry], int]:
    """Filtered entries, newest first, keyset-paginated by seq; also the total matching count."""
    stmt = select(AuditEntry)
    if actor:
        stmt = stmt.where(AuditEntry.actor == actor)
    if org:
        stmt = stmt.where(AuditEntry.org == org)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if object_type:
        stmt = stmt.where(AuditEntry.object_type == object_type)
    if object_id:
        stmt = stmt.where(AuditEntry.object_id == object_id)
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    if until:
        stmt = stmt.where(AuditEntry.at < until)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    if before_seq:
        stmt = stmt.where(AuditEntry.seq < before_seq)
    rows = session.scalars(stmt.order_by(AuditEntry.seq.desc()).limit(limit)).all()
    return list(rows), total
