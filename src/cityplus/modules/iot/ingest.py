"""Ingestion: a device message (HTTP or MQTT) → parsed measures → NGSI-LD updates through the context broker's
in-process service, idempotent by device and timestamp (or message id), with a dead-letter store for what fails.

`ingest()` works inside the caller's transaction: the update is made in a savepoint, so a failed message leaves only
its dead letter behind, and the caller acknowledges the message (HTTP response, MQTT PUBACK) after the commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from cityplus.core import audit, events
from cityplus.core.audit import Actor
from cityplus.core.db import utcnow
from cityplus.core.errors import DomainError
from cityplus.modules.context import jsonld
from cityplus.modules.context import service as context
from cityplus.modules.iot import payloads
from cityplus.modules.iot.errors import (
    DeviceNotFound,
    GroupNotFound,
    IotError,
    MalformedPayload,
    PayloadTooLarge,
    RateLimited,
    Rejected,
)
from cityplus.modules.iot.events import DeviceOnline
from cityplus.modules.iot.mapping import Profile, iso, measures_fragment, static_attributes
from cityplus.modules.iot.models import DeadLetter, Device, Receipt, ServiceGroup
from cityplus.modules.iot.schemas import DeviceIn
from cityplus.modules.iot.service import group_for_apikey, new_device, tenant_group

if TYPE_CHECKING:
    from cityplus.modules.iot.runtime import IotRuntime

log = structlog.get_logger("cityplus.iot")
GATEWAY = Actor.system("iot-gateway")
FORMATS = ("json", "ul")


@dataclass
class Message:
    """One message from a device, as received."""

    transport: str  # http | mqtt
    channel: str  # HTTP path or MQTT topic
    apikey: str
    device_id: str
    fmt: str  # json | ul
    payload: bytes
    resource: str | None = None  # HTTP resource (/iot/json, /iot/d): selects the service group
    object_id: str | None = None  # single-attribute topic
    timestamp: str | None = None  # HTTP `t=`: the observation time of every group without its own
    message_id: str | None = None  # idempotency key given by the sender


@dataclass
class Outcome:
    """What became of a message: measurements applied and skipped as duplicates, or the error it was filed under."""

    applied: int = 0
    duplicates: int = 0
    stale: int = 0  # attributes older than the entity's current value (out-of-order), not written
    error: IotError | None = None
    dead_letter_reason: str | None = None
    device: Device | None = field(default=None, repr=False)


# Dead-letter reasons (also the `reason` label of cityplus_iot_dead_letters_total).
REASONS = {GroupNotFound: "unknown_apikey", DeviceNotFound: "unknown_device", MalformedPayload: "malformed_payload",
           PayloadTooLarge: "too_large"}


def ingest(session: Session, rt: IotRuntime, msg: Message, active: jsonld.ActiveContext) -> Outcome:
    """Apply one device message in the caller's transaction; failures become a dead letter instead."""
    received = utcnow()
    outcome = Outcome()
    device: Device | None = None
    tenant: str | None = None
    key = (msg.apikey, msg.device_id)
    if not rt.limiter.allow(key):
        # Refused before any database work: that is the point. One dead letter a minute says it is happening.
        rt.metrics.rate_limited.labels(msg.transport).inc()
        outcome.error = RateLimited(f"device {msg.device_id[:64]} sends faster than {rt.settings.device_rate:g} "
                                    f"messages a second (bursts of {rt.settings.device_burst:g})",
                                    headers={"Retry-After": "1"})
        outcome.dead_letter_reason = "rate_limited"
        if rt.limiter.report_due(key):
            owner = session.scalar(select(Device.tenant).where(Device.apikey == msg.apikey,
                                                               Device.device_id == msg.device_id))
            dead_letter(session, rt, msg, "rate_limited", outcome.error.detail + " (further refusals within a "
                        "minute are only counted)", tenant=owner, received=received)
        return outcome
    try:
        with session.begin_nested():
            device, group = resolve(session, msg)
            tenant = device.tenant
            if len(msg.payload) > rt.settings.max_payload_bytes:
                raise PayloadTooLarge(f"message of {len(msg.payload)} bytes exceeds the limit of "
                                      f"{rt.settings.max_payload_bytes}")
            groups = _parse(msg, device, group)
            profile = Profile.of(device, group)
            _apply(session, msg, device, profile, groups, received, active, outcome)
            interval = device.expected_interval or (group.expected_interval if group else None) \
                or rt.settings.default_interval
            _seen(session, device, received, timedelta(seconds=interval * rt.settings.offline_after))
        outcome.device = device
        rt.metrics.measurements.labels(msg.transport).inc(outcome.applied)
        if outcome.duplicates:
            rt.metrics.duplicates.labels(msg.transport).inc(outcome.duplicates)
        return outcome
    except IotError as exc:
        error = exc
    except DomainError as exc:  # the context broker refused the mapped update
        error = Rejected(f"the context broker refused the update: {exc.detail}")
    except DBAPIError as exc:
        if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
            raise  # the database is away: the caller retries (MQTT) or answers 503/500 (HTTP)
        # the database refused a value the checks let through (the savepoint rolled it back)
        log.warning("iot_value_not_stored", error=str(exc.orig)[:300])
        error = Rejected("a value of the message cannot be stored")
    reason = REASONS.get(type(error), "rejected")
    tenant = tenant if tenant is not None else getattr(error, "tenant", None)
    if device is not None and device.id is not None and session.get(Device, device.id) is not None:
        session.execute(update(Device).where(Device.id == device.id).values(error_count=Device.error_count + 1,
                                                                            last_seen_at=received))
    else:
        device = None
    dead_letter(session, rt, msg, reason, error.detail, tenant=tenant, received=received)
    outcome.error, outcome.dead_letter_reason, outcome.device = error, reason, device
    return outcome


