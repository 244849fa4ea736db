"""The context broker's public interface: NGSI-LD operations on expanded entities, per tenant.

Entities are stored expanded (attribute and type names are IRIs) and normalized; the API layer expands requests
and compacts responses with the caller's @context. Other modules call these functions directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, select
from sqlalchemy.orm import Session

from cityplus.core.db import utcnow
from cityplus.modules.context import geo as geomod
from cityplus.modules.context import query as qmod
from cityplus.modules.context import query_sql
from cityplus.modules.context.errors import (
    AlreadyExists,
    BadRequestData,
    NonexistentTenant,
    ResourceNotFound,
    TooManyResults,
)
from cityplus.modules.context.models import ContextEntity, ContextEntityType, ContextTenant, attr_index, geo_index
from cityplus.modules.context.normalize import MEMBERS, SYSTEM, is_null, without_nulls

SCAN_BATCH = 500


def stamp() -> str:
    """A system timestamp as NGSI-LD writes it (UTC, milliseconds, Z)."""
    return utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- tenants -----------------------------------------------------------------------------------------


def tenant(session: Session, name: str | None, *, create: bool) -> ContextTenant:
    """The tenant of a request; created on first write, NonexistentTenant on a read of an unknown one."""
    name = name or ""
    if len(name) > 128 or (name and not re.fullmatch(r"[A-Za-z0-9_.\-:/]+", name)):
        raise BadRequestData(f"invalid tenant name {name[:64]!r}")
    row = session.scalar(select(ContextTenant).where(ContextTenant.name == name))
    if row is not None:
        return row
    if not create:
        if not name:
            # The default tenant exists implicitly: before its first write it is empty, not an error. Reads never
            # write, so it is an unsaved stand-in whose id matches no row.
            return ContextTenant(id=-1, name="")
        raise NonexistentTenant(f"tenant {name!r} does not exist")
    row = ContextTenant(name=name)
    session.add(row)
    session.flush()
    return row


# --- storage helpers ---------------------------------------------------------------------------------


def instances(attr: Any) -> list[dict[str, Any]]:
    return attr if isinstance(attr, list) else [attr]


def _pack(instances: list[dict[str, Any]]) -> Any:
    return instances[0] if len(instances) == 1 else instances


def _stamp_instance(inst: dict[str, Any], now: str, created: str | None = None) -> dict[str, Any]:
    out = dict(inst)
    out["createdAt"] = created or now
    out["modifiedAt"] = now
    return out


def _document(ent: ContextEntity) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": ent.entity_id, "type": list(ent.types)}
    if ent.scopes:
        doc["scope"] = list(ent.scopes)
    doc.update(ent.attrs)
    return doc


def _reindex(session: Session, ent: ContextEntity) -> None:
    """Rewrite the query, type and geo index rows of one entity from its stored attributes."""
    session.execute(delete(attr_index).where(attr_index.c.entity_pk == ent.pk))
    session.execute(delete(geo_index).where(geo_index.c.entity_pk == ent.pk))
    session.execute(delete(ContextEntityType).where(ContextEntityType.entity_pk == ent.pk))
    session.execute(insert(ContextEntityType), [{"entity_pk": ent.pk, "type": t, "tenant_id": ent.tenant_id}
                                                for t in ent.types])
    rows = query_sql.index_rows(ent.pk, ent.attrs)
    if rows:
        session.execute(insert(attr_index), rows)
    geo_rows = [geomod.index_row(ent.pk, name, inst.get("datasetId"), inst["value"])
                for name, attr in ent.attrs.items() for inst in instances(attr) if inst.get("type") == "GeoProperty"]
    if geo_rows:
        session.execute(insert(geo_index), geo_rows)


def _load(session: Session, t: ContextTenant, entity_id: str) -> ContextEntity:
    ent = session.scalar(select(ContextEntity).where(ContextEntity.tenant_id == t.id,
                                                     ContextEntity.entity_id == entity_id))
    if ent is None:
        raise ResourceNotFound(f"entity {entity_id} not found")
    return ent


def _touch(session: Session, ent: ContextEntity, attrs: dict[str, Any]) -> None:
    ent.attrs = attrs  # a new dict, so the JSON column is marked changed
    ent.modified_at = utcnow()
    session.flush()
    _reindex(session, ent)


# --- entities ------------------------------------------------------------------------------------------


def _fresh_attrs(entity: dict[str, Any], now: str) -> dict[str, Any]:
    """The attributes of a new or replaced entity, stamped; NGSI-LD Null ones (nothing to delete) dropped."""
    out = {}
    for name, value in entity.items():
        if name in ("id", "type", "scope"):
            continue
        kept = without_nulls(value)
        if kept is not None:
            out[name] = _pack([_stamp_instance(i, now) for i in instances(kept)])
    return out


def create_entity(session: Session, tenant_name: str | None, entity: dict[str, Any]) -> ContextEntity:
    """Create an entity (expanded, normalized, with id and types); AlreadyExists when the id is taken."""
    t = tenant(session, tenant_name, create=True)
    taken = session.scalar(select(ContextEntity.pk).where(ContextEntity.tenant_id == t.id,
                                                          ContextEntity.entity_id == entity["id"]))
    if taken is not None:
        raise AlreadyExists(f"entity {entity['id']} already exists")
    now = stamp()
    attrs = _fresh_attrs(entity, now)
    ent = ContextEntity(tenant_id=t.id, entity_id=entity["id"], types=list(entity["type"]),
                        scopes=entity.get("scope"), attrs=attrs)
    session.add(ent)
    session.flush()
    _reindex(session, ent)
    return ent


def get_entity(session: Session, tenant_name: str | None, entity_id: str) -> ContextEntity:
    return _load(session, tenant(session, tenant_name, create=False), entity_id)


def delete_entity(session: Session, tenant_name: str | None, entity_id: str) -> None:
    ent = _load(session, tenant(session, tenant_name, create=False), entity_id)
    session.execute(delete(attr_index).where(attr_index.c.entity_pk == ent.pk))
    session.execute(delete(geo_index).where(geo_index.c.entity_pk == ent.pk))
    session.delete(ent)
    session.flush()


def replace_entity(session: Session, tenant_name: str | None, entity_id: str, entity: dict[str, Any]) -> None:
    """PUT /entities/{id}: the entity's types, scopes and attributes become exactly those given."""
    ent = _load(session, tenant(session, tenant_name, create=False), entity_id)
    now = stamp()
    ent.types = list(entity["type"])
    ent.scopes = entity.get("scope")
    _touch(session, ent, _fresh_attrs(entity, now))


