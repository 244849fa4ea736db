"""The context broker's public interface: NGSI-LD operations on expanded entities, per tenant.

Entities are stored expanded (attribute and type names are IRIs) and normalized; the API layer expands requests
and compacts responses with the caller's @context. Other modules call these functions directly.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cityplus.core.db import utcnow
from cityplus.modules.context import geo as geomod
from cityplus.modules.context import jsonld, query_sql, store
from cityplus.modules.context import query as qmod
from cityplus.modules.context.errors import (
    AlreadyExists,
    BadRequestData,
    NonexistentTenant,
    ResourceNotFound,
    TooManyResults,
)
from cityplus.modules.context.models import ContextEntity, ContextEntityType, ContextTenant, attr_index, geo_index
from cityplus.modules.context.normalize import MEMBERS, SYSTEM, is_null, normalize_entity, without_nulls

SCAN_BATCH = 2000  # most rows read at once when a query is checked in Python
log = structlog.get_logger("cityplus.context")


def stamp() -> str:
    """A system timestamp as NGSI-LD writes it (UTC, milliseconds, Z)."""
    return utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- tenants -----------------------------------------------------------------------------------------


# Committed tenants per database: a tenant is never renamed or deleted, so name → id can be remembered once a
# lookup has found a row that this session did not create (a row created in an open transaction may roll back).
_TENANTS: weakref.WeakKeyDictionary[Engine, dict[str, int]] = weakref.WeakKeyDictionary()
_CREATED = "cityplus.context.created_tenants"


def tenant(session: Session, name: str | None, *, create: bool) -> ContextTenant:
    """The tenant of a request; created on first write, NonexistentTenant on a read of an unknown one.

    The result is a plain ContextTenant carrying id and name; callers read it and never add it to a session.
    """
    name = name or ""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    known = _TENANTS.setdefault(engine, {})
    if name in known:
        return ContextTenant(id=known[name], name=name)
    if len(name) > 128 or (name and not re.fullmatch(r"[A-Za-z0-9_.\-:/]+", name)):
        raise BadRequestData(f"invalid tenant name {name[:64]!r}")
    tid = session.scalar(select(ContextTenant.id).where(ContextTenant.name == name))
    if tid is not None:
        if name not in session.info.get(_CREATED, ()):
            known[name] = tid
        return ContextTenant(id=tid, name=name)
    if not create:
        if not name:
            # The default tenant exists implicitly: before its first write it is empty, not an error. Reads never
            # write, so it is an unsaved stand-in whose id matches no row.
            return ContextTenant(id=-1, name="")
        raise NonexistentTenant(f"tenant {name!r} does not exist")
    row = ContextTenant(name=name)
    session.add(row)
    session.flush()
    session.info.setdefault(_CREATED, set()).add(name)
    return ContextTenant(id=row.id, name=name)


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


def _row(session: Session, t: ContextTenant, entity_id: str) -> store.Row:
    row = store.load(session, t.id, [entity_id]).get(entity_id)
    if row is None:
        raise ResourceNotFound(f"entity {entity_id} not found")
    return row


def _load(session: Session, t: ContextTenant, entity_id: str) -> ContextEntity:
    ent = None if t.id < 0 else session.scalar(
        select(ContextEntity).where(ContextEntity.tenant_id == t.id, ContextEntity.entity_id == entity_id))
    if ent is None:
        raise ResourceNotFound(f"entity {entity_id} not found")
    return ent


# --- compact entities (what other modules hold) -----------------------------------------------------------


def core_context(ctx: Any) -> jsonld.ActiveContext:
    """The NGSI-LD core @context as resolved once per application (built in, no network)."""
    from cityplus.modules.context.runtime import runtime

    return runtime(ctx).resolver.core()


def expand_compact(entity: Any, active: jsonld.ActiveContext, *, require_id: bool = True,
                   require_type: bool = True) -> dict[str, Any]:
    """Validate a compact normalized entity (or fragment) and expand its terms with `active`: the form every
    function of this module takes. Types come back as a list. BadRequestData names what is wrong."""
    normalized = normalize_entity(entity, require_id=require_id, require_type=require_type)
    expanded = jsonld.expand_entity(normalized, active)
    if "type" in normalized:
        types = expanded["type"]
        expanded["type"] = types if isinstance(types, list) else [types]
    return expanded


# --- operations on rows (in memory; store.save writes them) ----------------------------------------------


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


def _new(entity: dict[str, Any], now: str) -> store.Row:
    return store.new_row(entity["id"], entity["type"], entity.get("scope"), _fresh_attrs(entity, now))


def _replace(row: store.Row, entity: dict[str, Any], now: str) -> None:
    """The row's types, scopes and attributes become exactly those of `entity`."""
    row.set_types(entity["type"])
    row.set_scopes(entity.get("scope"))
    row.attrs = _fresh_attrs(entity, now)
    row.reindex, row.dirty = None, True


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


