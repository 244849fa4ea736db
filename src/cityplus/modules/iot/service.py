"""The device gateway's public interface: provisioning of service groups and devices, device health, dead letters.

Ingestion (device messages → context entities) lives in ingest.py; both are used by api.py, the MQTT gateway, the
CLI and other modules. Every change is audited in the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cityplus.core import audit, events
from cityplus.core.audit import Actor
from cityplus.core.db import utcnow
from cityplus.modules.context.normalize import is_uri
from cityplus.modules.iot.errors import (
    BadTenant,
    DeviceNotFound,
    DuplicateDevice,
    DuplicateGroup,
    GroupNotFound,
    UnsupportedFeature,
    WrongSyntax,
)
from cityplus.modules.iot.events import DeviceProvisioned
from cityplus.modules.iot.models import Command, DeadLetter, Device, ServiceGroup
from cityplus.modules.iot.schemas import DEVICE_OPTIONS, GROUP_OPTIONS, DeviceIn, ServiceGroupIn

DEFAULT_ENTITY_TYPE = "Thing"  # the IoT Agents' default entity type
_TENANT_RE = re.compile(r"[A-Za-z0-9_.\-:/]+")  # the context broker's tenant names
_PATH_RE = re.compile(r"/|(/[A-Za-z0-9_\-]+)+")


# --- tenants and service paths -------------------------------------------------------------------------


def tenant_name(raw: str | None) -> str:
    """The tenant of a request (Fiware-Service or NGSILD-Tenant header; "" is the default tenant)."""
    name = (raw or "").strip()
    if len(name) > 128 or (name and not _TENANT_RE.fullmatch(name)):
        raise BadTenant(f"invalid tenant (fiware-service) {name[:64]!r}: letters, digits and _ . - : / only")
    return name


def service_path(raw: str | None, *, listing: bool = False) -> str | None:
    """The Fiware-ServicePath ("/" by default); for listings None (absent or "/*") means every path."""
    path = (raw or "").strip()
    if listing and path in ("", "/*"):
        return None
    if not path:
        return "/"
    if not _PATH_RE.fullmatch(path) or len(path) > 256:
        raise WrongSyntax(f"invalid fiware-servicepath {path[:64]!r}: use /, /area or /area/sub",
                          errors=[{"field": "header.fiware-servicepath", "message": "invalid"}])
    return path


# --- shared checks -------------------------------------------------------------------------------------


def _unsupported(item: ServiceGroupIn | DeviceIn, where: str) -> None:
    """Refuse IoT Agent features this gateway does not implement, rather than ignoring them silently."""
    for i, a in enumerate([*(item.attributes or []), *(item.lazy or [])]):
        for field in ("expression", "entity_name", "entity_type", "reverse"):
            if getattr(a, field) is not None:
                raise UnsupportedFeature(f"{where}.attributes[{i}].{field}: measure expressions and multi-entity "
                                         "mappings are not supported", errors=[{"field": f"{where}.attributes[{i}]."
                                                                                f"{field}", "message": "unsupported"}])
    for i, c in enumerate(item.commands or []):
        if c.expression is not None:
            raise UnsupportedFeature(f"{where}.commands[{i}].expression: command expressions are not supported")
    for i, s in enumerate(item.static_attributes or []):
        if s.link is not None or s.entity_name is not None:
            raise UnsupportedFeature(f"{where}.static_attributes[{i}]: linked and multi-entity static attributes "
                                     "are not supported")
    if isinstance(item, ServiceGroupIn) and item.entityNameExp:
        raise UnsupportedFeature(f"{where}.entityNameExp: entity name expressions are not supported")
    names = [a.name for a in [*(item.attributes or []), *(item.static_attributes or [])]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WrongSyntax(f"{where}: attribute names given twice: {', '.join(dupes)}")
    ids = [a.object_id or a.name for a in item.attributes or []]
    dupes = sorted({n for n in ids if ids.count(n) > 1})
    if dupes:
        raise WrongSyntax(f"{where}: object_ids mapped twice: {', '.join(dupes)}")


def _dump(items: list[Any] | None) -> list[dict[str, Any]]:
    return [i.model_dump(exclude_none=True) for i in items or []]


def _options(item: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(item, n) for n in names if getattr(item, n, None) is not None}


def entity_id_for(entity_name: str | None, entity_type: str, device_id: str) -> str:
    """The NGSI-LD entity id of a device: its entity_name when a URI, else urn:ngsi-ld:<type>:<name or id>."""
    name = entity_name or device_id
    entity_id = name if entity_name and is_uri(entity_name) else f"urn:ngsi-ld:{entity_type}:{name}"
    if not is_uri(entity_id):
        raise WrongSyntax(f"entity id {entity_id[:80]!r} is not a valid URI; set entity_name to a URI")
    return entity_id


# --- service groups ------------------------------------------------------------------------------------


def create_groups(session: Session, actor: Actor, tenant: str, path: str, groups: list[ServiceGroupIn]
                  ) -> list[ServiceGroup]:
    """Create service groups (all or none); (resource, apikey) must be free across tenants."""
    seen: set[tuple[str, str]] = set()
    rows = []
    for i, g in enumerate(groups):
        where = f"services[{i}]"
        missing = [f for f in ("apikey", "resource") if getattr(g, f) is None]
        if missing:
            raise WrongSyntax(f"{where}: {', '.join(missing)} required",
                              errors=[{"field": f"{where}.{f}", "message": "required"} for f in missing])
        _unsupported(g, where)
        key = (g.resource or "", g.apikey or "")
        taken = session.scalar(select(ServiceGroup.id).where(ServiceGroup.resource == key[0],
                                                             ServiceGroup.apikey == key[1]))
        if key in seen or taken is not None:
            raise DuplicateGroup(f"a service group with resource {key[0]} and apikey {key[1]} already exists")
        seen.add(key)
        row = ServiceGroup(tenant=tenant, service_path=path, apikey=g.apikey, resource=g.resource,
                           entity_type=g.entity_type or g.type, explicit_attrs=bool(g.explicitAttrs),
                           autoprovision=True if g.autoprovision is None else g.autoprovision, timestamp=g.timestamp,
                           expected_interval=g.expected_interval, attributes=_dump(g.attributes), lazy=_dump(g.lazy),
                           commands=_dump(g.commands), static_attributes=_dump(g.static_attributes),
                           internal_attributes=g.internal_attributes, options=_options(g, GROUP_OPTIONS))
        session.add(row)
        rows.append(row)
    session.flush()
    for row in rows:
        audit.append(session, actor, "iot.group_create", "iot_service_group", row.id,
                     {"tenant": tenant, "resource": row.resource, "apikey": row.apikey})
    return rows


def list_groups(session: Session, tenant: str, path: str | None, *, limit: int = 20, offset: int = 0
                ) -> tuple[list[ServiceGroup], int]:
    stmt = select(ServiceGroup).where(ServiceGroup.tenant == tenant)
    if path is not None:
        stmt = stmt.where(ServiceGroup.service_path == path)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return list(session.scalars(stmt.order_by(ServiceGroup.id).limit(limit).offset(offset))), total


def get_group(session: Session, tenant: str, resource: str, apikey: str) -> ServiceGroup:
    row = session.scalar(select(ServiceGroup).where(ServiceGroup.tenant == tenant, ServiceGroup.resource == resource,
                                                    ServiceGroup.apikey == apikey))
    if row is None:
        raise GroupNotFound(f"no service group with resource {resource} and apikey {apikey} in this service")
    return row


def update_group(session: Session, actor: Actor, tenant: str, resource: str, apikey: str, patch: ServiceGroupIn
                 ) -> ServiceGroup:
    """PUT /iot/services?resource=&apikey=: change the fields given; the others stay."""
    row = get_group(session, tenant, resource, apikey)
    _unsupported(patch, "body")
    given = patch.model_fields_set
    new_key = (patch.resource or row.resource, patch.apikey or row.apikey)
    if new_key != (row.resource, row.apikey):
        taken = session.scalar(select(ServiceGroup.id).where(ServiceGroup.resource == new_key[0],
                                                             ServiceGroup.apikey == new_key[1]))
        if taken is not None:
            raise DuplicateGroup(f"a service group with resource {new_key[0]} and apikey {new_key[1]} already exists")
        row.resource, row.apikey = new_key
    if "entity_type" in given or "type" in given:
        row.entity_type = patch.entity_type or patch.type
    if "explicitAttrs" in given:
        row.explicit_attrs = bool(patch.explicitAttrs)
    if "autoprovision" in given:
        row.autoprovision = True if patch.autoprovision is None else patch.autoprovision
    for field in ("timestamp", "expected_interval", "internal_attributes"):
        if field in given:
            setattr(row, field, getattr(patch, field))
    _patch_mappings(row, patch, given, GROUP_OPTIONS)
    session.flush()
    audit.append(session, actor, "iot.group_update", "iot_service_group", row.id,
                 {"tenant": tenant, "fields": sorted(given)})
    return row


def _patch_mappings(row: Any, patch: Any, given: set[str], option_names: tuple[str, ...]) -> None:
    """What a service-group and a device patch share: the mapping lists, the options, the modification time."""
    for field in ("attributes", "lazy", "commands", "static_attributes"):
        if field in given:
            setattr(row, field, _dump(getattr(patch, field)))
    row.options = {**row.options, **_options(patch, option_names)}
    row.modified_at = utcnow()


def delete_group(session: Session, actor: Actor, tenant: str, resource: str, apikey: str, *,
                 with_devices: bool = False) -> int:
    """Remove a service group (and, when asked, its devices); the number of devices removed."""
    row = get_group(session, tenant, resource, apikey)
    removed = 0
    if with_devices:
        removed = session.execute(delete(Device).where(Device.tenant == tenant, Device.apikey == apikey)).rowcount
    session.delete(row)
    session.flush()
    audit.append(session, actor, "iot.group_delete", "iot_service_group", row.id,
                 {"tenant": tenant, "resource": resource, "apikey": apikey, "devices_removed": removed})
    return removed


def group_document(g: ServiceGroup) -> dict[str, Any]:
    """A service group as the IoT Agent API shows it."""
    doc: dict[str, Any] = {"service": g.tenant, "subservice": g.service_path, "resource": g.resource,
                           "apikey": g.apikey, "explicitAttrs": g.explicit_attrs, "autoprovision": g.autoprovision,
                           "attributes": g.attributes, "lazy": g.lazy, "commands": g.commands,
                           "static_attributes": g.static_attributes}
    if g.entity_type is not None:
        doc["entity_type"] = g.entity_type
    for key, value in (("timestamp", g.timestamp), ("expected_interval", g.expected_interval),
                       ("internal_attributes", g.internal_attributes)):
        if value is not None:
            doc[key] = value
    doc.update(g.options)
    return doc


def group_for_apikey(session: Session, apikey: str, resource: str | None = None) -> ServiceGroup | None:
    """The group devices send under: (resource, apikey) for HTTP, else the first group with the apikey (MQTT)."""
    if resource is not None:
        row = session.scalar(select(ServiceGroup).where(ServiceGroup.resource == resource,
                                                        ServiceGroup.apikey == apikey))
        if row is not None:
            return row
    return session.scalars(select(ServiceGroup).where(ServiceGroup.apikey == apikey).order_by(ServiceGroup.id)
                           .limit(1)).first()


def tenant_group(session: Session, tenant: str, apikey: str) -> ServiceGroup | None:
    """A device's group: same tenant, same apikey."""
    if not apikey:
        return None
    return session.scalars(select(ServiceGroup).where(ServiceGroup.tenant == tenant, ServiceGroup.apikey == apikey)
                           .order_by(ServiceGroup.id).limit(1)).first()