@dataclass
class UpdateResult:
    """NGSI-LD UpdateResult: attributes updated, and those not updated with the reason."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)


def _merge_instance(old: dict[str, Any] | None, new: dict[str, Any], now: str, *, patch: bool) -> dict[str, Any]:
    created = old.get("createdAt") if old else None
    if patch and old is not None:
        merged = {k: v for k, v in old.items() if k not in SYSTEM}
        for k, v in new.items():
            if k not in MEMBERS and is_null(v):
                merged.pop(k, None)
            else:
                merged[k] = v
        return _stamp_instance(merged, now, created)
    return _stamp_instance(new, now, created)


def _set_attr(attrs: dict[str, Any], name: str, new: Any, now: str, *, patch: bool = False,
              only_existing: bool = False, no_overwrite: bool = False) -> str | None:
    """Write one attribute's instances into attrs; returns a reason when nothing was written."""
    current = {i.get("datasetId"): i for i in instances(attrs[name])} if name in attrs else {}
    changed = False
    for inst in instances(new):
        ds = inst.get("datasetId")
        old = current.get(ds)
        if old is None and (only_existing or is_null(inst)):
            continue
        if old is not None and no_overwrite:
            continue
        if is_null(inst):
            del current[ds]  # NGSI-LD Null deletes the instance
        else:
            current[ds] = _merge_instance(old, inst, now, patch=patch)
        changed = True
    if not changed:
        if only_existing or any(is_null(i) for i in instances(new)):
            return "attribute (or datasetId instance) does not exist"
        return "attribute exists and noOverwrite was asked"
    if current:
        attrs[name] = _pack(list(current.values()))
    else:
        attrs.pop(name, None)
    return None