def dead_letter(session: Session, rt: IotRuntime, msg: Message, reason: str, detail: str, *, tenant: str | None,
                received: datetime | None = None) -> None:
    """File a message the gateway could not apply, with its raw payload truncated."""
    keep = rt.settings.dead_letter_bytes
    session.add(DeadLetter(tenant=tenant, apikey=msg.apikey[:128], device_id=msg.device_id[:256],
                           transport=msg.transport, channel=msg.channel[:512], reason=reason, detail=detail[:500],
                           payload=msg.payload[:keep].decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
                           payload_bytes=len(msg.payload), received_at=received or utcnow()))
    session.flush()
    rt.metrics.dead_letters.labels(reason).inc()
    log.info("iot_dead_letter", reason=reason, apikey=msg.apikey[:64], device_id=msg.device_id[:64],
             transport=msg.transport, detail=detail[:200])


# --- steps -----------------------------------------------------------------------------------------------


def resolve(session: Session, msg: Message) -> tuple[Device, ServiceGroup | None]:
    """The device (auto-provisioned when its group allows it) and its service group."""
    device = session.scalar(select(Device).where(Device.apikey == msg.apikey, Device.device_id == msg.device_id))
    if device is not None:
        return device, tenant_group(session, device.tenant, msg.apikey)
    group = group_for_apikey(session, msg.apikey, msg.resource)
    if group is None:
        raise GroupNotFound(f"no service group has apikey {msg.apikey[:64]}")
    device = session.scalar(select(Device).where(Device.tenant == group.tenant, Device.device_id == msg.device_id))
    if device is not None:
        if device.apikey:
            raise _in(DeviceNotFound(f"device {msg.device_id[:64]} is provisioned under another apikey"), group)
        return device, group  # provisioned before its group existed: it joins the group
    if not group.autoprovision:
        raise _in(DeviceNotFound(f"device {msg.device_id[:64]} is not provisioned and its group does not "
                                 "auto-provision"), group)
    try:
        spec = DeviceIn(device_id=msg.device_id)
    except ValueError:
        raise _in(MalformedPayload(f"invalid device id {msg.device_id[:64]!r}"), group) from None
    device = new_device(session, group.tenant, group.service_path, spec, group=group, auto=True)
    audit.append(session, GATEWAY, "iot.device_autoprovision", "iot_device", device.id,
                 {"tenant": group.tenant, "device_id": device.device_id, "entity": device.entity_name})
    return device, group


def _in(error: IotError, group: ServiceGroup) -> IotError:
    """Name the tenant a failure belongs to (for its dead letter) when the device itself is unknown."""
    error.tenant = group.tenant  # type: ignore[attr-defined]
    return error


def _parse(msg: Message, device: Device, group: ServiceGroup | None) -> list[payloads.MeasureGroup]:
    if msg.object_id is not None:
        return payloads.parse_single(msg.payload, msg.object_id, json_values=msg.fmt == "json")
    return payloads.parse_ultralight(msg.payload) if msg.fmt == "ul" else payloads.parse_json(msg.payload)


