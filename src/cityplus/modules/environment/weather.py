"""Weather warning signals (气象灾害预警信号) issued by 市气象局 and published as WeatherAlert entities.

Signal types, levels and their criteria follow the China Meteorological Administration's Order No. 16 (2007),
《气象灾害预警信号发布与传播办法》 and its annex; see docs/modules/environment.md. Only 暴雨 (rainstorm) and 高温 (high
temperature) are implemented so far.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shapely.geometry import shape
from shapely.validation import explain_validity
from sqlalchemy.orm import Session

from cityplus.core import audit, events
from cityplus.core.audit import Actor
from cityplus.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from cityplus.modules.context import jsonld
from cityplus.modules.context import service as context
from cityplus.modules.context.errors import ResourceNotFound
from cityplus.modules.environment.events import WeatherWarningIssued, WeatherWarningLifted

ALERT_TYPE = "WeatherAlert"
ISSUING_ORGS = frozenset({"qxj"})  # 市气象局
ALERT_SOURCE = "成都市气象局 Chengdu Meteorological Bureau"
# Chengdu's extent with a margin (its districts span about 102.9–104.9 °E, 30.1–31.4 °N).
CITY_BOUNDS = (102.5, 29.8, 105.2, 31.7)
MAX_VALIDITY = timedelta(hours=72)
MAX_BACKDATE = timedelta(hours=1)
MAX_VERTICES = 5000
# CAP-like severities of the Smart Data Models for the four colours (blue is the mildest).
SEVERITY = {"blue": "low", "yellow": "medium", "orange": "high", "red": "critical"}
COLOUR_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}


@dataclass(frozen=True)
class SignalRule:
    """One level of one warning signal with its issuing criterion (CMA Order No. 16, annex)."""

    criterion_zh: str
    criterion_en: str


@dataclass(frozen=True)
class SignalType:
    key: str
    name_zh: str
    name_en: str
    sub_category: str  # Smart Data Models WeatherAlert subCategory
    levels: Mapping[str, SignalRule]


SIGNALS: dict[str, SignalType] = {
    "rainstorm": SignalType("rainstorm", "暴雨", "rainstorm", "rainfall", {
        "blue": SignalRule("12小时内降雨量将达50毫米以上，或者已达50毫米以上且降雨可能持续。",
                           "50 mm or more of rain within 12 hours is expected, or has fallen and may continue."),
        "yellow": SignalRule("6小时内降雨量将达50毫米以上，或者已达50毫米以上且降雨可能持续。",
                             "50 mm or more of rain within 6 hours is expected, or has fallen and may continue."),
        "orange": SignalRule("3小时内降雨量将达50毫米以上，或者已达50毫米以上且降雨可能持续。",
                             "50 mm or more of rain within 3 hours is expected, or has fallen and may continue."),
        "red": SignalRule("3小时内降雨量将达100毫米以上，或者已达100毫米以上且降雨可能持续。",
                          "100 mm or more of rain within 3 hours is expected, or has fallen and may continue."),
    }),
    "high_temperature": SignalType("high_temperature", "高温", "high temperature", "highTemperature", {
        "yellow": SignalRule("连续三天日最高气温将在35℃以上。",
                             "The daily maximum temperature will be 35 °C or above for three consecutive days."),
        "orange": SignalRule("24小时内最高气温将升至37℃以上。",
                             "The maximum temperature will rise to 37 °C or above within 24 hours."),
        "red": SignalRule("24小时内最高气温将升至40℃以上。",
                          "The maximum temperature will rise to 40 °C or above within 24 hours."),
    }),
}


@dataclass(frozen=True)
class WarningSpec:
    """What a forecaster issues: signal, level, area, validity and guidance (防御指南)."""

    signal: str
    level: str
    area_name: str
    area: dict[str, Any]  # GeoJSON Polygon or MultiPolygon, lon/lat
    valid_from: datetime
    valid_to: datetime
    guidance_zh: str
    guidance_en: str | None = None


@dataclass(frozen=True)
class WeatherWarning:
    """A warning signal as published (read back from its WeatherAlert entity)."""

    id: str
    signal: str
    level: str
    name_zh: str
    name_en: str
    severity: str
    criterion_zh: str
    criterion_en: str
    area_name: str
    area: dict[str, Any]
    valid_from: datetime
    valid_to: datetime
    issued_at: datetime
    status: str  # issued | lifted
    guidance_zh: str
    guidance_en: str | None
    issued_by: str | None

    def in_force(self, now: datetime) -> bool:
        return self.status == "issued" and self.valid_from <= now < self.valid_to


def _bad(field: str, message: str) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", errors=[{"field": field, "message": message}])


def may_issue(actor: Actor) -> None:
    """Only 市气象局 staff (and platform administrators) issue or lift warning signals."""
    if actor.role != "platform_admin" and actor.org_code not in ISSUING_ORGS:
        raise Forbidden("only staff of 市气象局 (qxj) issue or lift weather warning signals",
                        errors=[{"field": "org", "message": f"{actor.org_code} is not the meteorological bureau"}])


def check_area(area: Mapping[str, Any]) -> None:
    """A valid GeoJSON (Multi)Polygon inside the city's extent; Unprocessable names what is wrong."""
    if area.get("type") not in ("Polygon", "MultiPolygon"):
        raise _bad("area.type", "the area must be a GeoJSON Polygon or MultiPolygon")
    rings = area.get("coordinates")
    polygons = [rings] if area.get("type") == "Polygon" else rings
    if not isinstance(polygons, list) or not polygons:
        raise _bad("area.coordinates", "no coordinates")
    vertices = 0
    for poly in polygons:
        if not isinstance(poly, list) or not poly:
            raise _bad("area.coordinates", "a polygon is a list of linear rings")
        for ring in poly:
            if not isinstance(ring, list) or len(ring) < 4:
                raise _bad("area.coordinates", "a linear ring has at least 4 positions")
            for pos in ring:
                if (not isinstance(pos, list) or len(pos) not in (2, 3)
                        or not all(isinstance(x, int | float) and not isinstance(x, bool) and x == x
                                   and abs(x) != float("inf") for x in pos)):
                    raise _bad("area.coordinates", "a position is [longitude, latitude] in numbers")
            if ring[0] != ring[-1]:
                raise _bad("area.coordinates", "a linear ring must end where it starts (closed)")
            vertices += len(ring)
    if vertices > MAX_VERTICES:
        raise _bad("area.coordinates", f"more than {MAX_VERTICES} positions")
    geom = shape(area)
    if not geom.is_valid:
        raise _bad("area", f"invalid polygon: {explain_validity(geom)}")
    west, south, east, north = geom.bounds
    if west < CITY_BOUNDS[0] or south < CITY_BOUNDS[1] or east > CITY_BOUNDS[2] or north > CITY_BOUNDS[3]:
        raise _bad("area", "the area must lie within Chengdu (about 102.9–104.9 °E, 30.1–31.4 °N; lon, lat order)")


