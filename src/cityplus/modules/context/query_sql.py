"""SQL narrowing for NGSI-LD queries: the attribute index (context_attr_index) and `q` → EXISTS conditions.

The index holds one row per top-level attribute value (number, text, boolean, time, relationship target). to_sql
returns a condition that may over-approximate but never excludes an entity that `query.evaluate` accepts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    exists,
    not_,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from cityplus.modules.context.query import (
    ATTR_TYPES,
    TEXT_LEN,
    And,
    Comparison,
    Exists,
    Node,
    Or,
    Pattern,
    Range,
    ScopeMatch,
    _attr_type,
    _coerce,
    _flatten,
    _kind,
    _main_value,
    _unwrap,
)


def attr_index_table(metadata: MetaData) -> Table:
    """Define the context_attr_index table (one row per indexed scalar of a top-level attribute instance)."""
    return Table(
        "context_attr_index", metadata,
        Column("entity_pk", Integer, nullable=False),
        Column("attr", String(512), nullable=False),
        Column("dataset_id", String(256), nullable=True),
        Column("num", Float, nullable=True),
        Column("text", String(TEXT_LEN), nullable=True),
        Column("bool", Boolean, nullable=True),
        Column("ts", DateTime(timezone=True), nullable=True),
        Column("obj", String(TEXT_LEN), nullable=True),
        # (attr, value, entity_pk): a driving q term is answered from the index alone; (entity_pk, attr): the
        # other terms are checked per entity, and incremental reindexing deletes one attribute's rows.
        Index("ix_context_attr_index_attr_num_pk", "attr", "num", "entity_pk"),
        Index("ix_context_attr_index_attr_text_pk", "attr", "text", "entity_pk"),
        Index("ix_context_attr_index_attr_obj_pk", "attr", "obj", "entity_pk"),
        Index("ix_context_attr_index_pk_attr", "entity_pk", "attr"),
    )


_RELATIONSHIPS = frozenset({"Relationship", "ListRelationship"})


@functools.lru_cache(maxsize=4096)
def _short_datetime(text: str) -> datetime | None:
    return _coerce(text, "datetime")  # type: ignore[no-any-return]


def _datetime(text: str) -> datetime | None:
    """A stored string as a dateTime (None when it is not one); short ones cached: batches repeat observedAt."""
    return _short_datetime(text) if len(text) <= 40 else _coerce(text, "datetime")


INDEX_COLUMNS = ("entity_pk", "attr", "dataset_id", "num", "text", "bool", "ts", "obj")
_TS = INDEX_COLUMNS.index("ts")


def index_rows(entity_pk: int, entity: dict[str, Any]) -> list[dict[str, Any]]:
    """Index rows for one entity as dicts (see index_tuples)."""
    return [dict(zip(INDEX_COLUMNS, t, strict=True)) for t in index_tuples(entity_pk, entity)]


def index_tuples(entity_pk: int, entity: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Index rows for one entity, as tuples in INDEX_COLUMNS order: one per attribute instance, one per scalar of
    list values, plus observedAt (in the first row's ts when that is free, else a row of its own)."""
    rows: list[tuple[Any, ...]] = []
    for attr, raw in entity.items():
        name = attr[:512]
        for inst in raw if isinstance(raw, list) else (raw,):
            if not isinstance(inst, dict):
                continue
            kind = _attr_type(inst)
            if kind not in ATTR_TYPES:
                continue
            ds = _unwrap(inst.get("datasetId"))
            ds = ds[:256] if isinstance(ds, str) else None
            relationship = kind in _RELATIONSHIPS
            value = _main_value(inst, False)
            inst_rows = [_row(entity_pk, name, ds, s, relationship)
                         for s in (_flatten([value]) if isinstance(value, list | dict) else (value,))]
            observed = _unwrap(inst.get("observedAt"))
            observed = _datetime(observed) if isinstance(observed, str) else None
            if observed is not None:
                if inst_rows and inst_rows[0][_TS] is None:
                    inst_rows[0] = (*inst_rows[0][:_TS], observed, *inst_rows[0][_TS + 1:])
                else:
                    inst_rows.append((entity_pk, name, ds, None, None, None, observed, None))
            rows.extend(inst_rows or [(entity_pk, name, ds, None, None, None, None, None)])
    return rows


