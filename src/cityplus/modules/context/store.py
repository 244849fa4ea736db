"""Entity storage for the context broker: rows in memory, set-based writes, incremental index maintenance.

service.py works on `Row`s: `load` reads the entities a request touches in one statement, the operations change
the rows in memory (one attribute at a time, remembering which attributes changed), and `save` writes all of them
with a handful of `executemany` statements, however many entities a batch holds:

- new entities: one multi-row INSERT … RETURNING for the entities, then their type, attribute-index and geo-index
  rows;
- changed entities: one UPDATE per entity (executemany), and only the index rows of the attributes that changed
  are deleted and written again (a single-attribute PATCH rewrites that attribute's rows, not the entity's).

Statements go through SQLAlchemy Core, not the ORM unit of work; ORM objects of the same entities already in the
session are expired so later reads in the same session see the new state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, Table, bindparam, cast, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from cityplus.core.db import utcnow
from cityplus.modules.context import changefeed, query_sql
from cityplus.modules.context import geo as geomod
from cityplus.modules.context.models import ContextEntity, ContextEntityType, attr_index, geo_index

ENTITIES = ContextEntity.__table__
TYPES = ContextEntityType.__table__
IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits
ATTR_LEN = 512  # context_attr_index.attr / context_geo_index.attr hold this many characters
COPY_MIN_ROWS = 50  # PostgreSQL: from this many rows on, index rows are written with COPY


@dataclass
class Row:
    """One entity as stored: its pk (None until inserted), id, types, scopes and expanded attributes.

    `reindex` names the attributes whose index rows must be rewritten (None: all of them); `types_changed` and
    `dirty` say what `save` has to write.
    """

    pk: int | None
    entity_id: str
    types: list[str]
    scopes: list[str] | None
    attrs: dict[str, Any]
    reindex: set[str] | None = None
    types_changed: bool = False
    dirty: bool = False
    created_at: datetime | None = None
    modified_at: datetime | None = None
    stored_geo: frozenset[str] = frozenset()  # attributes with a GeoProperty instance as loaded (geo index rows)
    loaded: dict[str, Any] | None = None  # the attributes as stored (None: a new row), for change notifications

    def copy(self) -> Row:
        """A copy whose changes do not touch this row (attribute values are replaced, never mutated in place)."""
        return Row(self.pk, self.entity_id, list(self.types), None if self.scopes is None else list(self.scopes),
                   dict(self.attrs), None if self.reindex is None else set(self.reindex), self.types_changed,
                   self.dirty, self.created_at, self.modified_at, self.stored_geo, self.loaded)

    def changed(self, name: str) -> None:
        """Record that attribute `name` changed (its index rows are rewritten on save)."""
        self.dirty = True
        if self.reindex is not None:
            self.reindex.add(name)

    def set_types(self, types: Sequence[str]) -> None:
        types = list(types)
        if types != self.types:
            self.types, self.types_changed, self.dirty = types, True, True

    def set_scopes(self, scopes: list[str] | None) -> None:
        if scopes != self.scopes:
            self.scopes, self.dirty = scopes, True


def new_row(entity_id: str, types: Sequence[str], scopes: list[str] | None, attrs: dict[str, Any]) -> Row:
    return Row(None, entity_id, list(types), scopes, attrs, reindex=None, types_changed=True, dirty=True)


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def load(session: Session, tenant_id: int, entity_ids: Iterable[str]) -> dict[str, Row]:
    """The stored rows of these entity ids (absent ids are missing from the result)."""
    ids = list(dict.fromkeys(entity_ids))
    out: dict[str, Row] = {}
    if tenant_id < 0:  # the implicit default tenant before its first write holds nothing
        return out
    cols = (ENTITIES.c.pk, ENTITIES.c.entity_id, ENTITIES.c.types, ENTITIES.c.scopes, ENTITIES.c.attrs,
            ENTITIES.c.created_at, ENTITIES.c.modified_at)
    postgres = session.get_bind().dialect.name == "postgresql"
    for chunk in _chunks(ids):
        stmt = select(*cols).where(ENTITIES.c.tenant_id == tenant_id)
        if len(chunk) == 1:
            stmt = stmt.where(ENTITIES.c.entity_id == chunk[0])
        elif postgres:
            # A join with unnest(ids): without statistics (autovacuum off, or just after a bulk load) PostgreSQL
            # answered `entity_id IN (…500 ids…)` by reading every entity of the tenant; the join is planned as
            # one (tenant_id, entity_id) index lookup per id whatever the statistics say.
            wanted = func.unnest(cast(list(chunk), ARRAY(String))).table_valued("id").render_derived()
            stmt = stmt.join(wanted, ENTITIES.c.entity_id == wanted.c.id)
        else:
            stmt = stmt.where(ENTITIES.c.entity_id.in_(chunk))
        for pk, eid, types, scopes, attrs, created, modified in session.execute(stmt):
            out[eid] = Row(pk, eid, list(types), scopes, dict(attrs), reindex=set(), created_at=created,
                           modified_at=modified, stored_geo=_geo_names(attrs), loaded=attrs)
    return out


def exists(session: Session, tenant_id: int, entity_id: str) -> bool:
    if tenant_id < 0:
        return False
    return session.scalar(select(ENTITIES.c.pk).where(ENTITIES.c.tenant_id == tenant_id,
                                                      ENTITIES.c.entity_id == entity_id)) is not None


def _instances(attr: Any) -> list[dict[str, Any]]:
    return attr if isinstance(attr, list) else [attr]


def _geo_names(attrs: dict[str, Any]) -> frozenset[str]:
    return frozenset(name for name, attr in attrs.items()
                     if any(inst.get("type") == "GeoProperty" for inst in _instances(attr) if isinstance(inst, dict)))


def _geo_rows(pk: int, attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [geomod.index_row(pk, name[:ATTR_LEN], inst.get("datasetId"), inst["value"])
            for name, attr in attrs.items() for inst in _instances(attr) if inst.get("type") == "GeoProperty"]


def save(session: Session, tenant_id: int, rows: Sequence[Row]) -> None:
    """Write new and changed rows and their index rows with set-based statements."""
    now = utcnow()
    new = [r for r in rows if r.pk is None]
    old = [r for r in rows if r.pk is not None and r.dirty]
    if new and session.get_bind().dialect.name == "postgresql" and len(new) >= COPY_MIN_ROWS:
        # Take the pks from the sequence first, then COPY the rows with them.
        pks = session.scalars(text("SELECT nextval(pg_get_serial_sequence('context_entities', 'pk')) "
                                   "FROM generate_series(1, :n)"), {"n": len(new)}).all()
        for r, pk in zip(new, pks, strict=True):
            r.pk, r.created_at, r.modified_at = pk, now, now
        _insert_many(session, ENTITIES, ("pk", "tenant_id", "entity_id", "types", "scopes", "attrs", "created_at",
                                         "modified_at"),
                     [(r.pk, tenant_id, r.entity_id, r.types, r.scopes, r.attrs, now, now) for r in new])
    elif new:
        result = session.execute(
            insert(ENTITIES).returning(ENTITIES.c.pk, sort_by_parameter_order=True),
            [{"tenant_id": tenant_id, "entity_id": r.entity_id, "types": r.types, "scopes": r.scopes,
              "attrs": r.attrs, "created_at": now, "modified_at": now} for r in new])
        for r, pk in zip(new, result.scalars().all(), strict=True):
            r.pk, r.created_at, r.modified_at = pk, now, now
    if old:
        session.execute(
            update(ENTITIES).where(ENTITIES.c.pk == bindparam("b_pk")).values(
                types=bindparam("b_types"), scopes=bindparam("b_scopes"), attrs=bindparam("b_attrs"),
                modified_at=bindparam("b_modified")),
            [{"b_pk": r.pk, "b_types": r.types, "b_scopes": r.scopes, "b_attrs": r.attrs, "b_modified": now}
             for r in old])
        for r in old:
            r.modified_at = now
        _expire(session, old)
        _drop_index_rows(session, old)
    type_rows: list[tuple[Any, ...]] = []
    attr_rows: list[tuple[Any, ...]] = []
    geo_rows: list[dict[str, Any]] = []
    for r in (*new, *old):
        assert r.pk is not None
        if r.types_changed:
            type_rows.extend((r.pk, t, tenant_id) for t in r.types)
        attrs = r.attrs if r.reindex is None else {n: r.attrs[n] for n in r.reindex if n in r.attrs}
        if attrs:
            attr_rows.extend(query_sql.index_tuples(r.pk, attrs))
            geo_rows.extend(_geo_rows(r.pk, attrs))
    _insert_many(session, TYPES, ("entity_pk", "type", "tenant_id"), type_rows)
    _insert_many(session, attr_index, query_sql.INDEX_COLUMNS, attr_rows)
    if geo_rows:
        geo_cols = tuple(geo_rows[0])
        _insert_many(session, geo_index, geo_cols, [tuple(g[c] for c in geo_cols) for g in geo_rows])
    changes = [changefeed.created(r) for r in new] + [changefeed.updated(r) for r in old]
    for r in rows:
        r.reindex, r.types_changed, r.dirty, r.stored_geo = set(), False, False, _geo_names(r.attrs)
        r.loaded = dict(r.attrs)
    changefeed.publish(session, tenant_id, changes)


def _insert_many(session: Session, table: Table, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """INSERT rows (tuples in `cols` order) with one driver-level executemany (COPY on PostgreSQL).

    Index rows come by the ten thousand per batch; SQLAlchemy's per-row parameter compilation cost more than the
    database's work. Values still go through each column type's bind processor for the dialect.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    procs = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in cols]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in cols)}) "
           f"VALUES ({', '.join([mark] * len(cols))})")
    convert = [(i, p) for i, p in enumerate(procs) if p is not None]
    if convert:
        # Batches repeat values (observedAt times, attribute names): each distinct value is converted once.
        memo: list[dict[Any, Any]] = [{} for _ in convert]
        converted = []
        for row in rows:
            values = list(row)
            for (i, p), seen in zip(convert, memo, strict=True):
                v = values[i]
                if v is None:
                    continue
                if isinstance(v, dict | list):  # JSON documents: not hashable, and rarely repeated
                    values[i] = p(v)
                    continue
                out = seen.get(v)
                if out is None:
                    out = seen[v] = p(v)
                values[i] = out
            converted.append(tuple(values))
        rows = converted
    if dialect.name == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        # COPY moves thousands of rows several times faster than an executemany of INSERTs.
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cur, cur.copy(
                f"COPY {quote(table.name)} ({', '.join(quote(c) for c in cols)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    conn.exec_driver_sql(sql, rows)


def _drop_index_rows(session: Session, rows: Sequence[Row]) -> None:
    """Delete the index rows that save() writes again: all of a fully reindexed row, the changed attributes' else."""
    full = [r.pk for r in rows if r.reindex is None]
    pairs = [{"b_pk": r.pk, "b_attr": n[:ATTR_LEN]} for r in rows if r.reindex for n in sorted(r.reindex)]
    # Only attributes that had a GeoProperty instance have geo index rows to delete.
    geo_pairs = [{"b_pk": r.pk, "b_attr": n[:ATTR_LEN]} for r in rows if r.reindex
                 for n in sorted(r.reindex & r.stored_geo)]
    retyped = [r.pk for r in rows if r.types_changed]
    for table, table_pairs in ((attr_index, pairs), (geo_index, geo_pairs)):
        for chunk in _chunks(full):
            session.execute(delete(table).where(table.c.entity_pk.in_(chunk)))
        if table_pairs:
            session.execute(delete(table).where(table.c.entity_pk == bindparam("b_pk"),
                                                table.c.attr == bindparam("b_attr")), table_pairs)
    for chunk in _chunks(retyped):
        session.execute(delete(TYPES).where(TYPES.c.entity_pk.in_(chunk)))


def remove(session: Session, tenant_id: int, rows: Sequence[Row]) -> None:
    """Delete entities and all their index rows."""
    pks = [r.pk for r in rows if r.pk is not None]
    for chunk in _chunks(pks):
        for table in (attr_index, geo_index):
            session.execute(delete(table).where(table.c.entity_pk.in_(chunk)))
        session.execute(delete(TYPES).where(TYPES.c.entity_pk.in_(chunk)))
        session.execute(delete(ENTITIES).where(ENTITIES.c.pk.in_(chunk)))
    for pk in pks:
        obj = session.identity_map.get(identity_key(ContextEntity, pk))
        if obj is not None:
            session.expunge(obj)
    changefeed.publish(session, tenant_id, [changefeed.deleted(r) for r in rows])


def _expire(session: Session, rows: Sequence[Row]) -> None:
    """Expire ORM objects of rows written through Core, so the session reloads them."""
    if not session.identity_map:
        return
    for r in rows:
        obj = session.identity_map.get(identity_key(ContextEntity, r.pk))
        if obj is not None:
            session.expire(obj)


def entity(session: Session, row: Row) -> ContextEntity:
    """The ORM object of a saved row (for callers that read it back)."""
    ent = session.get(ContextEntity, row.pk)
    assert ent is not None
    return ent