# --- devices -------------------------------------------------------------------------------------------


def _default_group(session: Session, tenant: str, entity_type: str | None) -> ServiceGroup | None:
    """The group a device without apikey belongs to: the tenant's group of its entity type, or its only group."""
    groups = list(session.scalars(select(ServiceGroup).where(ServiceGroup.tenant == tenant)
                                  .order_by(ServiceGroup.id).limit(50)))
    typed = [g for g in groups if entity_type is not None and g.entity_type == entity_type]
    if len(typed) == 1:
        return typed[0]
    return groups[0] if len(groups) == 1 and entity_type in (None, groups[0].entity_type) else None


def _check_device_free(session: Session, tenant: str, device_id: str, apikey: str) -> None:
    if session.scalar(select(Device.id).where(Device.tenant == tenant, Device.device_id == device_id)) is not None:
        raise DuplicateDevice(f"device {device_id} already exists in this service")
    if apikey and session.scalar(select(Device.id).where(Device.apikey == apikey, Device.device_id == device_id)
                                 ) is not None:
        raise DuplicateDevice(f"device {device_id} already exists under apikey {apikey}")


def new_device(session: Session, tenant: str, path: str, d: DeviceIn, *, group: ServiceGroup | None = None,
               auto: bool = False) -> Device:
    """Build and add a device row (not audited: callers audit)."""
    assert d.device_id is not None
    group = group or (tenant_group(session, tenant, d.apikey) if d.apikey else _default_group(session, tenant,
                                                                                              d.entity_type))
    apikey = d.apikey or (group.apikey if group is not None else "")
    entity_type = d.entity_type or (group.entity_type if group is not None else None) or DEFAULT_ENTITY_TYPE
    _check_device_free(session, tenant, d.device_id, apikey)
    row = Device(tenant=tenant, service_path=path, device_id=d.device_id, apikey=apikey,
                 entity_name=entity_id_for(d.entity_name, entity_type, d.device_id), entity_type=entity_type,
                 protocol=d.protocol, transport=d.transport, explicit_attrs=d.explicitAttrs, timestamp=d.timestamp,
                 expected_interval=d.expected_interval, attributes=_dump(d.attributes), lazy=_dump(d.lazy),
                 commands=_dump(d.commands), static_attributes=_dump(d.static_attributes),
                 internal_attributes=d.internal_attributes, options=_options(d, DEVICE_OPTIONS),
                 autoprovisioned=auto, status="unknown", message_count=0, error_count=0)
    session.add(row)
    session.flush()
    events.record(session, DeviceProvisioned(tenant=tenant, device_id=row.device_id, entity_id=row.entity_name,
                                             entity_type=row.entity_type, auto=auto))
    return row