def append_attrs(session: Session, tenant_name: str | None, entity_id: str, fragment: dict[str, Any], *,
                 no_overwrite: bool = False) -> UpdateResult:
    """POST /entities/{id}/attrs: add attributes (replacing same-datasetId instances unless noOverwrite)."""
    ent = _load(session, tenant(session, tenant_name, create=False), entity_id)
    attrs, now, result = dict(ent.attrs), stamp(), UpdateResult()
    if "type" in fragment:
        ent.types = list(dict.fromkeys([*ent.types, *fragment["type"]]))
    if "scope" in fragment:
        ent.scopes = list(dict.fromkeys([*(ent.scopes or []), *fragment["scope"]]))
    for name, value in fragment.items():
        if name in ("id", "type", "scope"):
            continue
        reason = _set_attr(attrs, name, value, now, no_overwrite=no_overwrite)
        (result.not_updated.append((name, reason)) if reason else result.updated.append(name))
    _touch(session, ent, attrs)
    return result


def update_attrs(session: Session, tenant_name: str | None, entity_id: str, fragment: dict[str, Any]) -> UpdateResult:
    """PATCH /entities/{id}/attrs: replace existing attributes only; others are reported not updated."""
    ent = _load(session, tenant(session, tenant_name, create=False), entity_id)
    attrs, now, result = dict(ent.attrs), stamp(), UpdateResult()
    for name, value in fragment.items():
        if name in ("id", "type", "scope"):
            continue
        reason = _set_attr(attrs, name, value, now, only_existing=True)
        (result.not_updated.append((name, reason)) if reason else result.updated.append(name))
    if result.updated:
        _touch(session, ent, attrs)
    return result


def merge_entity(session: Session, tenant_name: str | None, entity_id: str, fragment: dict[str, Any]) -> None:
    """PATCH /entities/{id} (merge-patch): add or merge attributes; urn:ngsi-ld:null deletes one."""
    ent = _load(session, tenant(session, tenant_name, create=False), entity_id)
    attrs, now = dict(ent.attrs), stamp()
    if "type" in fragment:
        ent.types = list(dict.fromkeys([*ent.types, *fragment["type"]]))
    if "scope" in fragment:
        ent.scopes = fragment["scope"]
    for name, value in fragment.items():
        if name in ("id", "type", "scope"):
            continue
        _set_attr(attrs, name, value, now, patch=True)
    _touch(session, ent, attrs)


def update_attr(session: Session, tenant_name: str | None, entity_id: str, name: str, fragment: dict[str, Any], *,
                replace: bool) -> None:
    """PATCH (partial) or PUT (replace) /entities/{id}/attrs/{attr}; the attribute must exist."""
    ent = _load(session, tenant(session, tenant_name, create=False), entity_id)
    if name not in ent.attrs:
        raise ResourceNotFound(f"entity {entity_id} has no attribute {name}")
    attrs, now = dict(ent.attrs), stamp()
    current = {i.get("datasetId"): i for i in instances(attrs[name])}
    ds = fragment.get("datasetId")
    if ds not in current:
        raise ResourceNotFound(f"attribute {name} has no instance with datasetId {ds}")
    old = current[ds]
    if is_null(fragment):
        del current[ds]
        if current:
            attrs[name] = _pack(list(current.values()))
        else:
            del attrs[name]
        _touch(session, ent, attrs)
        return
    if replace:
        current[ds] = _stamp_instance(fragment, now, old.get("createdAt"))
    else:
        fragment = dict(fragment)
        fragment.setdefault("type", old.get("type"))
        current[ds] = _merge_instance(old, fragment, now, patch=True)
    attrs[name] = _pack(list(current.values()))
    _touch(session, ent, attrs)


def delete_attr(session: Session, tenant_name: str | None, entity_id: str, name: str, *,
                dataset_id: str | None = None, delete_all: bool = False) -> None:
    """DELETE /entities/{id}/attrs/{attr}: the default instance, one datasetId, or all instances."""
    ent = _load(session, tenant(session, tenant_name, create=False), entity_id)
    if name not in ent.attrs:
        raise ResourceNotFound(f"entity {entity_id} has no attribute {name}")
    attrs = dict(ent.attrs)
    if delete_all:
        del attrs[name]
    else:
        remaining = [i for i in instances(attrs[name]) if i.get("datasetId") != dataset_id]
        if len(remaining) == len(instances(attrs[name])):
            raise ResourceNotFound(f"attribute {name} has no instance with datasetId {dataset_id}")
        if remaining:
            attrs[name] = _pack(remaining)
        else:
            del attrs[name]
    _touch(session, ent, attrs)


