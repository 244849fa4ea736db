"""Events published by the device gateway."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cityplus.core.events import Event, event_type


@event_type("iot.device_offline")
@dataclass(frozen=True, kw_only=True)
class DeviceOffline(Event):
    """A device stayed silent for `offline_after` expected intervals (设备离线)."""

    tenant: str
    device_id: str
    entity_id: str
    entity_type: str
    last_seen_at: datetime | None
    silent_seconds: int


@event_type("iot.device_online")
@dataclass(frozen=True, kw_only=True)
class DeviceOnline(Event):
    """A device that was offline sent a message again (设备恢复在线)."""

    tenant: str
    device_id: str
    entity_id: str
    entity_type: str
    offline_seconds: int


@event_type("iot.device_provisioned")
@dataclass(frozen=True, kw_only=True)
class DeviceProvisioned(Event):
    """A device was provisioned through the API or auto-provisioned by its first message."""

    tenant: str
    device_id: str
    entity_id: str
    entity_type: str
    auto: bool
