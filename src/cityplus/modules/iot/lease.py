"""The MQTT gateway's lease: one gateway connection per deployment, however many processes run.

The persistent MQTT session belongs to one client id, and two connections with that id take the session from each
other. So every process competes for the lease `mqtt-gateway`; the holder connects and renews it every third of its
lifetime; the others wait and take over when it expires (the holder died), keeping the client id and the session.
The mechanism is the core's (`cityplus.core.lease`); iot keeps its lease in its own table, iot_leases.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from cityplus.core import lease as core_lease
from cityplus.core.lease import holder_id
from cityplus.modules.iot.models import Lease

MQTT_GATEWAY = "mqtt-gateway"

__all__ = ["MQTT_GATEWAY", "acquire", "holder_id", "release"]


def acquire(session: Session, name: str, holder: str, ttl: float) -> bool:
    """Take or renew the lease; True while this holder has it."""
    return core_lease.acquire(session, name, holder, ttl, table=Lease)


def release(session: Session, name: str, holder: str) -> None:
    """Give the lease up at once (a clean stop)."""
    core_lease.release(session, name, holder, table=Lease)
