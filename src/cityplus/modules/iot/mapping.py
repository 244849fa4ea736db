"""Mapping device measures to NGSI-LD: attribute names and types from the provisioning, observedAt, unitCode,
static attributes, and a location from lat/lon. Produces compact, normalized NGSI-LD fragments."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cityplus.modules.iot.errors import MalformedPayload
from cityplus.modules.iot.models import Device, ServiceGroup

NUMBER = frozenset({"number", "float", "double", "decimal", "real"})
INTEGER = frozenset({"integer", "int", "long", "short"})
BOOLEAN = frozenset({"boolean", "bool"})
TEXT = frozenset({"text", "string"})
STRUCTURED = frozenset({"structuredvalue", "json", "object", "array", "jsonproperty"})
GEO = frozenset({"geo:point", "geo:json", "geo:line", "geo:box", "geo:polygon", "geoproperty", "point", "linestring",
                 "polygon", "multipoint", "multilinestring", "multipolygon"})
RELATIONSHIP = frozenset({"relationship"})
LAT_NAMES, LON_NAMES = ("lat", "latitude"), ("lon", "lng", "long", "longitude")
IGNORED = frozenset({"id", "type"})  # IoT Agents silently drop measures named like entity members


@dataclass
class Profile:
    """Everything needed to map one device's measures: its own provisioning over its group's."""

    tenant: str
    entity_id: str
    entity_type: str
    explicit_attrs: bool
    by_object: dict[str, dict[str, Any]] = field(default_factory=dict)  # object_id (or name) → mapping
    static_attributes: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, device: Device, group: ServiceGroup | None) -> Profile:
        by_object: dict[str, dict[str, Any]] = {}
        for mapping in [*(group.attributes if group else []), *device.attributes]:  # the device's win
            by_object[mapping.get("object_id") or mapping["name"]] = mapping
        statics = {s["name"]: s for s in [*(group.static_attributes if group else []), *device.static_attributes]}
        commands = {c["name"]: c for c in [*(group.commands if group else []), *device.commands]}
        explicit = device.explicit_attrs if device.explicit_attrs is not None else bool(group and group.explicit_attrs)
        return cls(tenant=device.tenant, entity_id=device.entity_name, entity_type=device.entity_type,
                   explicit_attrs=explicit, by_object=by_object, static_attributes=list(statics.values()),
                   commands=list(commands.values()))


def iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: Any, name: str, integer: bool) -> int | float:
    if isinstance(value, bool):
        raise MalformedPayload(f"{name}: {value!r} is not a number")
    if isinstance(value, int | float):
        number: float | int = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise MalformedPayload(f"{name}: {value[:40]!r} is not a number") from None
    else:
        raise MalformedPayload(f"{name}: {str(value)[:40]!r} is not a number")
    if not math.isfinite(number):
        raise MalformedPayload(f"{name}: {value!r} is not a finite number")
    if integer:
        if number != int(number):
            raise MalformedPayload(f"{name}: {value!r} is not an integer")
        return int(number)
    return int(number) if isinstance(number, int) else number


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "on", "yes"):
        return True
    if text in ("false", "0", "off", "no"):
        return False
    raise MalformedPayload(f"{name}: {str(value)[:40]!r} is not a boolean")


def _geometry(value: Any, name: str) -> dict[str, Any]:
    """GeoJSON from a GeoJSON object, "lat, lon" text (NGSIv2 geo:point) or [lon, lat] (GeoJSON order)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise MalformedPayload(f"{name}: not a GeoJSON geometry") from None
        else:
            parts = [p.strip() for p in text.split(",")]
            if len(parts) != 2:
                raise MalformedPayload(f"{name}: expected 'lat, lon', got {text[:40]!r}")
            lat, lon = (_number(p, name, False) for p in parts)
            return _point(lat, lon, name)
    if isinstance(value, list) and len(value) == 2:
        lon, lat = (_number(p, name, False) for p in value)
        return _point(lat, lon, name)
    if isinstance(value, dict) and isinstance(value.get("type"), str) and "coordinates" in value:
        return value
    raise MalformedPayload(f"{name}: not a location (GeoJSON, 'lat, lon' or [lon, lat])")


def _point(lat: float, lon: float, name: str) -> dict[str, Any]:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise MalformedPayload(f"{name}: latitude {lat} / longitude {lon} out of range")
    return {"type": "Point", "coordinates": [lon, lat]}


def _structured(value: Any, name: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise MalformedPayload(f"{name}: not JSON") from None
    return value


def attribute(mapping: dict[str, Any], value: Any, observed_at: str | None) -> dict[str, Any]:
    """One normalized NGSI-LD attribute from a provisioned mapping (name, type, metadata) and a raw value."""
    name, kind = mapping["name"], str(mapping.get("type", "")).lower()
    out: dict[str, Any]
    if kind in GEO:
        out = {"type": "GeoProperty", "value": _geometry(value, name)}
    elif kind in RELATIONSHIP:
        out = {"type": "Relationship", "object": str(value)}
    elif kind in NUMBER or kind in INTEGER:
        out = {"type": "Property", "value": _number(value, name, kind in INTEGER)}
    elif kind in BOOLEAN:
        out = {"type": "Property", "value": _boolean(value, name)}
    elif kind in TEXT:
        out = {"type": "Property", "value": value if isinstance(value, str) else json.dumps(value)}
    elif kind in STRUCTURED:
        out = {"type": "Property", "value": _structured(value, name)}
    else:
        out = {"type": "Property", "value": value}
    if observed_at is not None:
        out["observedAt"] = observed_at
    metadata = dict(mapping.get("metadata") or {})
    unit = mapping.get("unitCode") or metadata.pop("unitCode", None)
    if isinstance(unit, dict):
        unit = unit.get("value")
    if isinstance(unit, str) and unit and out["type"] == "Property":
        out["unitCode"] = unit
    for key, meta in metadata.items():  # other metadata become sub-properties
        if isinstance(meta, dict) and "value" in meta and meta["value"] is not None:
            out[key] = {"type": "Property", "value": meta["value"]}
    return out


def static_attributes(profile: Profile) -> dict[str, Any]:
    out = {}
    for s in profile.static_attributes:
        if s.get("value") is None:
            continue
        out[s["name"]] = attribute(s, s["value"], None)
    return out


def measures_fragment(profile: Profile, values: dict[str, Any], observed_at: str) -> dict[str, Any]:
    """The entity attributes one observation sets (without id, type or static attributes)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        mapping = profile.by_object.get(key)
        if mapping is None:
            if profile.explicit_attrs or key in IGNORED:
                continue
            mapping = {"name": key, "type": ""}
        if mapping["name"] in IGNORED:
            continue
        out[mapping["name"]] = attribute(mapping, value, observed_at)
    _location_from_lat_lon(out, observed_at)
    return out


def _location_from_lat_lon(attrs: dict[str, Any], observed_at: str) -> None:
    """A measured latitude and longitude also give the entity its `location` (unless one was measured)."""
    if "location" in attrs:
        return
    lat = next((attrs[n] for n in LAT_NAMES if n in attrs), None)
    lon = next((attrs[n] for n in LON_NAMES if n in attrs), None)
    if lat is None or lon is None:
        return
    point = _point(_number(lat.get("value"), "lat", False), _number(lon.get("value"), "lon", False), "location")
    attrs["location"] = {"type": "GeoProperty", "value": point, "observedAt": observed_at}