def _row(pk: int, attr: str, ds: str | None, s: Any, relationship: bool) -> tuple[Any, ...]:
    """One index row for scalar `s` (a string that is a dateTime also fills ts)."""
    if isinstance(s, bool):
        return (pk, attr, ds, None, None, s, None, None)
    if isinstance(s, int | float):
        return (pk, attr, ds, None if isinstance(s, float) and math.isnan(s) else _to_float(s), None, None, None, None)
    if isinstance(s, str):
        if relationship:
            return (pk, attr, ds, None, None, None, _datetime(s), s[:TEXT_LEN])
        return (pk, attr, ds, None, s[:TEXT_LEN], None, _datetime(s), None)
    return (pk, attr, ds, None, None, None, None, None)


def _to_float(n: float) -> float:
    """Float for the num column (huge integers become ±inf)."""
    try:
        return float(n)
    except OverflowError:
        return math.copysign(math.inf, n)


class _Codepoint(FunctionElement[str]):
    """Render a string column so that ordering is by code point (COLLATE "C" on PostgreSQL)."""

    inherit_cache = True
    type = String()


@compiles(_Codepoint)
def _codepoint_default(element: _Codepoint, compiler: Any, **kw: Any) -> str:
    """SQLite (BINARY collation) and others: the bare column."""
    return str(compiler.process(element.clauses, **kw))


@compiles(_Codepoint, "postgresql")
def _codepoint_pg(element: _Codepoint, compiler: Any, **kw: Any) -> str:
    """PostgreSQL: byte (= code point for UTF-8) order."""
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


def _literal_cond(idx: Any, op: str, lit: Any) -> ColumnElement[bool] | None:
    """Row condition implied by `value op lit` on indexed scalars (a superset), None if not narrowable."""
    if isinstance(lit, tuple):
        parts = [_literal_cond(idx, "==", item) for item in lit]
        return None if any(c is None for c in parts) else or_(*parts)  # type: ignore[arg-type]
    if isinstance(lit, Range):
        low, high = _literal_cond(idx, ">=", lit.low), _literal_cond(idx, "<=", lit.high)
        return None if low is None or high is None else and_(low, high)
    kind = _kind(lit)
    if kind == "bool":
        return idx.c.bool.is_(lit) if op == "==" else None
    if kind == "number":
        if abs(lit) >= 2**53:  # float rounding may merge values: widen strict comparisons
            op = {">": ">=", "<": "<="}.get(op, op)
        return _compare(idx.c.num, op, _to_float(lit))
    if kind == "datetime":
        return _compare(idx.c.ts, op, lit)
    if kind == "string":
        if "\x00" in lit:  # PostgreSQL text cannot hold NUL
            return None
        if len(lit) >= TEXT_LEN:  # stored values are truncated: compare prefixes, non-strictly
            lit, op = lit[:TEXT_LEN], {">": ">=", "<": "<="}.get(op, op)
        if op == "==":
            # Equality does not depend on collation (PostgreSQL's are deterministic): the bare columns keep the
            # (attr, text) and (attr, obj) indexes usable, which COLLATE "C" would not.
            return or_(idx.c.text == lit, idx.c.obj == lit)
        return or_(_compare(_Codepoint(idx.c.text), op, lit), _compare(_Codepoint(idx.c.obj), op, lit))
    return None  # date and time literals compare parsed strings: no ordered column


def _compare(col: Any, op: str, v: Any) -> ColumnElement[bool]:
    """`col op v` as SQL."""
    return {"==": col == v, ">": col > v, ">=": col >= v, "<": col < v, "<=": col <= v}[op]  # type: ignore[no-any-return]


