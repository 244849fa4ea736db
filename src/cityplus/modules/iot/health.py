"""Device health: online devices not heard from by their `offline_at` (last seen + offline_after × expected
interval) are marked offline, with an `iot.device_offline` event. Safe in several processes at once: each change is a
compare-and-set, so one process wins and one event is published."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cityplus.core import events
from cityplus.core.db import utcnow
from cityplus.modules.iot.events import DeviceOffline
from cityplus.modules.iot.ingest import delete_receipts_before
from cityplus.modules.iot.models import Device

if TYPE_CHECKING:
    from cityplus.modules.iot.runtime import IotRuntime

log = structlog.get_logger("cityplus.iot.health")
SCAN = 500


def mark_offline(session: Session) -> list[Device]:
    """Mark silent devices offline (at most SCAN per call) and record one event for each."""
    now = utcnow()
    rows = list(session.scalars(select(Device).where(Device.status == "online", Device.offline_at < now)
                                .order_by(Device.offline_at).limit(SCAN)))
    marked = []
    for d in rows:
        changed = session.execute(update(Device).where(Device.id == d.id, Device.status == "online",
                                                       Device.offline_at < now).values(status="offline")).rowcount
        if not changed:
            continue  # heard from meanwhile, or another process marked it
        silent = int((now - d.last_seen_at).total_seconds()) if d.last_seen_at else 0
        events.record(session, DeviceOffline(tenant=d.tenant, device_id=d.device_id, entity_id=d.entity_name,
                                             entity_type=d.entity_type, last_seen_at=d.last_seen_at,
                                             silent_seconds=silent))
        marked.append(d)
    return marked


def check(rt: IotRuntime) -> int:
    """One health round: offline devices, then forget receipts past their retention."""
    with rt.ctx.db.session() as session:
        marked = mark_offline(session)
    if marked:
        log.info("iot_devices_offline", count=len(marked), devices=[d.device_id for d in marked[:20]])
    with rt.ctx.db.session() as session:
        delete_receipts_before(session, utcnow() - timedelta(hours=rt.settings.receipt_hours))
    return len(marked)


async def loop(rt: IotRuntime) -> None:
    """Run health rounds every CITYPLUS_IOT_HEALTH_CHECK_SECONDS until cancelled."""
    while True:
        await asyncio.sleep(rt.settings.health_check_seconds)
        try:
            await asyncio.to_thread(check, rt)
        except Exception as exc:  # a failed round (database away) is retried next time
            log.error("iot_health_check_failed", exc_info=exc)