def create_devices(session: Session, actor: Actor, tenant: str, path: str, devices: list[DeviceIn]) -> list[Device]:
    """Provision devices (all or none)."""
    ids = [d.device_id for d in devices]
    dupes = sorted({i for i in ids if i is not None and ids.count(i) > 1})
    if dupes:
        raise DuplicateDevice(f"device ids given twice: {', '.join(dupes)}")
    rows = []
    for i, d in enumerate(devices):
        if d.device_id is None:
            raise WrongSyntax(f"devices[{i}]: device_id required",
                              errors=[{"field": f"devices[{i}].device_id", "message": "required"}])
        _unsupported(d, f"devices[{i}]")
        rows.append(new_device(session, tenant, path, d))
    for row in rows:
        audit.append(session, actor, "iot.device_create", "iot_device", row.id,
                     {"tenant": tenant, "device_id": row.device_id, "entity": row.entity_name})
    return rows


def list_devices(session: Session, tenant: str, path: str | None, *, limit: int = 20, offset: int = 0,
                 status: str | None = None) -> tuple[list[Device], int]:
    stmt = select(Device).where(Device.tenant == tenant)
    if path is not None:
        stmt = stmt.where(Device.service_path == path)
    if status is not None:
        stmt = stmt.where(Device.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return list(session.scalars(stmt.order_by(Device.id).limit(limit).offset(offset))), total


def get_device(session: Session, tenant: str, device_id: str) -> Device:
    row = session.scalar(select(Device).where(Device.tenant == tenant, Device.device_id == device_id))
    if row is None:
        raise DeviceNotFound(f"device {device_id} not found in this service")
    return row


def update_device(session: Session, actor: Actor, tenant: str, device_id: str, patch: DeviceIn) -> Device:
    """PUT /iot/devices/{id}: change the fields given (device_id cannot change)."""
    row = get_device(session, tenant, device_id)
    _unsupported(patch, "body")
    given = patch.model_fields_set - {"health", "service", "service_path"}
    if patch.device_id is not None and patch.device_id != device_id:
        raise WrongSyntax("device_id cannot be changed; delete the device and provision it again")
    if "apikey" in given and (patch.apikey or "") != row.apikey:
        if patch.apikey and session.scalar(select(Device.id).where(Device.apikey == patch.apikey,
                                                                   Device.device_id == device_id)) is not None:
            raise DuplicateDevice(f"device {device_id} already exists under apikey {patch.apikey}")
        row.apikey = patch.apikey or ""
    if "entity_type" in given and patch.entity_type:
        row.entity_type = patch.entity_type
    if "entity_name" in given or "entity_type" in given:
        name = patch.entity_name if "entity_name" in given else row.entity_name
        row.entity_name = entity_id_for(name, row.entity_type, device_id)
    for field, column in (("explicitAttrs", "explicit_attrs"), ("timestamp", "timestamp"),
                          ("expected_interval", "expected_interval"), ("protocol", "protocol"),
                          ("transport", "transport"), ("internal_attributes", "internal_attributes")):
        if field in given:
            setattr(row, column, getattr(patch, field))
    _patch_mappings(row, patch, given, DEVICE_OPTIONS)
    session.flush()
    audit.append(session, actor, "iot.device_update", "iot_device", row.id,
                 {"tenant": tenant, "device_id": device_id, "fields": sorted(given)})
    return row


def delete_device(session: Session, actor: Actor, tenant: str, device_id: str) -> None:
    """Remove a device from the registry (its entity stays in the context broker, as with IoT Agents)."""
    row = get_device(session, tenant, device_id)
    session.delete(row)
    session.flush()
    audit.append(session, actor, "iot.device_delete", "iot_device", row.id, {"tenant": tenant, "device_id": device_id})


def health(d: Device) -> dict[str, Any]:
    """A device's health as the API shows it."""
    rate = round(3600 / d.mean_interval, 2) if d.mean_interval else None
    return {"status": d.status, "last_seen": iso(d.last_seen_at), "message_count": d.message_count,
            "error_count": d.error_count, "messages_per_hour": rate,
            "offline_at": iso(d.offline_at) if d.status == "online" else None, "autoprovisioned": d.autoprovisioned}


def device_document(d: Device) -> dict[str, Any]:
    """A device as the IoT Agent API shows it (plus its read-only `health`)."""
    doc: dict[str, Any] = {"device_id": d.device_id, "service": d.tenant, "service_path": d.service_path,
                           "entity_name": d.entity_name, "entity_type": d.entity_type, "attributes": d.attributes,
                           "lazy": d.lazy, "commands": d.commands, "static_attributes": d.static_attributes}
    for key, value in (("apikey", d.apikey or None), ("protocol", d.protocol), ("transport", d.transport),
                       ("explicitAttrs", d.explicit_attrs), ("timestamp", d.timestamp),
                       ("expected_interval", d.expected_interval), ("internal_attributes", d.internal_attributes)):
        if value is not None:
            doc[key] = value
    doc.update(d.options)
    doc["health"] = health(d)
    return doc


def iso(value: Any) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value is not None else None


def list_commands(session: Session, tenant: str, device_id: str, *, limit: int = 20, offset: int = 0
                  ) -> tuple[list[Command], int]:
    """A device's commands, newest first."""
    device = get_device(session, tenant, device_id)
    stmt = select(Command).where(Command.device_pk == device.id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return list(session.scalars(stmt.order_by(Command.id.desc()).limit(limit).offset(offset))), total


# --- dead letters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterFilter:
    reason: str | None = None
    device_id: str | None = None
    apikey: str | None = None


def list_dead_letters(session: Session, tenant: str | None, flt: DeadLetterFilter, *, limit: int = 20,
                      offset: int = 0) -> tuple[list[DeadLetter], int]:
    """Newest first; tenant None lists letters no service group could be found for."""
    stmt = select(DeadLetter).where(DeadLetter.tenant.is_(None) if tenant is None else DeadLetter.tenant == tenant)
    for column, value in ((DeadLetter.reason, flt.reason), (DeadLetter.device_id, flt.device_id),
                          (DeadLetter.apikey, flt.apikey)):
        if value is not None:
            stmt = stmt.where(column == value)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(DeadLetter.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def dead_letter_document(d: DeadLetter) -> dict[str, Any]:
    return {"id": d.id, "service": d.tenant, "apikey": d.apikey, "device_id": d.device_id, "transport": d.transport,
            "channel": d.channel, "reason": d.reason, "detail": d.detail, "payload": d.payload,
            "payload_bytes": d.payload_bytes, "truncated": len(d.payload.encode()) < d.payload_bytes,
            "received_at": iso(d.received_at)}


# --- usage ---------------------------------------------------------------------------------------------


def usage(session: Session) -> dict[str, int]:
    """Live figures for plan coverage."""
    return {"devices": session.scalar(select(func.count()).select_from(Device)) or 0,
            "devices_online": session.scalar(select(func.count()).select_from(Device)
                                             .where(Device.status == "online")) or 0}