def _set_attr(row: store.Row, name: str, new: Any, now: str, *, patch: bool = False,
              only_existing: bool = False, no_overwrite: bool = False) -> str | None:
    """Write one attribute's instances into the row; returns a reason when nothing was written."""
    attrs = row.attrs
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
    row.changed(name)
    return None


def _append(row: store.Row, fragment: dict[str, Any], now: str, *, no_overwrite: bool) -> UpdateResult:
    """Add attributes (replacing same-datasetId instances unless noOverwrite); types are added, scopes replaced
    (added to with noOverwrite), as for an attribute (§4.18)."""
    result = UpdateResult()
    if "type" in fragment:
        row.set_types(list(dict.fromkeys([*row.types, *fragment["type"]])))
    if "scope" in fragment:
        row.set_scopes(list(dict.fromkeys([*(row.scopes or []), *fragment["scope"]])) if no_overwrite
                       else list(fragment["scope"]))
    for name, value in fragment.items():
        if name in ("id", "type", "scope"):
            continue
        reason = _set_attr(row, name, value, now, no_overwrite=no_overwrite)
        (result.not_updated.append((name, reason)) if reason else result.updated.append(name))
    row.dirty = True  # the entity's modifiedAt moves even when nothing else changed
    return result


def _update(row: store.Row, fragment: dict[str, Any], now: str) -> UpdateResult:
    """Replace existing attributes only; others are reported not updated. Types are added; scope is replaced when
    the entity has one (§4.18), and reported not updated otherwise."""
    result = UpdateResult()
    if "type" in fragment:
        row.set_types(list(dict.fromkeys([*row.types, *fragment["type"]])))
    if "scope" in fragment:
        if row.scopes:
            row.set_scopes(list(fragment["scope"]))
            result.updated.append("scope")
        else:
            result.not_updated.append(("scope", "the entity has no scope to update"))
    for name, value in fragment.items():
        if name in ("id", "type", "scope"):
            continue
        reason = _set_attr(row, name, value, now, only_existing=True)
        (result.not_updated.append((name, reason)) if reason else result.updated.append(name))
    return result


def _merge(row: store.Row, fragment: dict[str, Any], now: str) -> None:
    """Merge-patch: add or merge attributes; urn:ngsi-ld:null deletes one."""
    if "type" in fragment:
        row.set_types(list(dict.fromkeys([*row.types, *fragment["type"]])))
    if "scope" in fragment:
        row.set_scopes(fragment["scope"])
    for name, value in fragment.items():
        if name in ("id", "type", "scope"):
            continue
        _set_attr(row, name, value, now, patch=True)
    row.dirty = True


# --- entities ------------------------------------------------------------------------------------------


def create_entity(session: Session, tenant_name: str | None, entity: dict[str, Any]) -> ContextEntity:
    """Create an entity (expanded, normalized, with id and types); AlreadyExists when the id is taken."""
    t = tenant(session, tenant_name, create=True)
    if store.exists(session, t.id, entity["id"]):
        raise AlreadyExists(f"entity {entity['id']} already exists")
    row = _new(entity, stamp())
    store.save(session, t.id, [row])
    return store.entity(session, row)


def get_entity(session: Session, tenant_name: str | None, entity_id: str) -> ContextEntity:
    return _load(session, tenant(session, tenant_name, create=False), entity_id)


def delete_entity(session: Session, tenant_name: str | None, entity_id: str) -> None:
    t = tenant(session, tenant_name, create=False)
    store.remove(session, t.id, [_row(session, t, entity_id)])


def replace_entity(session: Session, tenant_name: str | None, entity_id: str, entity: dict[str, Any]) -> None:
    """PUT /entities/{id}: the entity's types, scopes and attributes become exactly those given."""
    t = tenant(session, tenant_name, create=False)
    row = _row(session, t, entity_id)
    _replace(row, entity, stamp())
    store.save(session, t.id, [row])