# --- batch operations --------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """Entity ids that succeeded, and errors per entity id."""

    success: list[str] = field(default_factory=list)
    errors: list[tuple[str, Exception]] = field(default_factory=list)


def batch(session: Session, items: Sequence[tuple[str, Callable[[Session], None]]]) -> BatchResult:
    """Run each entity's operation in its own savepoint: one entity's failure never half-writes another."""
    result = BatchResult()
    for entity_id, op in items:
        try:
            with session.begin_nested():
                op(session)
            result.success.append(entity_id)
        except (BadRequestData, AlreadyExists, ResourceNotFound, NonexistentTenant) as exc:
            result.errors.append((entity_id, exc))
    return result


def upsert_entity(session: Session, tenant_name: str | None, entity: dict[str, Any], *, replace: bool) -> bool:
    """Create, or update an existing entity (replace its attributes, or append/overwrite them); True if created."""
    t = tenant(session, tenant_name, create=True)
    exists_pk = session.scalar(select(ContextEntity.pk).where(ContextEntity.tenant_id == t.id,
                                                              ContextEntity.entity_id == entity["id"]))
    if exists_pk is None:
        create_entity(session, tenant_name, entity)
        return True
    if replace:
        replace_entity(session, tenant_name, entity["id"], entity)
    else:
        append_attrs(session, tenant_name, entity["id"], entity)
    return False


# --- queries -----------------------------------------------------------------------------------------


@dataclass
class EntityQuery:
    """What GET /entities and POST /entityOperations/query ask for (names already expanded)."""

    ids: list[str] | None = None
    id_pattern: str | None = None
    types: Any = None  # a TypeExpr
    q: Any = None  # a query.Node
    scope_q: Any = None
    geo: geomod.GeoQuery | None = None
    attrs: list[str] | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass(frozen=True)
class TypeExpr:
    """Type selection: OR of AND-groups of expanded type IRIs (`A,B` / `A|B` OR, `A;B` AND)."""

    groups: tuple[tuple[str, ...], ...]

    def matches(self, types: Sequence[str]) -> bool:
        have = set(types)
        return any(all(t in have for t in g) for g in self.groups)


def parse_types(text: str, expand: Callable[[str], str]) -> TypeExpr:
    """Parse `type` (lists, `|`, `;`, one level of parentheses) into a TypeExpr."""
    if len(text) > 2048:
        raise BadRequestData("type expression too long")
    text = text.replace(",", "|")
    groups: list[tuple[str, ...]] = []
    for alternative in _split_top(text, "|"):
        alternative = alternative.strip()
        if alternative.startswith("(") and alternative.endswith(")"):
            inner = parse_types(alternative[1:-1], expand)
            groups.extend(inner.groups)
            continue
        terms = [p.strip() for p in alternative.split(";")]
        if not all(terms) or any(re.search(r"[()\s\"'=<>!]", p) for p in terms):
            raise BadRequestData(f"invalid type expression {text!r}")
        groups.append(tuple(expand(p) for p in terms))
    return TypeExpr(tuple(groups))


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            raise BadRequestData("unbalanced parentheses in type expression")
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise BadRequestData("unbalanced parentheses in type expression")
    return [*parts, cur]


def _candidates(session: Session, t: ContextTenant, query: EntityQuery) -> Iterator[ContextEntity]:
    stmt = select(ContextEntity).where(ContextEntity.tenant_id == t.id)
    if query.ids:
        stmt = stmt.where(ContextEntity.entity_id.in_(query.ids))
    if query.types is not None:
        stmt = stmt.where(or_(*[_all_types(group) for group in query.types.groups]))
    if query.q is not None:
        cond = query_sql.to_sql(query.q, ContextEntity.pk, attr_index)
        if cond is not None:
            stmt = stmt.where(cond)
    if query.geo is not None:
        cond = geomod.bbox_condition(query.geo, geo_index, session.get_bind().dialect.name)
        if cond is not None:
            # An IN sub-query, evaluated once through the bbox index (a correlated EXISTS ran once per entity).
            stmt = stmt.where(ContextEntity.pk.in_(select(geo_index.c.entity_pk).where(
                geo_index.c.attr == query.geo.geoproperty, cond)))
    last = 0
    while True:
        rows = session.scalars(stmt.where(ContextEntity.pk > last).order_by(ContextEntity.pk).limit(SCAN_BATCH)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].pk


