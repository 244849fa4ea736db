"""Commands (设备指令): sent to a device over MQTT (`/<apikey>/<device_id>/cmd`) or kept for HTTP polling; the
device's reply (`…/cmdexe`, or POST /iot/json|d/commands) sets the command's status on the entity.

Entity attributes, as the IoT Agents keep them: `<cmd>` (the value sent), `<cmd>_status` (PENDING → DELIVERED →
OK / ERROR) and `<cmd>_info` (the device's result). A reply is an error when its result is text starting with
"ERROR" or a JSON object with an `error` member (a CityPlus convention; IoT Agents report every reply as OK).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from cityplus.core import audit
from cityplus.core.audit import Actor
from cityplus.core.db import utcnow
from cityplus.core.errors import DomainError
from cityplus.modules.context import jsonld
from cityplus.modules.context import service as context
from cityplus.modules.iot.errors import CommandNotFound, IotError, MalformedPayload, Rejected
from cityplus.modules.iot.ingest import Message, dead_letter, resolve
from cityplus.modules.iot.mapping import Profile
from cityplus.modules.iot.models import Command, Device, ServiceGroup
from cityplus.modules.iot.service import get_device, tenant_group

if TYPE_CHECKING:
    from cityplus.modules.iot.runtime import IotRuntime

log = structlog.get_logger("cityplus.iot.commands")
OPEN = ("PENDING", "DELIVERED")


def device_format(device: Device, group: ServiceGroup | None) -> str:
    """ul or json: by the device's protocol, else its group's resource (/iot/d is Ultralight), else JSON."""
    protocol = (device.protocol or (group.options.get("protocol") if group else "") or "").lower()
    if "ul" in protocol or "ultra" in protocol:
        return "ul"
    if "json" in protocol:
        return "json"
    return "ul" if group is not None and group.resource == "/iot/d" else "json"


def encode(device: Device, fmt: str, name: str, value: Any) -> str:
    """The command as the device reads it: `<device_id>@<cmd>|<value>` (Ultralight) or `{"<cmd>": value}`."""
    if fmt == "ul":
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return f"{device.device_id}@{name}|{text}"
    return json.dumps({name: value}, ensure_ascii=False)


def _entity_update(session: Session, device: Device, attrs: dict[str, Any], active: jsonld.ActiveContext) -> None:
    entity = context.expand_compact({"id": device.entity_name, "type": device.entity_type, **attrs}, active)
    context.upsert_entity(session, device.tenant or None, entity, replace=False)


def _status_attrs(name: str, status: str, info: Any = None) -> dict[str, Any]:
    now = utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    attrs: dict[str, Any] = {f"{name}_status": {"type": "Property", "value": status, "observedAt": now}}
    if info is not None:
        attrs[f"{name}_info"] = {"type": "Property", "value": info, "observedAt": now}
    return attrs


def send(session: Session, rt: IotRuntime, actor: Actor, tenant: str, device_id: str, name: str, value: Any,
         active: jsonld.ActiveContext) -> Command:
    """Send a provisioned command: recorded PENDING on the entity; published over MQTT after the commit, or kept
    for the device to poll (transport HTTP, or no MQTT broker configured)."""
    device = get_device(session, tenant, device_id)
    group = tenant_group(session, tenant, device.apikey)
    if name not in {c["name"] for c in Profile.of(device, group).commands}:
        raise CommandNotFound(f"device {device_id} has no command {name!r}; provision it in `commands`")
    transport_option = (device.transport or (group.options.get("transport") if group else None) or "").upper()
    gateway = rt.mqtt
    transport = "http" if transport_option == "HTTP" or gateway is None else "mqtt"
    if value is None:
        value = ""
    row = Command(device_pk=device.id, name=name, value=value, transport=transport, status="PENDING",
                  created_at=utcnow(), updated_at=utcnow())
    session.add(row)
    session.flush()
    try:
        _entity_update(session, device, {name: {"type": "Property", "value": value}, **_status_attrs(name, "PENDING")},
                       active)
    except DomainError as exc:
        raise Rejected(f"the context broker refused the command attributes: {exc.detail}") from None
    audit.append(session, actor, "iot.command_send", "iot_command", row.id,
                 {"tenant": tenant, "device_id": device_id, "command": name, "transport": transport})
    if transport == "mqtt":
        topic = f"/{device.apikey}/{device.device_id}/cmd"
        payload = encode(device, device_format(device, group), name, value)

        def publish(_session: Session) -> None:
            # After the commit: a device never answers a command that does not exist yet, nor one rolled back.
            gateway.client.publish(topic, payload, qos=1)
            log.info("iot_command_published", topic=topic, command=name)

        event.listen(session, "after_commit", publish, once=True)
    return row


def poll(session: Session, device: Device, group: ServiceGroup | None, active: jsonld.ActiveContext) -> str | None:
    """The device's pending HTTP commands (now DELIVERED), in its format; None when there are none."""
    rows = list(session.scalars(select(Command).where(Command.device_pk == device.id, Command.status == "PENDING",
                                                      Command.transport == "http").order_by(Command.id)))
    if not rows:
        return None
    fmt = device_format(device, group)
    for row in rows:
        row.status, row.updated_at = "DELIVERED", utcnow()
    _entity_update(session, device, {k: v for r in rows for k, v in _status_attrs(r.name, "DELIVERED").items()},
                   active)
    if fmt == "ul":
        return "#".join(encode(device, fmt, r.name, r.value) for r in rows)
    return json.dumps({r.name: r.value for r in rows}, ensure_ascii=False)


