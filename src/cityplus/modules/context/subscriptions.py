"""NGSI-LD subscriptions (ETSI GS CIM 009 §5.2.12, §5.8): validation, storage, status, and matching.

A subscription is stored with its names expanded (`spec`) and with the @context its notifications are compacted
with. Every process keeps each tenant's subscriptions compiled in memory, indexed by entity id and by type; the
tenant's `sub_version` says when another process changed them. `capture` runs inside every entity write
(changefeed.publish): it finds the subscriptions a change fires and writes one outbox row per notification in the
same transaction. notifier.py delivers the outbox.
"""

from __future__ import annotations

import re
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cityplus.core.db import utcnow
from cityplus.modules.context import geo as geomod
from cityplus.modules.context import jsonld
from cityplus.modules.context import query as qmod
from cityplus.modules.context.errors import AlreadyExists, BadRequestData, ResourceNotFound
from cityplus.modules.context.models import ContextNotification, ContextSubscription, ContextTenant
from cityplus.modules.context.normalize import NAME_RE, NGSI_NULL, VALUE_MEMBER, check_datetime, is_uri, without_system

if TYPE_CHECKING:
    from cityplus.modules.context.changefeed import Change

TRIGGERS = ("entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated",
            "attributeDeleted")
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")
FORMATS = ("normalized", "keyValues", "concise")
ACCEPTS = ("application/json", "application/ld+json")
SCHEMES = ("http", "https", "mqtt", "mqtts")
READ_ONLY = frozenset({"status", "createdAt", "modifiedAt", "timesSent", "timesFailed", "lastNotification",
                       "lastSuccess", "lastFailure"})
MEMBERS = frozenset({"id", "type", "subscriptionName", "description", "entities", "watchedAttributes",
                     "notificationTrigger", "timeInterval", "q", "geoQ", "scopeQ", "isActive", "notification",
                     "expiresAt", "throttling", "lang", "jsonldContext", "datasetId", "@context"}) | READ_ONLY
NOTIFICATION_MEMBERS = frozenset({"attributes", "format", "endpoint", "showChanges", "sysAttrs"}) | READ_ONLY
ENDPOINT_MEMBERS = frozenset({"uri", "accept", "receiverInfo", "notifierInfo"})
NOT_SUPPORTED = frozenset({"csf", "temporalQ", "localOnly", "join", "joinLevel"})
MAX_SELECTORS = 100
_PREVIOUS = {"value": "previousValue", "object": "previousObject", "languageMap": "previousLanguageMap",
             "vocab": "previousVocab", "json": "previousJson", "valueList": "previousValueList",
             "objectList": "previousObjectList"}


# --- validation ----------------------------------------------------------------------------------------


def _bad(message: str) -> BadRequestData:
    return BadRequestData(f"subscription: {message}")


def _names(value: Any, where: str, expand: Callable[[str], str]) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _bad(f"{where} must be a non-empty array of attribute names")
    out = []
    for n in value:
        if not isinstance(n, str) or not NAME_RE.match(n):
            raise _bad(f"{where}: invalid attribute name {str(n)[:80]!r}")
        out.append(expand(n))
    return list(dict.fromkeys(out))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value <= 0:
        raise _bad(f"{where} must be a positive number of seconds, not {value!r}")
    return float(value)


def _entities(value: Any, expand: Callable[[str], str]) -> list[dict[str, Any]]:
    from cityplus.modules.context.service import parse_types

    if not isinstance(value, list) or not value:
        raise _bad("entities must be a non-empty array of {type, id, idPattern} objects")
    if len(value) > MAX_SELECTORS:
        raise _bad(f"entities: at most {MAX_SELECTORS} selectors")
    out = []
    for i, sel in enumerate(value):
        where = f"entities[{i}]"
        if not isinstance(sel, dict):
            raise _bad(f"{where} must be an object")
        unknown = set(sel) - {"id", "idPattern", "type"}
        if unknown:
            raise _bad(f"{where}: unknown member {sorted(unknown)[0]!r}")
        if not isinstance(sel.get("type"), str) or not sel["type"]:
            raise _bad(f"{where}.type is required (an entity type name)")
        entry: dict[str, Any] = {"type": sel["type"],
                                 "groups": [list(g) for g in parse_types(sel["type"], expand).groups]}
        if "id" in sel:
            if not is_uri(sel["id"]):
                raise _bad(f"{where}.id must be a URI")
            entry["id"] = sel["id"]
        if "idPattern" in sel:
            if not isinstance(sel["idPattern"], str):
                raise _bad(f"{where}.idPattern must be a regular expression string")
            try:
                re.compile(sel["idPattern"])
            except re.error as exc:
                raise _bad(f"{where}.idPattern is not a valid regular expression: {exc}") from None
            entry["idPattern"] = sel["idPattern"]
        out.append(entry)
    return out