def append_attrs(session: Session, tenant_name: str | None, entity_id: str, fragment: dict[str, Any], *,
                 no_overwrite: bool = False) -> UpdateResult:
    """POST /entities/{id}/attrs: add attributes (replacing same-datasetId instances unless noOverwrite)."""
    t = tenant(session, tenant_name, create=False)
    row = _row(session, t, entity_id)
    result = _append(row, fragment, stamp(), no_overwrite=no_overwrite)
    store.save(session, t.id, [row])
    return result


def update_attrs(session: Session, tenant_name: str | None, entity_id: str, fragment: dict[str, Any]) -> UpdateResult:
    """PATCH /entities/{id}/attrs: replace existing attributes only; others are reported not updated."""
    t = tenant(session, tenant_name, create=False)
    row = _row(session, t, entity_id)
    result = _update(row, fragment, stamp())
    if result.updated or row.dirty:
        store.save(session, t.id, [row])
    return result


def merge_entity(session: Session, tenant_name: str | None, entity_id: str, fragment: dict[str, Any]) -> None:
    """PATCH /entities/{id} (merge-patch): add or merge attributes; urn:ngsi-ld:null deletes one."""
    t = tenant(session, tenant_name, create=False)
    row = _row(session, t, entity_id)
    _merge(row, fragment, stamp())
    store.save(session, t.id, [row])


def update_attr(session: Session, tenant_name: str | None, entity_id: str, name: str, fragment: dict[str, Any], *,
                replace: bool) -> None:
    """PATCH (partial) or PUT (replace) /entities/{id}/attrs/{attr}; the attribute must exist."""
    t = tenant(session, tenant_name, create=False)
    row = _row(session, t, entity_id)
    if name not in row.attrs:
        raise ResourceNotFound(f"entity {entity_id} has no attribute {name}")
    now = stamp()
    current = {i.get("datasetId"): i for i in instances(row.attrs[name])}
    ds = fragment.get("datasetId")
    if ds not in current:
        raise ResourceNotFound(f"attribute {name} has no instance with datasetId {ds}")
    old = current[ds]
    if is_null(fragment):
        del current[ds]
    elif replace:
        current[ds] = _stamp_instance(fragment, now, old.get("createdAt"))
    else:
        fragment = dict(fragment)
        fragment.setdefault("type", old.get("type"))
        current[ds] = _merge_instance(old, fragment, now, patch=True)
    if current:
        row.attrs[name] = _pack(list(current.values()))
    else:
        del row.attrs[name]
    row.changed(name)
    store.save(session, t.id, [row])


def delete_attr(session: Session, tenant_name: str | None, entity_id: str, name: str, *,
                dataset_id: str | None = None, delete_all: bool = False) -> None:
    """DELETE /entities/{id}/attrs/{attr}: the default instance, one datasetId, or all instances."""
    t = tenant(session, tenant_name, create=False)
    row = _row(session, t, entity_id)
    if name not in row.attrs:
        raise ResourceNotFound(f"entity {entity_id} has no attribute {name}")
    if delete_all:
        del row.attrs[name]
    else:
        remaining = [i for i in instances(row.attrs[name]) if i.get("datasetId") != dataset_id]
        if len(remaining) == len(instances(row.attrs[name])):
            raise ResourceNotFound(f"attribute {name} has no instance with datasetId {dataset_id}")
        if remaining:
            row.attrs[name] = _pack(remaining)
        else:
            del row.attrs[name]
    row.changed(name)
    store.save(session, t.id, [row])


def delete_scope(session: Session, tenant_name: str | None, entity_id: str) -> None:
    """DELETE /entities/{id}/attrs/scope: the entity no longer has a scope (ResourceNotFound if it had none)."""
    t = tenant(session, tenant_name, create=False)
    row = _row(session, t, entity_id)
    if not row.scopes:
        raise ResourceNotFound(f"entity {entity_id} has no scope")
    row.set_scopes(None)
    store.save(session, t.id, [row])


# --- batch operations --------------------------------------------------------------------------------

ENTITY_ERRORS = (BadRequestData, AlreadyExists, ResourceNotFound, NonexistentTenant)
BATCH_OPS = ("create", "upsert", "upsert_update", "update", "update_no_overwrite", "merge", "delete")


