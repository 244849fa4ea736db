"""Device gateway pages (设备接入): the device list with status and a map, one device with its latest measurements
and dead letters, and the provisioning forms for service groups and devices (operators with iot.manage).

The pages live under /gateway: /iot/* belongs to the IoT Agent API, whose clients expect JSON there.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy.orm import Session

from cityplus.api.deps import Ctx, DbSession
from cityplus.core.errors import DomainError
from cityplus.modules.context import service as context
from cityplus.modules.iot import service
from cityplus.modules.iot.errors import IotError
from cityplus.modules.iot.models import Device
from cityplus.modules.iot.schemas import DeviceIn, ServiceGroupIn
from cityplus.web.i18n import N_
from cityplus.web.render import Msg, PageScoped, redirect, render

PER_PAGE = 50
STATUSES = ("online", "offline", "unknown")
STATUS_NAMES = {"online": N_("Online"), "offline": N_("Offline"), "unknown": N_("Not heard from yet")}
REASON_NAMES = {
    "unknown_apikey": N_("Unknown apikey"), "unknown_device": N_("Unknown device"),
    "malformed_payload": N_("Malformed payload"), "too_large": N_("Too large"), "rate_limited": N_("Rate limited"),
    "unknown_command": N_("Answer to no open command"), "internal_error": N_("Internal error"),
    "rejected": N_("Refused by the context broker"),
}
RESOURCES = {"/iot/d": N_("Ultralight 2.0 (/iot/d)"), "/iot/json": N_("JSON (/iot/json)")}
PROTOCOLS = {"PDI-IoTA-UltraLight": N_("Ultralight 2.0"), "PDI-IoTA-JSON": N_("JSON")}
TRANSPORTS = ("MQTT", "HTTP")
NOTICES = {"group_created": N_("The service group has been provisioned."),
           "device_created": N_("The device has been provisioned.")}
LOCATION = "https://uri.etsi.org/ngsi-ld/location"


def _clip(value: str | None, n: int) -> str:
    return (value or "").strip()[:n]


def _tenant(raw: str) -> tuple[str, Msg | None]:
    try:
        return service.tenant_name(raw or None), None
    except DomainError:
        return "", Msg(N_("Use letters, digits and '_' for the tenant, at most 50 characters."))


def _short(name: str) -> str:
    """An expanded attribute name as people know it (the last segment of its IRI)."""
    return name.rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def _entities(session: Session, tenant: str, ids: list[str]) -> dict[str, Any]:
    """The devices' entities by id (absent ones are missing), through the broker's public service."""
    if not ids:
        return {}
    try:
        found, _ = context.query_entities(session, tenant or None, context.EntityQuery(ids=ids, limit=len(ids)))
    except DomainError:
        return {}
    return {e.entity_id: e for e in found}


def _point(entity: Any) -> tuple[float, float] | None:
    """(lat, lon) of an entity's location Point, if it has one."""
    attr = entity.attrs.get(LOCATION) if entity is not None else None
    value = attr.get("value") if isinstance(attr, dict) else None
    if isinstance(value, dict) and value.get("type") == "Point":
        lon, lat = value["coordinates"][:2]
        return float(lat), float(lon)
    return None


def _measurements(entity: Any) -> list[dict[str, Any]]:
    """The entity's current attribute values: the latest measurement of each (history needs the temporal store)."""
    out = []
    for name, attr in sorted((entity.attrs if entity is not None else {}).items()):
        if not isinstance(attr, dict):
            continue
        value = attr.get("value", attr.get("object"))
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)[:200]
        out.append({"name": _short(name), "value": value, "unit": attr.get("unitCode") or "",
                    "observed": attr.get("observedAt") or ""})
    return out


def _form_errors(exc: ValidationError, fields: dict[str, str]) -> dict[str, Msg]:
    """Pydantic errors placed on the form field they belong to (others on the first field)."""
    errors: dict[str, Msg] = {}
    first = next(iter(fields.values()))
    for e in exc.errors():
        where = fields.get(str(e["loc"][0]) if e["loc"] else "", first)
        errors.setdefault(where, Msg(N_("Check this value: %(problem)s"), {"problem": str(e["msg"])[:200]}))
    return errors


