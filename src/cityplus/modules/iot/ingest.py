"""Ingestion: device messages (HTTP or MQTT) → parsed measures → NGSI-LD updates through the context broker's
in-process service, idempotent by device and timestamp (or message id), with a dead-letter store for what fails.

`ingest_batch()` works inside the caller's transaction on a micro-batch of messages (the MQTT worker's flush, or the
one message of an HTTP request). Everything per message that needs no write — rate limit, size, parsing, device
resolution, mapping — happens first, and a message that fails there becomes a dead letter alone. The rest is
written set-based in one savepoint: the idempotency receipts with one INSERT … ON CONFLICT DO NOTHING RETURNING, the
entity updates with one `context.service.batch_write` per tenant, the devices' health with one executemany. Should
that savepoint fail (the broker refuses one entity, the database one value), it is rolled back and the messages are
written one savepoint each, so each message still succeeds or becomes a dead letter alone — never half-applied.
The caller acknowledges the messages (HTTP response, MQTT PUBACK) after the commit.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Table, bindparam, delete, select, update
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
CHUNK = 400  # ids per IN (…) list: well under SQLite's and PostgreSQL's parameter limits
_DEVICES: Table = Device.__table__  # type: ignore[assignment]
_RECEIPTS: Table = Receipt.__table__  # type: ignore[assignment]

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
    received: datetime | None = None  # when it arrived (MQTT: on the network thread); None: now


@dataclass
class Outcome:
    """What became of a message: measurements applied and skipped as duplicates, or the error it was filed under."""

    applied: int = 0
    duplicates: int = 0
    stale: int = 0  # attributes older than the entity's current value (out-of-order), not written
    error: IotError | None = None
    dead_letter_reason: str | None = None
    device: Any = field(default=None, repr=False)  # the device (its id, tenant, …) when it is known


# Dead-letter reasons (also the `reason` label of cityplus_iot_dead_letters_total).
REASONS = {GroupNotFound: "unknown_apikey", DeviceNotFound: "unknown_device", MalformedPayload: "malformed_payload",
           PayloadTooLarge: "too_large"}


@dataclass
class _Measurement:
    """One observation of a message, mapped: its receipt key (None: not identifiable) and its expanded entity."""

    key: str | None
    entity: dict[str, Any]


@dataclass
class _Pending:
    """A message that passed every per-message check, waiting for the set-based write."""

    msg: Message
    received: datetime
    device: Any  # a Device, or a row of its _DEVICE_COLUMNS
    group: ServiceGroup | None
    measurements: list[_Measurement]
    outcome: Outcome


class _Refused(Exception):
    """The broker refused an entity of a set-based write: the savepoint is rolled back, messages go one by one."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def ingest(session: Session, rt: IotRuntime, msg: Message, active: jsonld.ActiveContext) -> Outcome:
    """Apply one device message in the caller's transaction; failures become a dead letter instead."""
    return ingest_batch(session, rt, [msg], active)[0]


def ingest_batch(session: Session, rt: IotRuntime, msgs: list[Message], active: jsonld.ActiveContext
                 ) -> list[Outcome]:
    """Apply device messages in the caller's transaction, set-based; each failing message becomes a dead letter."""
    outcomes = [Outcome() for _ in msgs]
    live: list[tuple[Message, Outcome, datetime]] = []
    for msg, outcome in zip(msgs, outcomes, strict=True):
        received = msg.received or utcnow()
        if _rate_limited(session, rt, msg, outcome, received):
            continue
        if len(msg.payload) > rt.settings.max_payload_bytes:
            _too_large(session, rt, msg, outcome, received)
            continue
        live.append((msg, outcome, received))
    if not live:
        return outcomes
    devices = _devices(session, {(m.apikey, m.device_id) for m, _, _ in live})
    groups = _groups(session, {m.apikey for m, _, _ in live})
    pending: list[_Pending] = []
    for msg, outcome, received in live:
        device: Any = devices.get((msg.apikey, msg.device_id))
        group: ServiceGroup | None = None
        try:
            if device is None:
                with session.begin_nested():  # auto-provisioning, kept even when the message then fails
                    device, group = resolve(session, msg)
                devices[(msg.apikey, msg.device_id)] = device
                if group is not None and device.apikey:
                    groups.setdefault((device.tenant, device.apikey), group)
            else:
                group = groups.get((device.tenant, device.apikey))
            profile = _profile(session, rt, device, group)
            measurements = _map(msg, device, group, profile, received, active)
        except (IotError, DomainError) as exc:
            _fail(session, rt, msg, outcome, exc, device, received)
            continue
        outcome.device = device
        pending.append(_Pending(msg, received, device, group, measurements, outcome))
    if pending:
        _write_all(session, rt, pending)
    for p in pending:
        if p.outcome.error is None:
            rt.metrics.measurements.labels(p.msg.transport).inc(p.outcome.applied)
            if p.outcome.duplicates:
                rt.metrics.duplicates.labels(p.msg.transport).inc(p.outcome.duplicates)
    return outcomes