def _endpoint(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("notification.endpoint must be an object with a uri")
    unknown = set(value) - ENDPOINT_MEMBERS
    if unknown:
        raise _bad(f"notification.endpoint: unknown member {sorted(unknown)[0]!r}")
    uri = value.get("uri")
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts is None or parts.scheme not in SCHEMES or not parts.hostname or not is_uri(uri):
        raise _bad(f"notification.endpoint.uri must be an absolute http, https, mqtt or mqtts URI, not {uri!r}")
    if parts.scheme.startswith("mqtt") and not parts.path.strip("/"):
        raise _bad("notification.endpoint.uri: an MQTT endpoint names its topic (mqtt://host:port/topic)")
    out: dict[str, Any] = {"uri": uri, "accept": value.get("accept", "application/json")}
    if out["accept"] not in ACCEPTS:
        raise _bad(f"notification.endpoint.accept must be one of {', '.join(ACCEPTS)}")
    for member in ("receiverInfo", "notifierInfo"):
        if member in value:
            info = value[member]
            if not isinstance(info, list) or not all(
                    isinstance(kv, dict) and set(kv) == {"key", "value"} and isinstance(kv["key"], str)
                    and isinstance(kv["value"], str) and kv["key"] for kv in info):
                raise _bad(f"notification.endpoint.{member} must be an array of {{key, value}} string pairs")
            out[member] = [{"key": kv["key"], "value": kv["value"]} for kv in info]
    return out


def _notification(value: Any, expand: Callable[[str], str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("notification must be an object with an endpoint")
    unknown = set(value) - NOTIFICATION_MEMBERS
    if unknown:
        raise _bad(f"notification: unknown or unsupported member {sorted(unknown)[0]!r}")
    out: dict[str, Any] = {"endpoint": _endpoint(value.get("endpoint")),
                           "format": value.get("format", "normalized")}
    if out["format"] not in FORMATS:
        raise _bad(f"notification.format must be one of {', '.join(FORMATS)}, not {out['format']!r}")
    if "attributes" in value:
        out["attributes"] = _names(value["attributes"], "notification.attributes", expand)
    for flag in ("showChanges", "sysAttrs"):
        if flag in value:
            if not isinstance(value[flag], bool):
                raise _bad(f"notification.{flag} must be true or false")
            out[flag] = value[flag]
    if out.get("showChanges") and out["format"] == "keyValues":
        raise _bad("notification.showChanges cannot be combined with format keyValues (no place for previous "
                   "values)")
    return out


class _Recorder:
    """An expand function that remembers each term it expanded (q is stored as text with its terms)."""

    def __init__(self, active: jsonld.ActiveContext) -> None:
        self.active, self.terms = active, {}

    def __call__(self, term: str) -> str:
        iri = self.active.expand_term(term)
        self.terms[term] = iri
        return iri


def parse(body: Any, active: jsonld.ActiveContext, *, partial: bool = False) -> dict[str, Any]:
    """Validate a subscription (or, partial=True, a PATCH fragment) and return its members with names expanded.

    Read-only members (status, timesSent, …) are ignored; anything else unknown is 400 BadRequestData."""
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    for key in body:
        if key in NOT_SUPPORTED:
            raise _bad(f"{key!r} is not supported by this broker")
        if key not in MEMBERS:
            raise _bad(f"unknown member {key!r}")
    expand = active.expand_term
    spec: dict[str, Any] = {}
    if "id" in body:
        if partial:
            raise _bad("id cannot be changed")
        if not is_uri(body["id"]):
            raise _bad("id must be a URI")
        spec["id"] = body["id"]
    if "type" in body and body["type"] != "Subscription":
        raise _bad(f"type must be 'Subscription', not {body['type']!r}")
    if not partial and "type" not in body:
        raise _bad("type 'Subscription' is required")
    for text in ("subscriptionName", "description", "lang"):
        if text in body:
            if not isinstance(body[text], str):
                raise _bad(f"{text} must be a string")
            spec[text] = body[text]
    if "entities" in body:
        spec["entities"] = _entities(body["entities"], expand)
    if "watchedAttributes" in body:
        spec["watchedAttributes"] = _names(body["watchedAttributes"], "watchedAttributes", expand)
    if "notificationTrigger" in body:
        trig = body["notificationTrigger"]
        if not isinstance(trig, list) or not trig or any(t not in TRIGGERS for t in trig):
            raise _bad(f"notificationTrigger must be a non-empty array of {', '.join(TRIGGERS)}")
        spec["notificationTrigger"] = list(dict.fromkeys(trig))
    for num in ("timeInterval", "throttling"):
        if num in body:
            spec[num] = _number(body[num], num)
    if "q" in body:
        if not isinstance(body["q"], str) or not body["q"].strip():
            raise _bad("q must be a non-empty query string")
        text = unquote(body["q"])  # as in a URL: clients percent-encode spaces and quotes
        rec = _Recorder(active)
        try:
            qmod.parse_q(text, rec)
        except qmod.QuerySyntaxError as exc:
            raise _bad(f"invalid q: {exc}") from None
        spec["q"], spec["qTerms"] = text, rec.terms
    if "datasetId" in body:
        ds = body["datasetId"]
        ds = ds if isinstance(ds, list) else [ds]
        if not ds or not all(d == "@none" or is_uri(d) for d in ds):
            raise _bad("datasetId must be a URI, @none, or an array of them")
        spec["datasetId"] = list(dict.fromkeys(ds))
    if "scopeQ" in body:
        try:
            qmod.parse_scope_q(body["scopeQ"]) if isinstance(body["scopeQ"], str) else None
        except qmod.QuerySyntaxError as exc:
            raise _bad(f"invalid scopeQ: {exc}") from None
        if not isinstance(body["scopeQ"], str):
            raise _bad("scopeQ must be a string")
        spec["scopeQ"] = body["scopeQ"]
    if "geoQ" in body:
        g = body["geoQ"]
        if not isinstance(g, dict) or set(g) - {"geometry", "coordinates", "georel", "geoproperty"}:
            raise _bad("geoQ must be an object with geometry, coordinates, georel and optionally geoproperty")
        try:
            parsed = geomod.parse_geo_query(g.get("georel"), g.get("geometry"), g.get("coordinates"),
                                            g.get("geoproperty"), expand)
        except geomod.GeoQueryError as exc:
            raise _bad(f"invalid geoQ: {exc}") from None
        if parsed is None:
            raise _bad("geoQ needs geometry, coordinates and georel")
        spec["geoQ"] = {"georel": g["georel"], "geometry": g["geometry"], "coordinates": g["coordinates"],
                        "geoproperty": parsed.geoproperty}
    if "isActive" in body:
        if not isinstance(body["isActive"], bool):
            raise _bad("isActive must be true or false")
        spec["isActive"] = body["isActive"]
    if "expiresAt" in body:
        spec["expiresAt"] = check_datetime(body["expiresAt"], "subscription: expiresAt")
        if _expires(spec) <= utcnow():  # type: ignore[operator]
            raise _bad("expiresAt must be in the future")
    if "jsonldContext" in body:
        if not is_uri(body["jsonldContext"]):
            raise _bad("jsonldContext must be the URI of a JSON-LD context")
        spec["jsonldContext"] = body["jsonldContext"]
    if "notification" in body:
        spec["notification"] = _notification(body["notification"], expand)
    elif not partial:
        raise _bad("notification (with an endpoint) is required")
    return spec


def check_whole(spec: dict[str, Any]) -> None:
    """The rules between members, checked on the subscription as it will be stored (after a PATCH too)."""
    if not spec.get("entities") and not spec.get("watchedAttributes"):
        raise _bad("name the entities, or watchedAttributes, or both")
    if "timeInterval" in spec and ("watchedAttributes" in spec or "throttling" in spec):
        raise _bad("timeInterval (periodic notification) cannot be combined with watchedAttributes or throttling")


# --- storage -------------------------------------------------------------------------------------------


def _bump(session: Session, tenant_id: int) -> None:
    session.execute(update(ContextTenant).where(ContextTenant.id == tenant_id)
                    .values(sub_version=ContextTenant.sub_version + 1))


def _expires(spec: dict[str, Any]) -> datetime | None:
    raw = spec.get("expiresAt")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC) if raw else None


def create(session: Session, tenant_id: int, spec: dict[str, Any], context: Any) -> ContextSubscription:
    check_whole(spec)
    sub_id = spec.pop("id", None) or f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
    exists = session.scalar(select(ContextSubscription.pk).where(ContextSubscription.tenant_id == tenant_id,
                                                                  ContextSubscription.sub_id == sub_id))
    if exists is not None:
        raise AlreadyExists(f"subscription {sub_id} already exists")
    now = utcnow()
    row = ContextSubscription(tenant_id=tenant_id, sub_id=sub_id, spec=spec, context=context,
                              is_active=spec.get("isActive", True), expires_at=_expires(spec), times_sent=0,
                              times_failed=0, failing=False, created_at=now, modified_at=now)
    session.add(row)
    session.flush()
    _bump(session, tenant_id)
    return row


def get(session: Session, tenant_id: int, sub_id: str) -> ContextSubscription:
    row = None if tenant_id < 0 else session.scalar(
        select(ContextSubscription).where(ContextSubscription.tenant_id == tenant_id,
                                          ContextSubscription.sub_id == sub_id))
    if row is None:
        raise ResourceNotFound(f"subscription {sub_id} not found")
    return row


def list_(session: Session, tenant_id: int, limit: int, offset: int) -> tuple[list[ContextSubscription], int]:
    if tenant_id < 0:
        return [], 0
    where = ContextSubscription.tenant_id == tenant_id
    total = session.scalar(select(func.count()).select_from(ContextSubscription).where(where)) or 0
    rows = list(session.scalars(select(ContextSubscription).where(where).order_by(ContextSubscription.pk)
                                .offset(offset).limit(limit))) if limit else []
    return rows, total


def patch(session: Session, tenant_id: int, sub_id: str, fragment: dict[str, Any], context: Any
          ) -> ContextSubscription:
    """Merge a validated fragment into the subscription (notification members merge one level deep)."""
    row = get(session, tenant_id, sub_id)
    spec = dict(row.spec)
    for key, value in fragment.items():
        if key == "notification":
            merged = {**spec.get("notification", {}), **value}
            spec["notification"] = merged
        else:
            spec[key] = value
    check_whole(spec)
    row.spec = spec
    if context is not None:
        row.context = context
    row.is_active = spec.get("isActive", True)
    row.expires_at = _expires(spec)
    row.modified_at = utcnow()
    if "isActive" in fragment and fragment["isActive"]:
        row.failing = False
    _bump(session, tenant_id)
    return row


def delete(session: Session, tenant_id: int, sub_id: str) -> None:
    row = get(session, tenant_id, sub_id)
    session.delete(row)
    session.flush()
    _bump(session, tenant_id)


def status(row: ContextSubscription, now: datetime | None = None) -> str:
    now = now or utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    if not row.is_active:
        return "paused"
    return "failed" if row.failing else "active"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def document(row: ContextSubscription, active: jsonld.ActiveContext, *, sys_attrs: bool = False
             ) -> dict[str, Any]:
    """The subscription as GET returns it, names compacted with the caller's @context."""
    spec = row.spec
    compact = active.compact_iri
    doc: dict[str, Any] = {"id": row.sub_id, "type": "Subscription"}
    for key in ("subscriptionName", "description"):
        if key in spec:
            doc[key] = spec[key]
    if "entities" in spec:
        doc["entities"] = []
        for sel in spec["entities"]:
            out = {k: sel[k] for k in ("id", "idPattern") if k in sel}
            out["type"] = "|".join(";".join(compact(t) for t in g) for g in sel["groups"])
            doc["entities"].append(out)
    if "watchedAttributes" in spec:
        doc["watchedAttributes"] = [compact(n) for n in spec["watchedAttributes"]]
    doc["notificationTrigger"] = spec.get("notificationTrigger", list(DEFAULT_TRIGGERS))
    for key in ("timeInterval", "q", "scopeQ", "throttling", "lang", "jsonldContext", "expiresAt", "datasetId"):
        if key in spec:
            value = spec[key]
            doc[key] = int(value) if key in ("timeInterval", "throttling") and float(value).is_integer() else value
    if "geoQ" in spec:
        doc["geoQ"] = {**spec["geoQ"], "geoproperty": compact(spec["geoQ"]["geoproperty"])}
    if "isActive" in spec:
        doc["isActive"] = row.is_active
    n = dict(spec["notification"])
    if "attributes" in n:
        n["attributes"] = [compact(a) for a in n["attributes"]]
    if row.last_notification is not None:  # delivery status, once there has been a delivery
        n["status"] = "failed" if row.failing else "ok"
    if row.times_sent:
        n["timesSent"] = row.times_sent
    if row.times_failed:
        n["timesFailed"] = row.times_failed
    for key, value in (("lastNotification", row.last_notification), ("lastSuccess", row.last_success),
                       ("lastFailure", row.last_failure)):
        if value is not None:
            n[key] = _iso(value)
    doc["notification"] = n
    doc["status"] = status(row)
    if sys_attrs:
        doc["createdAt"], doc["modifiedAt"] = _iso(row.created_at), _iso(row.modified_at)
    return doc


# --- matching ------------------------------------------------------------------------------------------


@dataclass
class Compiled:
    """A subscription ready to test changes against."""

    pk: int
    selectors: list[tuple[str | None, re.Pattern[str] | None, tuple[tuple[str, ...], ...]]]
    watched: frozenset[str] | None
    triggers: frozenset[str]
    q: Any
    scope_q: Any
    geo: geomod.GeoQuery | None
    active: bool
    expires_at: datetime | None
    periodic: bool
    attributes: list[str] | None
    show_changes: bool
    sys_attrs: bool
    datasets: frozenset[str] | None = None  # datasetId member: only these instances are notified

    def fires(self, change: Change, now: datetime) -> str | None:
        """The trigger by which `change` notifies this subscription, or None."""
        if not self.active or self.periodic or (self.expires_at is not None and self.expires_at <= now):
            return None
        if self.selectors and not any(_selected(sel, change.entity_id, change.types) for sel in self.selectors):
            return None
        events = change.attribute_events()
        if self.watched is not None:
            events = {n: e for n, e in events.items() if n in self.watched}
            if not events:
                return None
        trigger = next((t for t in (change.entity_event, *events.values()) if t in self.triggers), None)
        if trigger is None:
            return None
        attrs = change.new if change.new is not None else change.old or {}
        if self.q is not None or self.geo is not None or self.scope_q is not None:
            doc = {"id": change.entity_id, "type": change.types, **attrs}
            if self.q is not None and not qmod.evaluate(self.q, doc):
                return None
            if self.scope_q is not None and not qmod.evaluate_scope(self.scope_q, list(change.scopes or [])):
                return None
            if self.geo is not None and not _geo_holds(self.geo, attrs):
                return None
        return trigger


def _selected(sel: tuple[str | None, re.Pattern[str] | None, tuple[tuple[str, ...], ...]], entity_id: str,
              types: list[str]) -> bool:
    sid, pattern, groups = sel
    if sid is not None and sid != entity_id:
        return False
    if pattern is not None and not pattern.search(entity_id):
        return False
    have = set(types)
    return any(all(t in have for t in g) for g in groups)


def _geo_holds(q: geomod.GeoQuery, attrs: dict[str, Any]) -> bool:
    value = attrs.get(q.geoproperty)
    for inst in value if isinstance(value, list) else [value] if value is not None else []:
        if isinstance(inst, dict) and inst.get("type") == "GeoProperty":
            try:
                if geomod.matches(q, geomod.geometry_from_geojson(inst.get("value"))):
                    return True
            except geomod.GeoQueryError:
                continue
    return False


def compile_spec(pk: int, spec: dict[str, Any], is_active: bool, expires_at: datetime | None) -> Compiled:
    terms = spec.get("qTerms", {})
    selectors = [(sel.get("id"), re.compile(sel["idPattern"]) if "idPattern" in sel else None,
                  tuple(tuple(g) for g in sel["groups"])) for sel in spec.get("entities", [])]
    geo = None
    if "geoQ" in spec:
        g = spec["geoQ"]
        geo = geomod.parse_geo_query(g["georel"], g["geometry"], g["coordinates"], g["geoproperty"],
                                     lambda t: t)
    n = spec["notification"]
    return Compiled(
        pk=pk, selectors=selectors,
        watched=frozenset(spec["watchedAttributes"]) if "watchedAttributes" in spec else None,
        triggers=frozenset(spec.get("notificationTrigger", DEFAULT_TRIGGERS)),
        q=qmod.parse_q(spec["q"], lambda t: terms.get(t, t)) if "q" in spec else None,
        scope_q=qmod.parse_scope_q(spec["scopeQ"]) if "scopeQ" in spec else None,
        geo=geo, active=is_active, expires_at=expires_at, periodic="timeInterval" in spec,
        attributes=n.get("attributes"), show_changes=bool(n.get("showChanges")), sys_attrs=bool(n.get("sysAttrs")),
        datasets=frozenset(spec["datasetId"]) if "datasetId" in spec else None)


@dataclass
class TenantIndex:
    """A tenant's change-triggered subscriptions, by entity id, by type, and the rest (watchedAttributes only)."""

    version: int
    by_id: dict[str, list[Compiled]] = field(default_factory=dict)
    by_type: dict[str, list[Compiled]] = field(default_factory=dict)
    rest: list[Compiled] = field(default_factory=list)

    def add(self, sub: Compiled) -> None:
        if not sub.selectors:
            self.rest.append(sub)
            return
        keys: set[tuple[str, str]] = set()
        for sid, _, groups in sub.selectors:
            if sid is not None:
                keys.add(("id", sid))
            else:
                keys.update(("type", g[0]) for g in groups)
        for kind, key in keys:
            (self.by_id if kind == "id" else self.by_type).setdefault(key, []).append(sub)

    def candidates(self, change: Change) -> Iterable[Compiled]:
        seen: set[int] = set()
        for bucket in (self.by_id.get(change.entity_id, ()), *(self.by_type.get(t, ()) for t in change.types),
                       self.rest):
            for sub in bucket:
                if sub.pk not in seen:
                    seen.add(sub.pk)
                    yield sub

    @property
    def empty(self) -> bool:
        return not (self.by_id or self.by_type or self.rest)


_INDEXES: weakref.WeakKeyDictionary[Engine, dict[int, TenantIndex]] = weakref.WeakKeyDictionary()


def _index(session: Session, tenant_id: int) -> TenantIndex:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    cache = _INDEXES.setdefault(engine, {})
    version = session.scalar(select(ContextTenant.sub_version).where(ContextTenant.id == tenant_id)) or 0
    idx = cache.get(tenant_id)
    if idx is not None and idx.version == version:
        return idx
    idx = TenantIndex(version)
    rows = session.execute(select(ContextSubscription.pk, ContextSubscription.spec, ContextSubscription.is_active,
                                  ContextSubscription.expires_at)
                           .where(ContextSubscription.tenant_id == tenant_id))
    for pk, spec, is_active, expires_at in rows:
        if is_active and "timeInterval" not in spec:
            idx.add(compile_spec(pk, spec, is_active, expires_at))
    if version == session.scalar(select(ContextTenant.sub_version).where(ContextTenant.id == tenant_id)):
        cache[tenant_id] = idx
    return idx


def _null_of(inst: Any, deleted_at: str | None = None) -> dict[str, Any]:
    """The NGSI-LD Null form of a deleted attribute instance (its datasetId kept; deletedAt with sysAttrs)."""
    kind = inst.get("type", "Property") if isinstance(inst, dict) else "Property"
    member = VALUE_MEMBER.get(kind, "value")
    out: dict[str, Any] = {"type": kind, member: {"@none": NGSI_NULL} if kind == "LanguageProperty" else NGSI_NULL}
    if isinstance(inst, dict) and inst.get("datasetId") is not None:
        out["datasetId"] = inst["datasetId"]
    if deleted_at is not None:
        out["deletedAt"] = deleted_at
    return out


def _previous(inst: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    if before is not None:
        inst = dict(inst)
        for member, prev in _PREVIOUS.items():
            if member in before:
                inst[prev] = before[member]
    return inst


def _instances(attr: Any) -> list[dict[str, Any]]:
    return [i for i in (attr if isinstance(attr, list) else [attr]) if isinstance(i, dict)]


def _pack(items: list[dict[str, Any]]) -> Any:
    return items[0] if len(items) == 1 else items


def notification_entity(sub: Compiled, change: Change, trigger: str, now: str) -> dict[str, Any]:
    """The (expanded) entity a notification carries for this change, as the subscription asked for it.

    Deleted attributes, and deleted instances of an attribute that remains, appear as NGSI-LD Null; a deleted
    entity carries `deletedAt` and its attributes as Null; `showChanges` adds previousValue (etc.)."""
    doc: dict[str, Any] = {"id": change.entity_id, "type": change.types}
    if change.scopes:
        doc["scope"] = change.scopes
    if sub.sys_attrs and change.created_at is not None:
        doc["createdAt"] = _iso(change.created_at)
        if change.modified_at is not None:
            doc["modifiedAt"] = _iso(change.modified_at)
    wanted = set(sub.attributes) if sub.attributes else None
    old = change.old or {}
    new = change.new or {}
    deleted_at = now if sub.sys_attrs else None
    if change.kind == "deleted":
        doc["deletedAt"] = now
    if change.kind == "deleted" and trigger.startswith("attribute") and sub.watched is not None:
        wanted = (wanted or set(sub.watched)) & set(sub.watched)  # the watched attributes that went with it
    for name in sorted(set(new) | (change.changed & set(old))):
        if wanted is not None and name not in wanted:
            continue
        before = {i.get("datasetId"): i for i in _instances(old.get(name))}
        items = []
        for inst in _instances(new.get(name)):
            inst = inst if sub.sys_attrs else without_system(inst)
            if sub.show_changes and name in change.changed:
                inst = _previous(inst, before.get(inst.get("datasetId")))
            items.append(inst)
        if name in change.changed:  # instances this change deleted
            remaining = {i.get("datasetId") for i in _instances(new.get(name))}
            for ds, gone in before.items():
                if ds not in remaining:
                    null = _null_of(gone, deleted_at)
                    items.append(_previous(null, gone) if sub.show_changes else null)
        if sub.datasets is not None:
            items = [i for i in items if (i.get("datasetId") or "@none") in sub.datasets]
        if items:
            doc[name] = _pack(items)
    return doc


_WAKE_KEY = "cityplus.context.wake_notifiers"
_WAKERS: set[Callable[[], None]] = set()  # notifiers of this process, woken when a transaction adds to the outbox


def _wake(_session: Session) -> None:
    for wake in list(_WAKERS):
        wake()


def capture(session: Session, tenant_id: int, changes: list[Change]) -> None:
    """Write an outbox row for every notification these changes fire (inside the writing transaction)."""
    if tenant_id < 0:
        return
    idx = _index(session, tenant_id)
    if idx.empty:
        return
    now = utcnow()
    stamp = _iso(now) or ""
    rows = []
    for change in changes:
        for sub in idx.candidates(change):
            trigger = sub.fires(change, now)
            if trigger is not None:
                rows.append({"sub_pk": sub.pk, "trigger": trigger,
                             "data": [notification_entity(sub, change, trigger, stamp)], "created_at": now,
                             "due_at": now, "attempts": 0, "state": "pending"})
    if rows:
        session.execute(insert(ContextNotification), rows)
        if not session.info.get(_WAKE_KEY):
            session.info[_WAKE_KEY] = True
            event.listen(session, "after_commit", _wake)