def _receipt_key(msg: Message, g: payloads.MeasureGroup, base_time: datetime | None, index: int, count: int
                 ) -> str | None:
    """Device + timestamp (or message id) identifies a measurement; None: not identifiable, never de-duplicated.
    Timestamps keep their full precision here (observedAt shows milliseconds)."""
    if g.timestamp is not None:
        key = "t:" + g.timestamp.isoformat()
    elif base_time is not None:
        key = f"t:{base_time.isoformat()}#{index}" if count > 1 else "t:" + base_time.isoformat()
    elif msg.message_id is not None:
        key = f"m:{msg.message_id}#{index}" if count > 1 else "m:" + msg.message_id
    else:
        return None
    return key if len(key) <= 160 else "h:" + hashlib.sha256(key.encode()).hexdigest()


def _first_receipt(session: Session, device_pk: int, key: str, now: datetime) -> bool:
    """Record the receipt; False when this measurement was applied before."""
    values = {"device_pk": device_pk, "key": key, "received_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(Receipt).values(**values).on_conflict_do_nothing().returning(Receipt.key)
    else:
        stmt = sqlite.insert(Receipt).values(**values).on_conflict_do_nothing().returning(Receipt.key)
    return session.execute(stmt).first() is not None


def _apply(session: Session, msg: Message, device: Device, profile: Profile, groups: list[payloads.MeasureGroup],
           received: datetime, active: jsonld.ActiveContext, outcome: Outcome) -> None:
    base_time = payloads.parse_timestamp(msg.timestamp, "t") if msg.timestamp is not None else None
    statics = static_attributes(profile)
    for index, g in enumerate(groups):
        key = _receipt_key(msg, g, base_time, index, len(groups))
        if key is not None and not _first_receipt(session, device.id, key, received):
            outcome.duplicates += 1
            continue
        observed = iso(g.timestamp or base_time or received)
        fragment = measures_fragment(profile, g.values, observed)
        if not fragment and not statics:
            continue
        entity = context.expand_compact(
            {"id": profile.entity_id, "type": profile.entity_type, **statics, **fragment}, active)
        outcome.stale += _drop_stale(session, profile, entity)
        context.upsert_entity(session, profile.tenant or None, entity, replace=False)
        outcome.applied += 1


def _drop_stale(session: Session, profile: Profile, entity: dict[str, Any]) -> int:
    """Out-of-order measurements never overwrite a newer current value (they are older observations)."""
    try:
        current = context.get_entity(session, profile.tenant or None, entity["id"]).attrs
    except DomainError:
        return 0
    dropped = 0
    for name in [n for n in entity if n not in ("id", "type")]:
        new_at = entity[name].get("observedAt") if isinstance(entity[name], dict) else None
        old = current.get(name)
        old_at = old.get("observedAt") if isinstance(old, dict) else None
        if new_at and old_at and _ts(old_at) > _ts(new_at):
            del entity[name]
            dropped += 1
    return dropped


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _seen(session: Session, device: Device, now: datetime, grace: timedelta) -> None:
    """Health: the device was heard from (back online, with an event, when it had been offline)."""
    if device.status == "offline":
        silent = int((now - device.last_seen_at).total_seconds()) if device.last_seen_at else 0
        events.record(session, DeviceOnline(tenant=device.tenant, device_id=device.device_id,
                                            entity_id=device.entity_name, entity_type=device.entity_type,
                                            offline_seconds=silent))
    mean = device.mean_interval
    if device.last_seen_at is not None:
        gap = max(0.0, (now - device.last_seen_at).total_seconds())
        mean = gap if mean is None else 0.8 * mean + 0.2 * gap  # EWMA: the recent rate, steady against jitter
    # Set on the object (the next flush writes one UPDATE; later messages of a batch see the new state), with the
    # count as an SQL increment so concurrent writers (HTTP workers) never lose one.
    device.message_count = Device.message_count + 1  # type: ignore[assignment]
    device.last_seen_at, device.status, device.offline_at, device.mean_interval = now, "online", now + grace, mean


def delete_receipts_before(session: Session, cutoff: datetime) -> int:
    """Forget idempotency receipts older than the retention (a redelivery that late is a new message)."""
    return session.execute(delete(Receipt).where(Receipt.received_at < cutoff)).rowcount or 0