def _all_types(group: tuple[str, ...]) -> Any:
    return and_(*[exists().where(ContextEntityType.entity_pk == ContextEntity.pk, ContextEntityType.type == ty)
                  for ty in group])


def _exact(ent: ContextEntity, query: EntityQuery, id_re: re.Pattern[str] | None) -> bool:
    if id_re is not None and not id_re.search(ent.entity_id):
        return False
    if query.types is not None and not query.types.matches(ent.types):
        return False
    doc = _document(ent)
    if query.q is not None and not qmod.evaluate(query.q, doc):
        return False
    if query.scope_q is not None and not qmod.evaluate_scope(query.scope_q, list(ent.scopes or [])):
        return False
    if query.attrs and not query.q and not any(a in ent.attrs for a in query.attrs):
        return False
    if query.geo is not None:
        found = False
        for inst in instances(ent.attrs.get(query.geo.geoproperty, [])):
            if inst.get("type") == "GeoProperty" and geomod.matches(query.geo, geomod.geometry_from_geojson(
                    inst["value"])):
                found = True
                break
        if not found:
            return False
    return True


def query_entities(session: Session, tenant_name: str | None, query: EntityQuery
                   ) -> tuple[list[ContextEntity], int | None]:
    """Matching entities in storage order (stable paging) and, when asked, the total count."""
    if query.ids is None and query.id_pattern is None and query.types is None and query.q is None \
            and query.attrs is None and query.geo is None and query.scope_q is None:
        raise BadRequestData("name at least one of type, id, idPattern, attrs, q, geometry or scopeQ")
    t = tenant(session, tenant_name, create=False)
    id_re = None
    if query.id_pattern is not None:
        try:
            id_re = re.compile(query.id_pattern)
        except re.error as exc:
            raise BadRequestData(f"invalid idPattern: {exc}") from None
    page: list[ContextEntity] = []
    total = 0
    for ent in _candidates(session, t, query):
        if not _exact(ent, query, id_re):
            continue
        if query.offset <= total < query.offset + query.limit:
            page.append(ent)
        total += 1
        if not query.count and total >= query.offset + query.limit:
            break
    return page, (total if query.count else None)


def check_limit(limit: int, max_limit: int) -> None:
    if limit > max_limit:
        raise TooManyResults(f"limit {limit} exceeds the maximum of {max_limit}")


# --- output --------------------------------------------------------------------------------------------


def entity_document(ent: ContextEntity, *, attrs: Sequence[str] | None = None, sys_attrs: bool = False
                    ) -> dict[str, Any]:
    """The stored entity as an expanded normalized document, optionally narrowed to some attributes."""
    from cityplus.modules.context.normalize import without_system

    doc: dict[str, Any] = {"id": ent.entity_id, "type": ent.types[0] if len(ent.types) == 1 else list(ent.types)}
    if ent.scopes:
        doc["scope"] = ent.scopes[0] if len(ent.scopes) == 1 else list(ent.scopes)
    if sys_attrs:
        doc["createdAt"] = _iso(ent.created_at)
        doc["modifiedAt"] = _iso(ent.modified_at)
    for name, value in ent.attrs.items():
        if attrs is not None and name not in attrs:
            continue
        doc[name] = value if sys_attrs else without_system(value)
    return doc


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- discovery -----------------------------------------------------------------------------------------


def type_summary(session: Session, tenant_name: str | None) -> dict[str, dict[str, Any]]:
    """For each entity type: entity count and attribute names (with the attribute types seen)."""
    t = tenant(session, tenant_name, create=False)
    out: dict[str, dict[str, Any]] = {}
    last = 0
    while True:
        rows = session.execute(select(ContextEntity.pk, ContextEntity.types, ContextEntity.attrs)
                               .where(ContextEntity.tenant_id == t.id, ContextEntity.pk > last)
                               .order_by(ContextEntity.pk).limit(SCAN_BATCH)).all()
        if not rows:
            return out
        for pk, types, attrs in rows:
            for ty in types:
                info = out.setdefault(ty, {"count": 0, "attrs": {}})
                info["count"] += 1
                for name, value in attrs.items():
                    info["attrs"].setdefault(name, set()).update(i.get("type") for i in instances(value))
            last = pk