def _mappings(text: str) -> tuple[list[dict[str, Any]], Msg | None]:
    """Attribute mappings from lines of `object_id name type [unitCode]`."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (3, 4):
            return [], Msg(N_("Write one attribute a line: measure, attribute name, type and, optionally, a unit "
                              "code (e.g. t temperature Number CEL)."))
        mapping: dict[str, Any] = {"object_id": parts[0], "name": parts[1], "type": parts[2]}
        if len(parts) == 4:
            mapping["unitCode"] = parts[3]
        out.append(mapping)
    if len(out) > 100:
        return [], Msg(N_("At most %(max)s attributes."), {"max": 100})
    return out, None


def _interval(raw: str) -> tuple[int | None, Msg | None]:
    if not raw.strip():
        return None, None
    if raw.strip().isdigit() and 1 <= int(raw) <= 604_800:
        return int(raw), None
    return None, Msg(N_("Enter whole seconds between 1 and 604800."))


def router() -> APIRouter:
    """The device gateway's portal pages."""
    r = APIRouter(prefix="/gateway", include_in_schema=False)

    @r.get("", response_class=HTMLResponse)
    def devices(request: Request, _: PageScoped("iot.read"), session: DbSession, ctx: Ctx,
                service_name: str = "", status: str = "", offset: str = "",
                notice: str | None = None) -> HTMLResponse:
        """Devices of a tenant with their status, on a map where the map library is installed."""
        tenant, bad = _tenant(_clip(service_name, 64))
        chosen = status if status in STATUSES else ""
        start = min(int(offset), 1_000_000) if offset.isdigit() else 0
        rows, total = service.list_devices(session, tenant, None, limit=PER_PAGE, offset=start,
                                           status=chosen or None) if bad is None else ([], 0)
        ents = _entities(session, tenant, [d.entity_name for d in rows])
        items = [{"device": d, "point": _point(ents.get(d.entity_name)),
                  "name": _name(ents.get(d.entity_name))} for d in rows]
        marks = [{"id": i["device"].device_id, "lat": i["point"][0], "lon": i["point"][1],
                  "status": i["device"].status, "name": i["name"] or i["device"].device_id,
                  "href": _device_href(i["device"])} for i in items if i["point"]]
        query = {k: v for k, v in (("service_name", tenant), ("status", chosen)) if v}
        pages = {"prev": urlencode({**query, "offset": max(0, start - PER_PAGE)}) if start else None,
                 "next": urlencode({**query, "offset": start + PER_PAGE}) if start + PER_PAGE < total else None}
        letters = service.list_dead_letters(session, tenant, service.DeadLetterFilter(), limit=1)[1] \
            if bad is None else 0
        return render(request, "iot/devices.html", {
            "items": items, "total": total, "tenant": tenant, "status": chosen, "statuses": STATUSES,
            "status_names": STATUS_NAMES, "pages": pages, "letters": letters,
            "marks_json": _script_json(marks), "errors": {"service_name": bad} if bad else {},
            "can_manage": _can_manage(request), "notice": NOTICES.get(notice or "")},
            status=422 if bad else 200)

    @r.get("/devices/{device_id}", response_class=HTMLResponse)
    def device(device_id: str, request: Request, _: PageScoped("iot.read"), session: DbSession,
               service_name: str = "", notice: str | None = None) -> HTMLResponse:
        """One device: provisioning, health, latest measurements, commands and dead letters."""
        tenant, bad = _tenant(_clip(service_name, 64))
        if bad is not None:
            raise service_not_found(device_id)
        d = service.get_device(session, tenant, device_id[:256])
        entity = _entities(session, tenant, [d.entity_name]).get(d.entity_name)
        letters, letter_total = service.list_dead_letters(session, tenant, service.DeadLetterFilter(
            device_id=d.device_id), limit=20)
        commands, _n = service.list_commands(session, tenant, d.device_id, limit=10)
        return render(request, "iot/device.html", {
            "d": d, "tenant": tenant, "health": service.health(d), "status_names": STATUS_NAMES,
            "measurements": _measurements(entity), "point": _point(entity), "name": _name(entity),
            "letters": letters, "letter_total": letter_total, "reason_names": REASON_NAMES, "commands": commands,
            "notice": NOTICES.get(notice or "")})

    # --- provisioning ---------------------------------------------------------------------------------

    def group_form(request: Request, *, form: dict[str, Any] | None = None, errors: dict[str, Msg] | None = None,
                   status: int = 200) -> HTMLResponse:
        blank = {"service_name": "", "apikey": "", "resource": "/iot/d", "entity_type": "", "attributes": "",
                 "expected_interval": "", "autoprovision": True}
        return render(request, "iot/group_new.html", {"form": form or blank, "errors": errors or {},
                                                      "resources": RESOURCES}, status=status)

    @r.get("/provision/group", response_class=HTMLResponse)
    def new_group(request: Request, _: PageScoped("iot.manage")) -> HTMLResponse:
        """The form to provision a service group (设备组)."""
        return group_form(request)

    @r.post("/provision/group")
    def create_group(request: Request, principal: PageScoped("iot.manage"), session: DbSession,
                     service_name: Annotated[str, Form()] = "", apikey: Annotated[str, Form()] = "",
                     resource: Annotated[str, Form()] = "", entity_type: Annotated[str, Form()] = "",
                     attributes: Annotated[str, Form()] = "", expected_interval: Annotated[str, Form()] = "",
                     autoprovision: Annotated[str, Form()] = "") -> Response:
        """Provision a service group, as POST /iot/services does."""
        form = {"service_name": _clip(service_name, 64), "apikey": _clip(apikey, 200), "resource": resource,
                "entity_type": _clip(entity_type, 300), "attributes": attributes[:20_000],
                "expected_interval": _clip(expected_interval, 10), "autoprovision": autoprovision == "on"}
        errors: dict[str, Msg] = {}
        tenant, bad = _tenant(form["service_name"])
        if bad:
            errors["service_name"] = bad
        if resource not in RESOURCES:
            errors["resource"] = Msg(N_("Choose how the devices send their measurements."))
        mappings, bad = _mappings(form["attributes"])
        if bad:
            errors["attributes"] = bad
        interval, bad = _interval(form["expected_interval"])
        if bad:
            errors["expected_interval"] = bad
        if not errors:
            payload = {"apikey": form["apikey"], "resource": resource, "attributes": mappings,
                       "autoprovision": form["autoprovision"], "expected_interval": interval,
                       **({"entity_type": form["entity_type"]} if form["entity_type"] else {})}
            try:
                spec = ServiceGroupIn.model_validate(payload)
                with session.begin_nested():
                    service.create_groups(session, principal.actor, tenant, "/", [spec])
            except ValidationError as exc:
                errors = _form_errors(exc, {"apikey": "apikey", "entity_type": "entity_type",
                                            "attributes": "attributes", "expected_interval": "expected_interval"})
            except IotError as exc:
                errors["apikey"] = Msg(N_("The service group could not be provisioned: %(problem)s"),
                                       {"problem": exc.detail[:200]})
        if errors:
            return group_form(request, form=form, errors=errors, status=422)
        return redirect("/gateway", notice="group_created", **({"service_name": tenant} if tenant else {}))

    def device_form(request: Request, *, form: dict[str, Any] | None = None,
                    errors: dict[str, Msg] | None = None, status: int = 200) -> HTMLResponse:
        blank = {"service_name": "", "device_id": "", "apikey": "", "entity_type": "", "entity_name": "",
                 "protocol": "PDI-IoTA-UltraLight", "transport": "MQTT", "lat": "", "lon": "",
                 "expected_interval": ""}
        return render(request, "iot/device_new.html", {"form": form or blank, "errors": errors or {},
                                                       "protocols": PROTOCOLS, "transports": TRANSPORTS},
                      status=status)

    @r.get("/provision/device", response_class=HTMLResponse)
    def new_device(request: Request, _: PageScoped("iot.manage")) -> HTMLResponse:
        """The form to provision a device (设备)."""
        return device_form(request)

    @r.post("/provision/device")
    def create_device(request: Request, principal: PageScoped("iot.manage"), session: DbSession,
                      service_name: Annotated[str, Form()] = "", device_id: Annotated[str, Form()] = "",
                      apikey: Annotated[str, Form()] = "", entity_type: Annotated[str, Form()] = "",
                      entity_name: Annotated[str, Form()] = "", protocol: Annotated[str, Form()] = "",
                      transport: Annotated[str, Form()] = "", lat: Annotated[str, Form()] = "",
                      lon: Annotated[str, Form()] = "", expected_interval: Annotated[str, Form()] = "") -> Response:
        """Provision a device, as POST /iot/devices does."""
        form = {"service_name": _clip(service_name, 64), "device_id": _clip(device_id, 300),
                "apikey": _clip(apikey, 200), "entity_type": _clip(entity_type, 300),
                "entity_name": _clip(entity_name, 600), "protocol": protocol, "transport": transport,
                "lat": _clip(lat, 32), "lon": _clip(lon, 32), "expected_interval": _clip(expected_interval, 10)}
        errors: dict[str, Msg] = {}
        tenant, bad = _tenant(form["service_name"])
        if bad:
            errors["service_name"] = bad
        if protocol not in PROTOCOLS:
            errors["protocol"] = Msg(N_("Choose the payload format of the device."))
        if transport not in TRANSPORTS:
            errors["transport"] = Msg(N_("Choose MQTT or HTTP."))
        interval, bad = _interval(form["expected_interval"])
        if bad:
            errors["expected_interval"] = bad
        statics: list[dict[str, Any]] = []
        if form["lat"] or form["lon"]:
            try:
                la, lo = float(form["lat"]), float(form["lon"])
                if not (-90 <= la <= 90 and -180 <= lo <= 180):
                    raise ValueError
                statics.append({"name": "location", "type": "geo:point", "value": f"{la}, {lo}"})
            except ValueError:
                errors["lat"] = Msg(N_("Enter a latitude (-90 to 90) and a longitude (-180 to 180) in degrees, "
                                       "or neither."))
        if not errors:
            payload = {"device_id": form["device_id"], "protocol": protocol, "transport": transport,
                       "static_attributes": statics, "expected_interval": interval,
                       **{k: form[k] for k in ("apikey", "entity_type", "entity_name") if form[k]}}
            try:
                spec = DeviceIn.model_validate(payload)
                with session.begin_nested():
                    created = service.create_devices(session, principal.actor, tenant, "/", [spec])[0]
            except ValidationError as exc:
                errors = _form_errors(exc, {"device_id": "device_id", "apikey": "apikey",
                                            "entity_type": "entity_type", "entity_name": "entity_name",
                                            "expected_interval": "expected_interval"})
            except IotError as exc:
                errors["device_id"] = Msg(N_("The device could not be provisioned: %(problem)s"),
                                          {"problem": exc.detail[:200]})
        if errors:
            return device_form(request, form=form, errors=errors, status=422)
        return redirect(_device_path(created), notice="device_created",
                        **({"service_name": created.tenant} if created.tenant else {}))

    return r