def _rate_limited(session: Session, rt: IotRuntime, msg: Message, outcome: Outcome, received: datetime) -> bool:
    key = (msg.apikey, msg.device_id)
    if rt.limiter.allow(key):
        return False
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
    return True


def _too_large(session: Session, rt: IotRuntime, msg: Message, outcome: Outcome, received: datetime) -> None:
    """An oversized message: a dead letter under its device (or group), which it never auto-provisions."""
    device = session.scalar(select(Device).where(Device.apikey == msg.apikey, Device.device_id == msg.device_id))
    error: IotError = PayloadTooLarge(f"message of {len(msg.payload)} bytes exceeds the limit of "
                                      f"{rt.settings.max_payload_bytes}")
    if device is None:
        # Resolved only to learn the tenant, or that apikey or device is unknown: always rolled back.
        nested = session.begin_nested()
        try:
            error = _in(error, resolve(session, msg)[0].tenant)
        except IotError as exc:
            error = exc
        finally:
            nested.rollback()
    _fail(session, rt, msg, outcome, error, device, received)


def _fail(session: Session, rt: IotRuntime, msg: Message, outcome: Outcome, exc: Exception, device: Any,
          received: datetime) -> None:
    """File a message as a dead letter under the reason its error names; a known device counts an error."""
    error = exc if isinstance(exc, IotError) else Rejected(
        f"the context broker refused the update: {getattr(exc, 'detail', None) or exc}"
        if isinstance(exc, DomainError) else "a value of the message cannot be stored")
    reason = REASONS.get(type(error), "rejected")
    tenant = device.tenant if device is not None else getattr(error, "tenant", None)
    if device is not None and device.id is not None:
        session.execute(update(Device).where(Device.id == device.id).values(error_count=Device.error_count + 1,
                                                                            last_seen_at=received))
    dead_letter(session, rt, msg, reason, error.detail, tenant=tenant, received=received)
    outcome.applied = outcome.duplicates = outcome.stale = 0
    outcome.error, outcome.dead_letter_reason, outcome.device = error, reason, device


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


# --- look-ups, one statement per flush -------------------------------------------------------------------


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


# What a flush needs of each device: identity, health, the profile's cache key; not the JSON mapping columns.
_DEVICE_COLUMNS = (Device.id, Device.tenant, Device.apikey, Device.device_id, Device.entity_name, Device.entity_type,
                   Device.status, Device.last_seen_at, Device.mean_interval, Device.expected_interval,
                   Device.modified_at)