def parse_results(payload: bytes, fmt: str, device_id: str) -> dict[str, Any]:
    """Command results: `<device_id>@<cmd>|<result>` (Ultralight, `#`-separated) or `{"<cmd>": result}`."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MalformedPayload("the command result is not UTF-8 text") from None
    if fmt == "json" or text.startswith("{"):
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MalformedPayload(f"the command result is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or not body:
            raise MalformedPayload('a JSON command result is an object {"<command>": result}')
        return body
    results: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split("#"))):
        head, sep, result = part.partition("|")
        dev, at, name = head.partition("@")
        if not at or not name or not sep:
            raise MalformedPayload(f"expected <device_id>@<command>|<result>, got {part[:60]!r}")
        if dev != device_id:
            raise MalformedPayload(f"the result names device {dev[:40]!r}, not {device_id[:40]!r}")
        results[name] = result
    if not results:
        raise MalformedPayload("empty command result")
    return results


def _is_error(result: Any) -> bool:
    if isinstance(result, str):
        return result.strip().upper().startswith("ERROR")
    return isinstance(result, dict) and "error" in result


def apply_results(session: Session, rt: IotRuntime, msg: Message, active: jsonld.ActiveContext
                  ) -> tuple[int, IotError | None]:
    """A device's command results (MQTT cmdexe or HTTP): each sets its command OK/ERROR. A failure is rolled back,
    filed as a dead letter and returned."""
    tenant = None
    try:
        with session.begin_nested():
            device, group = resolve(session, msg)
            tenant = device.tenant
            results = parse_results(msg.payload, msg.fmt, device.device_id)
            attrs: dict[str, Any] = {}
            for name, result in results.items():
                row = session.scalars(select(Command).where(Command.device_pk == device.id, Command.name == name,
                                                            Command.status.in_(OPEN))
                                      .order_by(Command.id.desc()).limit(1)).first()
                if row is None:
                    raise CommandNotFound(f"device {device.device_id} has no open command {name!r}")
                row.status, row.info, row.updated_at = ("ERROR" if _is_error(result) else "OK"), result, utcnow()
                attrs.update(_status_attrs(name, row.status, result))
            _entity_update(session, device, attrs, active)
        return len(results), None
    except IotError as exc:
        error: IotError = exc
    except DomainError as exc:
        error = Rejected(f"the context broker refused the command result: {exc.detail}")
    reason = {"CommandNotFound": "unknown_command", "MalformedPayload": "malformed_payload",
              "GroupNotFound": "unknown_apikey", "DeviceNotFound": "unknown_device"}.get(type(error).__name__,
                                                                                         "rejected")
    dead_letter(session, rt, msg, reason, error.detail, tenant=tenant or getattr(error, "tenant", None))
    return 0, error