def check_spec(spec: WarningSpec, now: datetime) -> SignalType:
    signal = SIGNALS.get(spec.signal)
    if signal is None:
        raise _bad("signal", f"unknown signal {spec.signal!r}; use one of {', '.join(SIGNALS)}")
    if spec.level not in signal.levels:
        raise _bad("level", f"{signal.name_en} warnings are {', '.join(signal.levels)}; not {spec.level!r}")
    check_area(spec.area)
    for name, t in (("valid_from", spec.valid_from), ("valid_to", spec.valid_to)):
        if t.tzinfo is None:
            raise _bad(name, "give a time zone (e.g. +08:00 or Z)")
    if spec.valid_to <= spec.valid_from:
        raise _bad("valid_to", "must be after valid_from")
    if spec.valid_to <= now:
        raise _bad("valid_to", "must be in the future")
    if spec.valid_from < now - MAX_BACKDATE:
        raise _bad("valid_from", "may be at most one hour in the past")
    if spec.valid_to - spec.valid_from > MAX_VALIDITY:
        raise _bad("valid_to", "a signal is valid for at most 72 hours; issue it again to extend it")
    if not spec.guidance_zh.strip():
        raise _bad("guidance_zh", "defence guidance (防御指南) in Chinese is required")
    if not spec.area_name.strip():
        raise _bad("area_name", "name the area, e.g. 全市 or 龙泉驿区")
    return signal


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _dt(t: datetime) -> dict[str, str]:
    return {"@type": "DateTime", "@value": _iso(t)}