def _devices(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The provisioned devices of these (apikey, device id) pairs, as rows of _DEVICE_COLUMNS."""
    out: dict[tuple[str, str], Any] = {}
    apikeys = sorted({k for k, _ in keys})
    for chunk in _chunks(sorted({d for _, d in keys})):
        for device in session.execute(select(*_DEVICE_COLUMNS).where(Device.apikey.in_(apikeys),
                                                                     Device.device_id.in_(chunk))):
            if (device.apikey, device.device_id) in keys:
                out[(device.apikey, device.device_id)] = device
    return out


def _profile(session: Session, rt: IotRuntime, device: Any, group: ServiceGroup | None) -> Profile:
    """The device's mapping profile, cached per process until the device or its group is modified."""
    key = (device.modified_at, group.id if group else None, group.modified_at if group else None)
    cached = rt.profiles.get(device.id)
    if cached is not None and cached[0] == key:
        return cached[1]
    full = device if isinstance(device, Device) else session.get(Device, device.id)
    if full is None:
        raise DeviceNotFound(f"device {device.device_id[:64]} was removed")
    profile = Profile.of(full, group)
    if len(rt.profiles) > 100_000:  # a bound, not an eviction policy: devices are far fewer in practice
        rt.profiles.clear()
    rt.profiles[device.id] = (key, profile)
    return profile


def _groups(session: Session, apikeys: set[str]) -> dict[tuple[str, str], ServiceGroup]:
    """Each tenant's group of these apikeys (the first, as tenant_group() picks it)."""
    out: dict[tuple[str, str], ServiceGroup] = {}
    for chunk in _chunks(sorted(apikeys)):
        for group in session.scalars(select(ServiceGroup).where(ServiceGroup.apikey.in_(chunk))
                                     .order_by(ServiceGroup.id)):
            out.setdefault((group.tenant, group.apikey), group)
    return out


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


def _in(error: IotError, where: ServiceGroup | str) -> IotError:
    """Name the tenant a failure belongs to (for its dead letter) when the device itself is unknown."""
    error.tenant = where if isinstance(where, str) else where.tenant  # type: ignore[attr-defined]
    return error


def _parse(msg: Message, device: Any, group: ServiceGroup | None) -> list[payloads.MeasureGroup]:
    if msg.object_id is not None:
        return payloads.parse_single(msg.payload, msg.object_id, json_values=msg.fmt == "json")
    return payloads.parse_ultralight(msg.payload) if msg.fmt == "ul" else payloads.parse_json(msg.payload)


def _map(msg: Message, device: Any, group: ServiceGroup | None, profile: Profile, received: datetime,
         active: jsonld.ActiveContext) -> list[_Measurement]:
    """The message's observations as expanded entity updates, each with its receipt key; raises when any value
    does not fit its mapping (the whole message is then a dead letter, never half-applied)."""
    groups = _parse(msg, device, group)
    base_time = payloads.parse_timestamp(msg.timestamp, "t") if msg.timestamp is not None else None
    statics = static_attributes(profile)
    out = []
    for index, g in enumerate(groups):
        observed = iso(g.timestamp or base_time or received)
        fragment = measures_fragment(profile, g.values, observed)
        key = _receipt_key(msg, g, base_time, index, len(groups))
        if not fragment and not statics:
            out.append(_Measurement(key, {}))  # nothing to write, but a receipt all the same
            continue
        out.append(_Measurement(key, context.expand_compact(
            {"id": profile.entity_id, "type": profile.entity_type, **statics, **fragment}, active)))
    return out


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


def _write_all(session: Session, rt: IotRuntime, pending: list[_Pending]) -> None:
    """Write the pending messages set-based in one savepoint; on failure, one savepoint per message."""
    try:
        with session.begin_nested():
            _write(session, rt, pending)
        return
    except (_Refused, DomainError, DBAPIError) as exc:
        _reraise_if_away(exc)
        if len(pending) == 1:
            _fail_pending(session, rt, pending[0], exc)
            return
        log.info("iot_batch_isolating", messages=len(pending), error=str(exc)[:300])
    for p in pending:
        try:
            with session.begin_nested():
                _write(session, rt, [p])
        except (_Refused, DomainError, DBAPIError) as exc:
            _reraise_if_away(exc)
            _fail_pending(session, rt, p, exc)


def _reraise_if_away(exc: Exception) -> None:
    """The database is away: the caller retries (MQTT) or answers 503/500 (HTTP); never a dead letter."""
    if isinstance(exc, OperationalError | InterfaceError) or (isinstance(exc, DBAPIError)
                                                              and exc.connection_invalidated):
        raise exc


def _fail_pending(session: Session, rt: IotRuntime, p: _Pending, exc: Exception) -> None:
    if isinstance(exc, _Refused):
        exc = exc.error
    elif isinstance(exc, DBAPIError):  # the database refused a value the checks let through
        log.warning("iot_value_not_stored", error=str(exc.orig)[:300])
    _fail(session, rt, p.msg, p.outcome, exc, p.device, p.received)


def _write(session: Session, rt: IotRuntime, pending: list[_Pending]) -> None:
    """Receipts, entity updates and health of these messages, with a few statements whatever their number."""
    for p in pending:
        p.outcome.applied = p.outcome.duplicates = p.outcome.stale = 0
    fresh = _first_receipts(session, pending)
    by_tenant: dict[str, list[tuple[_Pending, dict[str, Any]]]] = defaultdict(list)
    for p in pending:
        for m in p.measurements:
            if m.key is not None and (p.device.id, m.key) not in fresh:
                p.outcome.duplicates += 1
            elif m.entity:
                by_tenant[p.device.tenant].append((p, m.entity))
            # reserve the key: the same measurement twice in one flush is applied once
            if m.key is not None:
                fresh.discard((p.device.id, m.key))
    for tenant, items in by_tenant.items():
        observed = _observed(session, tenant, {e["id"] for _, e in items})
        entities = []
        for p, entity in items:
            entities.append(_without_stale(entity, observed.setdefault(entity["id"], {}), p.outcome))
            p.outcome.applied += 1
        result = context.batch_write(session, tenant or None, "upsert_update", entities)
        if result.errors:
            raise _Refused(result.errors[0][1])
    _seen(session, rt, pending)


def _first_receipts(session: Session, pending: list[_Pending]) -> set[tuple[int, str]]:
    """Record the receipts of the measurements; the (device, key) pairs not seen before."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for p in pending:
        for m in p.measurements:
            if m.key is not None:
                rows.setdefault((p.device.id, m.key), {"device_pk": p.device.id, "key": m.key,
                                                       "received_at": p.received})
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # One cached statement, executed with many parameter sets: SQLAlchemy's insertmanyvalues turns it into a few
    # multi-row INSERT … RETURNING statements, without compiling a VALUES list per flush.
    stmt = insert(_RECEIPTS).on_conflict_do_nothing().returning(_RECEIPTS.c.device_pk, _RECEIPTS.c.key)
    return {(pk, key) for pk, key in session.execute(stmt, list(rows.values()))}


def _observed(session: Session, tenant: str, entity_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The stored state the batch is checked against, per entity: when each attribute was last observed
    (observedAt, as a datetime) or, for one without observedAt (a static attribute), its stored instance."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(entity_ids)):
        try:
            stored, _ = context.query_entities(session, tenant or None, context.EntityQuery(ids=chunk,
                                                                                            limit=len(chunk)))
        except DomainError:  # a tenant not created yet holds nothing
            return out
        for ent in stored:
            state = out[ent.entity_id] = {}
            for name, attr in ent.attrs.items():
                if not isinstance(attr, dict):
                    continue  # several instances (datasetId): always written
                at = attr.get("observedAt")
                state[name] = _ts(at) if at else _plain(attr)
    return out


def _plain(attr: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attr.items() if k not in _SYSTEM}


_SYSTEM = frozenset({"createdAt", "modifiedAt"})


def _without_stale(entity: dict[str, Any], state: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """What of an update to write: out-of-order measurements never overwrite a newer current value (they are older
    observations), and a static attribute equal to the stored one is not rewritten (the IoT Agent way sends the
    statics with every update; rewriting them would rewrite their index rows every time). `state` follows the batch."""
    out = {}
    for name, attr in entity.items():
        if name in ("id", "type") or not isinstance(attr, dict):
            out[name] = attr
            continue
        at = attr.get("observedAt")
        old = state.get(name)
        if at:
            new_at = _ts(at)
            if isinstance(old, datetime) and old > new_at:
                outcome.stale += 1
                continue
            state[name] = new_at
        elif isinstance(old, dict) and old == attr:
            continue
        else:
            state[name] = attr
        out[name] = attr
    return out


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


_SEEN = update(_DEVICES).where(_DEVICES.c.id == bindparam("b_id")).values(
    message_count=_DEVICES.c.message_count + bindparam("b_count"), last_seen_at=bindparam("b_last"),
    status="online", offline_at=bindparam("b_offline"), mean_interval=bindparam("b_mean"))


def _seen(session: Session, rt: IotRuntime, pending: list[_Pending]) -> None:
    """Health: the devices were heard from (back online, with an event, when they had been offline). One UPDATE
    statement for all of them, the count as an SQL increment so concurrent writers (HTTP workers) never lose one."""
    state: dict[int, dict[str, Any]] = {}
    for p in pending:
        d = p.device
        s = state.get(d.id)
        if s is None:
            s = state[d.id] = {"b_id": d.id, "b_count": 0, "b_last": d.last_seen_at, "b_mean": d.mean_interval}
            if d.status == "offline":
                silent = int((p.received - d.last_seen_at).total_seconds()) if d.last_seen_at else 0
                events.record(session, DeviceOnline(tenant=d.tenant, device_id=d.device_id,
                                                    entity_id=d.entity_name, entity_type=d.entity_type,
                                                    offline_seconds=silent))
        if s["b_last"] is not None:
            gap = max(0.0, (p.received - s["b_last"]).total_seconds())
            # EWMA: the recent rate, steady against jitter
            s["b_mean"] = gap if s["b_mean"] is None else 0.8 * s["b_mean"] + 0.2 * gap
        interval = d.expected_interval or (p.group.expected_interval if p.group else None) \
            or rt.settings.default_interval
        s["b_count"] += 1
        s["b_last"] = max(s["b_last"], p.received) if s["b_last"] is not None else p.received
        s["b_offline"] = s["b_last"] + timedelta(seconds=interval * rt.settings.offline_after)
    session.execute(_SEEN, list(state.values()))


def delete_receipts_before(session: Session, cutoff: datetime) -> int:
    """Forget idempotency receipts older than the retention (a redelivery that late is a new message)."""
    return session.execute(delete(Receipt).where(Receipt.received_at < cutoff)).rowcount or 0

