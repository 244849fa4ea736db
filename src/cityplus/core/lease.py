"""Database leases for singleton work (the MQTT gateway connection, scheduled jobs) across server processes.

Every process competes for a named lease; the holder does the work and renews the lease before it expires; the
others take over when it has expired (the holder died). Acquisition is one compare-and-set UPDATE, or an INSERT …
ON CONFLICT DO NOTHING for a lease never taken, so two processes never both believe they hold it.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, String, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from cityplus.core.db import Base, UTCDateTime, utcnow


class Lease(Base):
    """Who runs a singleton job until when; renewed while the holder lives."""

    __tablename__ = "core_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


def holder_id() -> str:
    """This process, uniquely (host, pid, and a random part for several apps in one process)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(session: Session, name: str, holder: str, ttl: float, table: Any = Lease) -> bool:
    """Take or renew the lease; True while this holder has it (compare-and-set, safe across processes).

    `table` is a mapped class with the columns name, holder and expires_at (default: core_leases).
    """
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    result = session.execute(update(table).where(table.name == name, (table.holder == holder) |
                                                 (table.expires_at < now))
                             .values(holder=holder, expires_at=expires))
    renewed = cast(CursorResult[Any], result).rowcount
    if renewed:
        return True
    values = {"name": name, "holder": holder, "expires_at": expires}
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(**values).on_conflict_do_nothing().returning(table.name)
    return session.execute(stmt).first() is not None


def release(session: Session, name: str, holder: str, table: Any = Lease) -> None:
    """Give the lease up at once (a clean stop), so another process need not wait for it to expire."""
    session.execute(update(table).where(table.name == name, table.holder == holder).values(expires_at=utcnow()))
