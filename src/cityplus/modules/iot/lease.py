"""A database lease for singleton work: one MQTT gateway connection per deployment, however many processes run.

The persistent MQTT session belongs to one client id, and two connections with that id take the session from each
other. So every process competes for the lease `mqtt-gateway`; the holder connects and renews it every third of its
lifetime; the others wait and take over when it expires (the holder died), keeping the client id and the session.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cityplus.core.db import utcnow
from cityplus.modules.iot.models import Lease

MQTT_GATEWAY = "mqtt-gateway"


def holder_id() -> str:
    """This process, uniquely (host, pid, and a random part for several apps in one process)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(session: Session, name: str, holder: str, ttl: float) -> bool:
    """Take or renew the lease; True while this holder has it (compare-and-set, safe across processes)."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    renewed = session.execute(update(Lease).where(Lease.name == name, (Lease.holder == holder) |
                                                  (Lease.expires_at < now))
                              .values(holder=holder, expires_at=expires)).rowcount
    if renewed:
        return True
    values = {"name": name, "holder": holder, "expires_at": expires}
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(Lease).values(**values).on_conflict_do_nothing().returning(Lease.name)
    return session.execute(stmt).first() is not None


def release(session: Session, name: str, holder: str) -> None:
    """Give the lease up at once (a clean stop), so another process need not wait for it to expire."""
    session.execute(update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=utcnow()))