def _exists(entity_pk_col: Any, index_table: Table, attr: str, cond: Callable[[Any], Any] | None = None) -> Any:
    """The entity has an index row for `attr` [meeting cond].

    Written as `pk IN (SELECT entity_pk … WHERE attr = … AND cond)`, not as a correlated EXISTS: the sub-query is
    evaluated once through the (attr, value) indexes. A correlated EXISTS let SQLite probe the (attr, num) index
    once per entity — a 20,000-entity `q` query took minutes.
    """
    idx = index_table.alias()
    where = [idx.c.attr == attr[:512]]
    if cond is not None:
        where.append(cond(idx))
    return entity_pk_col.in_(select(idx.c.entity_pk).where(*where))


def to_sql(node: Node, entity_pk_col: Any, index_table: Table) -> ColumnElement[bool] | None:
    """SQL condition selecting a superset of the entities evaluate() accepts; None when it cannot narrow."""
    if isinstance(node, And):
        parts = [c for c in (to_sql(n, entity_pk_col, index_table) for n in node.children) if c is not None]
        return and_(*parts) if parts else None
    if isinstance(node, Or):
        ors = [to_sql(n, entity_pk_col, index_table) for n in node.children]
        return None if any(c is None for c in ors) else or_(*ors)  # type: ignore[arg-type]
    if isinstance(node, ScopeMatch):
        return None
    exists = _exists(entity_pk_col, index_table, node.path.attr)
    if isinstance(node, Exists):
        if not node.negated:
            return exists  # type: ignore[no-any-return]
        exact = not node.path.sub and not node.path.keys and len(node.path.attr) < 512  # stored attr is truncated
        return not_(exists) if exact else None
    if isinstance(node, Pattern):
        return exists  # type: ignore[no-any-return]  # both ~= and !~= need the attribute to exist
    if node.path.sub == ("observedAt",) and not node.path.keys and isinstance(node.value, datetime) \
            and node.op != "!=":
        return _exists(entity_pk_col, index_table, node.path.attr,  # type: ignore[no-any-return]
                       lambda idx: _compare(idx.c.ts, node.op, node.value))
    if node.path.sub or node.path.keys or node.op == "!=":
        return exists  # type: ignore[no-any-return]  # every such term needs the attribute to exist
    probe = _literal_cond(index_table, node.op, node.value)
    if probe is None:
        return exists  # type: ignore[no-any-return]
    return _exists(entity_pk_col, index_table, node.path.attr,  # type: ignore[no-any-return]
                   lambda idx: _literal_cond(idx, node.op, node.value))


# --- query plans ----------------------------------------------------------------------------------------------


class NoIndex(FunctionElement[Any]):
    """A column SQLite must not look up through an index (unary +); other databases render it bare.

    In a per-entity check `entity_pk = ? AND attr = ? AND num > ?`, SQLite without statistics prefers the
    (attr, num, entity_pk) index (one equality and a range) and walks every matching row of the attribute, per
    entity; hiding num leaves it the (entity_pk, attr) index: one short probe per entity.
    """

    inherit_cache = True