def service_not_found(device_id: str) -> DomainError:
    from cityplus.modules.iot.errors import DeviceNotFound

    return DeviceNotFound(f"device {device_id[:64]} not found")


def _device_path(d: Device) -> str:
    return f"/gateway/devices/{quote(d.device_id, safe='')}"


def _device_href(d: Device) -> str:
    query = f"?{urlencode({'service_name': d.tenant})}" if d.tenant else ""
    return _device_path(d) + query


def _name(entity: Any) -> str:
    """The entity's `name` property (the simulator's site names), if any."""
    attr = entity.attrs.get("https://uri.etsi.org/ngsi-ld/name") if entity is not None else None
    if attr is None and entity is not None:
        attr = entity.attrs.get("https://uri.etsi.org/ngsi-ld/default-context/name")
    value = attr.get("value") if isinstance(attr, dict) else None
    return value if isinstance(value, str) else ""


def _script_json(value: Any) -> Markup:
    """JSON for a <script type="application/json"> element: its text is not HTML-decoded, so it is not
    HTML-escaped; <, > and & are JSON-escaped instead, so nothing in it can close the element."""
    text = json.dumps(value, ensure_ascii=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _can_manage(request: Request) -> bool:
    viewer = getattr(request.state, "viewer", None)
    return bool(viewer is not None and viewer.has("iot.manage"))