@dataclass
class BatchResult:
    """Entity ids that succeeded, errors per entity id, and (upsert) the ids that were created."""

    success: list[str] = field(default_factory=list)
    errors: list[tuple[str, Exception]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


def batch(session: Session, items: Sequence[tuple[str, Callable[[Session], None]]]) -> BatchResult:
    """Run each entity's operation in its own savepoint: one entity's failure never half-writes another."""
    result = BatchResult()
    for entity_id, op in items:
        try:
            with session.begin_nested():
                op(session)
            result.success.append(entity_id)
        except ENTITY_ERRORS as exc:
            result.errors.append((entity_id, exc))
    return result


def upsert_entity(session: Session, tenant_name: str | None, entity: dict[str, Any], *, replace: bool) -> bool:
    """Create, or update an existing entity (replace its attributes, or append/overwrite them); True if created."""
    t = tenant(session, tenant_name, create=True)
    res = _batch_set_based(session, t, "upsert" if replace else "upsert_update", [entity])
    if res.errors:
        raise res.errors[0][1]
    return bool(res.created)


def batch_write(session: Session, tenant_name: str | None, op: str, entities: Sequence[dict[str, Any]]
                ) -> BatchResult:
    """A batch operation (/entityOperations/*) on expanded entities (ids for `delete`), set-based.

    `op` is one of BATCH_OPS: create, upsert (replace), upsert_update, update, update_no_overwrite, merge, delete.
    Entities are applied in order in memory (the same id twice acts twice, as one after the other would) and
    written with a few statements; an entity that fails (e.g. AlreadyExists) fails alone. Should the set-based
    write itself fail (a concurrent writer created one of the ids, say), it is rolled back and the batch runs
    again one entity per savepoint, so every entity still succeeds or fails alone.
    """
    if op not in BATCH_OPS:
        raise ValueError(f"unknown batch operation {op!r}")
    try:
        t = tenant(session, tenant_name, create=op in ("create", "upsert", "upsert_update"))
    except NonexistentTenant as exc:
        return BatchResult(errors=[(_id_of(e), exc) for e in entities])
    try:
        with session.begin_nested():
            return _batch_set_based(session, t, op, entities)
    except SQLAlchemyError as exc:
        log.warning("context.batch_fallback", op=op, entities=len(entities), error=str(exc)[:300])
    return _batch_one_by_one(session, tenant_name, op, entities)


def _id_of(entity: Any) -> str:
    return entity if isinstance(entity, str) else str(entity["id"])


def _batch_set_based(session: Session, t: ContextTenant, op: str, entities: Sequence[dict[str, Any]]
                     ) -> BatchResult:
    res = BatchResult()
    stored = store.load(session, t.id, [_id_of(e) for e in entities])
    state: dict[str, store.Row | None] = dict(stored)
    removed: list[store.Row] = []
    now = stamp()
    for e in entities:
        eid = _id_of(e)
        current = state.get(eid)
        kept: list[tuple[str, str]] = []
        try:
            if op == "delete":
                if current is None:
                    raise ResourceNotFound(f"entity {eid} not found")
                if current.pk is not None:
                    removed.append(current)
                state[eid] = None
                res.success.append(eid)
                continue
            row = current.copy() if current is not None else None
            if op == "create":
                if row is not None:
                    raise AlreadyExists(f"entity {eid} already exists")
                row = _new(e, now)
            elif op in ("upsert", "upsert_update"):
                if row is None:
                    row = _new(e, now)
                    res.created.append(eid)
                elif op == "upsert":
                    _replace(row, e, now)
                else:
                    _append(row, e, now, no_overwrite=False)
            else:
                if row is None:
                    raise ResourceNotFound(f"entity {eid} not found")
                if op == "merge":
                    _merge(row, e, now)
                else:
                    kept = _append(row, e, now, no_overwrite=op == "update_no_overwrite").not_updated
        except ENTITY_ERRORS as exc:
            res.errors.append((eid, exc))
            continue
        state[eid] = row
        if op == "update_no_overwrite" and kept:
            res.errors.append((eid, _not_overwritten(kept)))  # written, but not as asked: reported (207)
        else:
            res.success.append(eid)
    if removed:
        store.remove(session, t.id, removed)
    # Rows deleted and created again in one batch are new rows; a created-then-deleted one was never written.
    store.save(session, t.id, [r for r in state.values() if r is not None and (r.dirty or r.pk is None)])
    return res


def _batch_one_by_one(session: Session, tenant_name: str | None, op: str, entities: Sequence[dict[str, Any]]
                      ) -> BatchResult:
    created: list[str] = []

    def run(s: Session, e: Any) -> None:
        if op == "create":
            create_entity(s, tenant_name, e)
        elif op in ("upsert", "upsert_update"):
            if upsert_entity(s, tenant_name, e, replace=op == "upsert"):
                created.append(e["id"])
        elif op == "merge":
            merge_entity(s, tenant_name, e["id"], e)
        elif op == "delete":
            delete_entity(s, tenant_name, e)
        else:
            kept = append_attrs(s, tenant_name, e["id"], e, no_overwrite=op == "update_no_overwrite").not_updated
            if op == "update_no_overwrite" and kept:
                not_overwritten[e["id"]] = kept

    not_overwritten: dict[str, list[tuple[str, str]]] = {}
    res = batch(session, [(_id_of(e), (lambda s, e=e: run(s, e))) for e in entities])
    res.created = created
    if not_overwritten:
        res.errors += [(eid, _not_overwritten(not_overwritten[eid])) for eid in res.success if eid in not_overwritten]
        res.success = [eid for eid in res.success if eid not in not_overwritten]
    return res


def _not_overwritten(kept: list[tuple[str, str]]) -> BadRequestData:
    """The per-entity error of a batch update with noOverwrite that kept existing attributes."""
    return BadRequestData("attributes kept (noOverwrite): " + ", ".join(name for name, _ in kept))


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


def _selection(session: Session, t: ContextTenant, query: EntityQuery) -> tuple[list[Any], bool]:
    """SQL conditions on ContextEntity for a query, and whether they are exact (no re-check in Python needed)."""
    conds: list[Any] = [ContextEntity.tenant_id == t.id]
    exact = query.id_pattern is None and query.scope_q is None and query.geo is None
    if query.ids:
        conds.append(ContextEntity.entity_id.in_(query.ids))
    if query.types is not None:
        conds.append(or_(*[_all_types(group) for group in query.types.groups]))
    if query.q is not None:
        cond, q_exact = query_sql.plan(query.q, ContextEntity.pk, attr_index)
        exact = exact and q_exact
        if cond is not None:
            conds.append(cond)
    elif query.attrs:
        # Without q, attrs selects the entities that have at least one of the attributes.
        idx = attr_index.alias()
        conds.append(exists().where(idx.c.entity_pk == ContextEntity.pk,
                                    idx.c.attr.in_(sorted({a[:512] for a in query.attrs}))))
        exact = exact and all(len(a) < 512 for a in query.attrs)
    if query.geo is not None:
        dialect = session.get_bind().dialect.name
        cond = geomod.bbox_condition(query.geo, geo_index, dialect)
        if cond is not None:
            # An IN sub-query, evaluated once through the bbox index (a correlated EXISTS ran once per entity). With
            # the SQLite rtree, the attr test must not use an index: the rtree's row ids drive, not all the rows of
            # the GeoProperty in ix_context_geo_index_bbox.
            attr = query_sql.NoIndex(geo_index.c.attr) if dialect == "sqlite" and geomod.sqlite_has_rtree() \
                else geo_index.c.attr
            conds.append(ContextEntity.pk.in_(select(geo_index.c.entity_pk).where(
                attr == query.geo.geoproperty, cond)))
    return conds, exact


def _candidates(session: Session, conds: list[Any], first: int) -> Iterator[ContextEntity]:
    """Entities meeting the SQL conditions in pk order, read in chunks that start at `first` rows and double."""
    stmt = select(ContextEntity).where(*conds)
    last, size = 0, max(first, 1)
    while True:
        rows = session.scalars(stmt.where(ContextEntity.pk > last).order_by(ContextEntity.pk).limit(size)).all()
        yield from rows
        if len(rows) < size:
            return
        last, size = rows[-1].pk, min(size * 2, SCAN_BATCH)


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
    if t.id < 0:
        return [], (0 if query.count else None)
    conds, exact = _selection(session, t, query)
    if exact:
        # The database alone decides: count and page in SQL.
        total = session.scalar(select(func.count()).select_from(select(ContextEntity.pk).where(*conds).subquery())) \
            if query.count else None
        page = list(session.scalars(select(ContextEntity).where(*conds).order_by(ContextEntity.pk)
                                    .offset(query.offset).limit(query.limit))) if query.limit > 0 else []
        return page, total
    page = []
    total = 0
    for ent in _candidates(session, conds, 2 * (query.offset + query.limit) + 10):
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