@compiles(NoIndex)
def _no_index_default(element: NoIndex, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(NoIndex, "sqlite")
def _no_index_sqlite(element: NoIndex, compiler: Any, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


class _Hidden:
    """Stands in for an index table alias in _literal_cond: its value columns are wrapped in NoIndex."""

    def __init__(self, idx: Any) -> None:
        self.c = SimpleNamespace(**{name: NoIndex(idx.c[name]) for name in ("num", "text", "bool", "ts", "obj")})


def _term_cond(node: Comparison | Exists, index_table: Table) -> Callable[[Any], Any] | None:
    """The row condition of a term, as a callable on an index alias; None when only existence can be checked."""
    if not isinstance(node, Comparison):
        return None
    if node.path.sub == ("observedAt",) and not node.path.keys and isinstance(node.value, datetime) \
            and node.op != "!=":
        return lambda idx: _compare(idx.c.ts, node.op, node.value)
    if node.path.sub or node.path.keys or node.op == "!=" or _literal_cond(index_table, node.op, node.value) is None:
        return None
    return lambda idx: _literal_cond(idx, node.op, node.value)


def _drive_rank(node: Comparison | Exists) -> int | None:
    """How well a term drives a query (0 best); None: not as a driver. Equality on a value narrows to a few rows
    of the (attr, value) index; ranges and existence usually match much of a type, better checked per entity."""
    if not isinstance(node, Comparison) or node.path.sub or node.path.keys or node.op != "==":
        return None
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    if not all(_kind(v) in ("number", "string") and not isinstance(v, Range) for v in values):
        return None
    return 0 if len(values) == 1 else 1


def _is_exact(node: Comparison | Exists) -> bool:
    """Whether the SQL condition of a term selects exactly the entities query.evaluate accepts."""
    if len(node.path.attr) >= 512 or node.path.sub or node.path.keys:
        return False
    if isinstance(node, Exists):
        return True  # every attribute instance has at least one index row
    if node.op == "!=":
        return False
    for v in node.value if isinstance(node.value, tuple) else (node.value,):
        kind = _kind(v)
        if isinstance(v, Range) or kind not in ("number", "string", "bool") or (kind == "bool" and node.op != "=="):
            return False
        if (kind == "number" and abs(v) >= 2**53) or (kind == "string" and (len(v) >= TEXT_LEN or "\x00" in v)):
            return False
    return True


def _driver(entity_pk_col: Any, index_table: Table, term: Comparison) -> ColumnElement[bool]:
    """`pk IN (…)` for an equality term: one index range per value and column (text and obj for a string), as a
    UNION ALL, so that each part is a plain (attr, value) lookup rather than an OR the planners scan the attribute
    for."""
    attr = term.path.attr[:512]
    parts = []
    for v in term.value if isinstance(term.value, tuple) else (term.value,):
        idx = index_table.alias()
        base = select(idx.c.entity_pk).where(idx.c.attr == attr)
        if _kind(v) == "number":
            parts.append(base.where(idx.c.num == _to_float(v)))
        else:
            parts += [base.where(idx.c.text == v[:TEXT_LEN]), base.where(idx.c.obj == v[:TEXT_LEN])]
    return entity_pk_col.in_(union_all(*parts))  # type: ignore[no-any-return]


def plan(node: Node, entity_pk_col: Any, index_table: Table) -> tuple[ColumnElement[bool] | None, bool]:
    """SQL for a q query, shaped for the planners, and whether it is exact (no evaluation in Python needed).

    A top-level AND is split: its most selective equality term (see _drive_rank) becomes `pk IN (SELECT entity_pk
    …)` through an (attr, value, entity_pk) index, the others per-entity EXISTS checks through (entity_pk, attr).
    Without such a term every term is checked per entity, entities being read in pk order until the page is full:
    cheap when many entities match, as with ranges. Anything else (OR, negations) falls back to to_sql.
    """
    terms = list(node.children) if isinstance(node, And) else [node]
    if not all(isinstance(t, Comparison | Exists) for t in terms):
        return to_sql(node, entity_pk_col, index_table), False
    ranked = [(r, i) for i, t in enumerate(terms) if (r := _drive_rank(t)) is not None]
    driver = min(ranked)[1] if ranked else None
    conds: list[Any] = []
    exact = True
    for i, term in enumerate(terms):
        assert isinstance(term, Comparison | Exists)
        exact = exact and _is_exact(term)
        if isinstance(term, Exists) and term.negated:
            cond = to_sql(term, entity_pk_col, index_table)
            exact = exact and cond is not None
            if cond is not None:
                conds.append(cond)
            continue
        row_cond = _term_cond(term, index_table)
        if i == driver:
            conds.append(_driver(entity_pk_col, index_table, term))  # type: ignore[arg-type]
            continue
        idx = index_table.alias()
        where = [idx.c.entity_pk == entity_pk_col, idx.c.attr == term.path.attr[:512]]
        if row_cond is not None:
            where.append(row_cond(_Hidden(idx)))
        conds.append(exists().where(*where))
    return (and_(*conds) if conds else None), exact