def issue(session: Session, active: jsonld.ActiveContext, actor: Actor, spec: WarningSpec, *,
          now: datetime | None = None) -> WeatherWarning:
    """Issue a warning signal: validate, create its WeatherAlert entity, audit, publish an event."""
    may_issue(actor)
    now = now or datetime.now(UTC)
    signal = check_spec(spec, now)
    rule = signal.levels[spec.level]
    entity_id = f"urn:ngsi-ld:WeatherAlert:chengdu-{now:%Y%m%d%H%M}-{secrets.token_hex(4)}"
    entity = {
        "id": entity_id, "type": ALERT_TYPE,
        "category": {"type": "Property", "value": "weather"},
        "subCategory": {"type": "Property", "value": signal.sub_category},
        "severity": {"type": "Property", "value": SEVERITY[spec.level]},
        "warningSignal": {"type": "Property", "value": signal.key},
        "warningLevel": {"type": "Property", "value": spec.level},
        "name": {"type": "Property", "value": f"{signal.name_zh}{COLOUR_ZH[spec.level]}预警信号"},
        "alternateName": {"type": "Property", "value": f"{signal.name_en} warning, {spec.level}"},
        "criterion": {"type": "LanguageProperty", "languageMap": {"zh": rule.criterion_zh, "en": rule.criterion_en}},
        "description": {"type": "LanguageProperty", "languageMap": {
            "zh": spec.guidance_zh.strip(), **({"en": spec.guidance_en.strip()} if spec.guidance_en else {})}},
        "areaServed": {"type": "Property", "value": spec.area_name.strip()},
        "location": {"type": "GeoProperty", "value": dict(spec.area)},
        "address": {"type": "Property", "value": {"addressCountry": "CN", "addressRegion": "四川省",
                                                   "addressLocality": "成都市"}},
        "alertSource": {"type": "Property", "value": ALERT_SOURCE},
        "dateIssued": {"type": "Property", "value": _dt(now)},
        "validFrom": {"type": "Property", "value": _dt(spec.valid_from)},
        "validTo": {"type": "Property", "value": _dt(spec.valid_to)},
        "alertStatus": {"type": "Property", "value": "issued"},
        "issuedBy": {"type": "Property", "value": actor.org_code or actor.username},
    }
    context.create_entity(session, None, context.expand_compact(entity, active))
    audit.append(session, actor, "environment.warning_issued", "weather_warning", entity_id,
                 {"signal": signal.key, "level": spec.level, "area": spec.area_name,
                  "valid_from": _iso(spec.valid_from), "valid_to": _iso(spec.valid_to)})
    events.record(session, WeatherWarningIssued(entity_id=entity_id, signal=signal.key, level=spec.level,
                                                area_name=spec.area_name, valid_from=spec.valid_from,
                                                valid_to=spec.valid_to))
    return get(session, active, entity_id)


def lift(session: Session, active: jsonld.ActiveContext, actor: Actor, entity_id: str, *,
         now: datetime | None = None) -> WeatherWarning:
    """Lift (解除) a warning signal: it ends now; audited, with an event."""
    may_issue(actor)
    now = now or datetime.now(UTC)
    current = get(session, active, entity_id)
    if current.status != "issued" or current.valid_to <= now:
        raise Conflict(f"warning {entity_id} is no longer in force")
    fragment = {"alertStatus": {"type": "Property", "value": "lifted"},
                "validTo": {"type": "Property", "value": _dt(max(now, current.valid_from))}}
    context.update_attrs(session, None, entity_id, context.expand_compact(fragment, active, require_id=False,
                                                                          require_type=False))
    audit.append(session, actor, "environment.warning_lifted", "weather_warning", entity_id,
                 {"signal": current.signal, "level": current.level})
    events.record(session, WeatherWarningLifted(entity_id=entity_id, signal=current.signal, level=current.level))
    return get(session, active, entity_id)


def _value(attrs: Mapping[str, Any], active: jsonld.ActiveContext, name: str) -> Any:
    attr = attrs.get(active.expand_term(name))
    if attr is None:
        return None
    inst = context.instances(attr)[0]
    if "languageMap" in inst:
        return inst["languageMap"]
    value = inst.get("value")
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def _when(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _warning(entity_id: str, attrs: Mapping[str, Any], active: jsonld.ActiveContext) -> WeatherWarning:
    def v(name: str) -> Any:
        return _value(attrs, active, name)

    criterion = v("criterion") or {}
    guidance = v("description") or {}
    return WeatherWarning(
        id=entity_id, signal=str(v("warningSignal")), level=str(v("warningLevel")), name_zh=str(v("name")),
        name_en=str(v("alternateName")), severity=str(v("severity")), criterion_zh=criterion.get("zh", ""),
        criterion_en=criterion.get("en", ""), area_name=str(v("areaServed")), area=v("location"),
        valid_from=_when(v("validFrom")), valid_to=_when(v("validTo")), issued_at=_when(v("dateIssued")),
        status=str(v("alertStatus")), guidance_zh=guidance.get("zh", ""), guidance_en=guidance.get("en"),
        issued_by=v("issuedBy"))


def get(session: Session, active: jsonld.ActiveContext, entity_id: str) -> WeatherWarning:
    try:
        ent = context.get_entity(session, None, entity_id)
    except ResourceNotFound:
        raise NotFound(f"no weather warning {entity_id}") from None
    if active.expand_term(ALERT_TYPE) not in ent.types:
        raise NotFound(f"no weather warning {entity_id}")
    return _warning(ent.entity_id, ent.attrs, active)


def list_warnings(session: Session, active: jsonld.ActiveContext, *, in_force_only: bool = True,
                  now: datetime | None = None) -> list[WeatherWarning]:
    """Warning signals, newest first; by default only those in force now."""
    now = now or datetime.now(UTC)
    query = context.EntityQuery(types=context.TypeExpr(((active.expand_term(ALERT_TYPE),),)), limit=1000)
    out: list[WeatherWarning] = []
    while True:
        page, _ = context.query_entities(session, None, query)
        out.extend(_warning(e.entity_id, e.attrs, active) for e in page)
        if len(page) < query.limit:
            break
        query.offset += query.limit
    if in_force_only:
        out = [w for w in out if w.in_force(now)]
    return sorted(out, key=lambda w: w.issued_at, reverse=True)
