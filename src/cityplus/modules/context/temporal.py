"""Temporal evolution of entities (NGSI-LD §4.5.16, §5.6.11–§5.7.4): history rows, retrieval, aggregation.

Every attribute instance an entity write creates or changes becomes one row of context_history, in the
transaction of the write (changefeed.publish): its value as stored, datasetId, observedAt, the time it was
written (modifiedAt), and its number for aggregation. Instance ids are derived from the row's key
(`urn:ngsi-ld:attribute:instance:<pk>`). Aggregation (`aggregatedValues`) runs in SQL over the
(tenant, entity, attribute, observedAt) index, in buckets of `aggrPeriodDuration` starting at timeAt (or the
first instance). Old rows are pruned by retention per entity type (settings `history_retention`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Integer, delete, func, insert, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from cityplus.core.db import utcnow
from cityplus.modules.context.errors import BadRequestData, ResourceNotFound
from cityplus.modules.context.models import ContextHistory, ContextTemporalEntity
from cityplus.modules.context.normalize import SYSTEM, check_datetime

if TYPE_CHECKING:
    from cityplus.modules.context.changefeed import Change

H = ContextHistory
TE = ContextTemporalEntity
INSTANCE_PREFIX = "urn:ngsi-ld:attribute:instance:"
AGGR_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
TIMERELS = ("before", "after", "between")
TIMEPROPERTIES = ("observedAt", "createdAt", "modifiedAt")
MAX_BUCKETS = 100_000
_DURATION = re.compile(r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


# --- capture -------------------------------------------------------------------------------------------


def _number(inst: dict[str, Any]) -> float | None:
    v = inst.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def history_rows(tenant_id: int, entity_id: str, attrs: dict[str, Any], names: Sequence[str], now: datetime
                 ) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        raw = attrs.get(name)
        if raw is None:
            continue
        for inst in raw if isinstance(raw, list) else (raw,):
            if not isinstance(inst, dict):
                continue
            rows.append({"tenant_id": tenant_id, "entity_id": entity_id, "attr": name[:512],
                         "dataset_id": inst.get("datasetId"), "observed_at": _when(inst.get("observedAt")),
                         "modified_at": _when(inst.get("modifiedAt")) or now,
                         "value": {k: v for k, v in inst.items() if k not in SYSTEM},
                         "num": _number(inst)})
    return rows


def record(session: Session, tenant_id: int, changes: list[Change], enabled: bool = True) -> None:
    """History rows for the attribute instances these changes wrote; temporal entity rows for new entities."""
    if not enabled or tenant_id < 0:
        return
    now = utcnow()
    rows: list[dict[str, Any]] = []
    created: list[dict[str, Any]] = []
    for ch in changes:
        if ch.kind == "deleted" or ch.new is None:
            continue
        if ch.kind == "created":
            created.append({"tenant_id": tenant_id, "entity_id": ch.entity_id, "types": ch.types})
        rows.extend(history_rows(tenant_id, ch.entity_id, ch.new, sorted(ch.changed & set(ch.new)), now))
    if created:
        _ensure_entities(session, created)
    if rows:
        session.execute(insert(H), rows)


def _ensure_entities(session: Session, rows: list[dict[str, Any]]) -> None:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    stmt = upsert(TE).on_conflict_do_nothing(index_elements=["tenant_id", "entity_id"])
    session.execute(stmt, rows)


def add_instances(session: Session, tenant_id: int, entity_id: str, types: list[str] | None,
                  attrs: dict[str, Any]) -> int:
    """Add attribute instances to an entity's history (POST /temporal/entities[/{id}/attrs])."""
    if types is not None:
        _ensure_entities(session, [{"tenant_id": tenant_id, "entity_id": entity_id, "types": types}])
    rows = history_rows(tenant_id, entity_id, attrs, list(attrs), utcnow())
    # An instance of the same attribute, datasetId and observedAt replaces the stored one (§5.6.11).
    groups: dict[tuple[str, Any], list[datetime]] = {}
    for r in rows:
        if r["observed_at"] is not None:
            groups.setdefault((r["attr"], r["dataset_id"]), []).append(r["observed_at"])
    for (attr, ds), times in groups.items():
        for i in range(0, len(times), 500):
            session.execute(delete(H).where(H.tenant_id == tenant_id, H.entity_id == entity_id, H.attr == attr,
                                            H.dataset_id.is_(None) if ds is None else H.dataset_id == ds,
                                            H.observed_at.in_(times[i:i + 500])))
    if rows:
        session.execute(insert(H), rows)
    return len(rows)


# --- retrieval -----------------------------------------------------------------------------------------


@dataclass
class TemporalQuery:
    timerel: str | None = None
    time_at: datetime | None = None
    end_time_at: datetime | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None
    attrs: list[str] | None = None
    aggr_methods: list[str] | None = None
    aggr_period: timedelta | None = None
    max_instances: int = 10_000


def parse_query(params: dict[str, str | None], expand: Any, *, aggregated: bool, max_instances: int
                ) -> TemporalQuery:
    """Validate the temporal URL parameters (400 BadRequestData naming the parameter)."""
    tq = TemporalQuery(max_instances=max_instances)
    timerel = params.get("timerel")
    if timerel is not None:
        if timerel not in TIMERELS:
            raise BadRequestData(f"timerel must be one of {', '.join(TIMERELS)}, not {timerel[:20]!r}")
        if not params.get("timeAt"):
            raise BadRequestData("timerel needs timeAt")
        tq.timerel = timerel
        tq.time_at = _parse_time(params["timeAt"], "timeAt")
        if timerel == "between":
            if not params.get("endTimeAt"):
                raise BadRequestData("timerel=between needs endTimeAt")
            tq.end_time_at = _parse_time(params["endTimeAt"], "endTimeAt")
            if tq.end_time_at <= tq.time_at:
                raise BadRequestData("endTimeAt must be after timeAt")
    elif params.get("timeAt") or params.get("endTimeAt"):
        raise BadRequestData("timeAt and endTimeAt need timerel")
    prop = params.get("timeproperty")
    if prop is not None:
        if prop not in TIMEPROPERTIES:
            raise BadRequestData(f"timeproperty must be one of {', '.join(TIMEPROPERTIES)}")
        tq.timeproperty = prop
    if params.get("lastN") is not None:
        try:
            tq.last_n = int(params["lastN"] or "")
        except ValueError:
            raise BadRequestData("lastN must be a positive integer") from None
        if tq.last_n < 1:
            raise BadRequestData("lastN must be a positive integer")
    if aggregated:
        methods = [m.strip() for m in (params.get("aggrMethods") or "").split(",") if m.strip()]
        if not methods:
            raise BadRequestData("options=aggregatedValues needs aggrMethods")
        bad = [m for m in methods if m not in AGGR_METHODS]
        if bad:
            raise BadRequestData(f"aggrMethods: unknown method {bad[0]!r}; known: {', '.join(AGGR_METHODS)}")
        tq.aggr_methods = list(dict.fromkeys(methods))
        tq.aggr_period = parse_duration(params.get("aggrPeriodDuration") or "P0D", "aggrPeriodDuration")
    return tq


def _parse_time(text: str | None, name: str) -> datetime:
    check_datetime(text, name)
    parsed = _when(text)
    assert parsed is not None
    return parsed


def parse_duration(text: str, name: str) -> timedelta:
    """An ISO 8601 duration (years as 365 days, months as 30 days); P0D means one bucket for the whole range."""
    if text in ("P0D", "PT0S"):
        return timedelta(0)
    m = _DURATION.match(text)
    if not m:
        raise BadRequestData(f"{name} must be an ISO 8601 duration such as PT1H or P1D, not {text[:40]!r}")
    y, mo, w, d, h, mi, s = m.groups()
    return timedelta(days=int(y or 0) * 365 + int(mo or 0) * 30 + int(w or 0) * 7 + int(d or 0),
                     hours=int(h or 0), minutes=int(mi or 0), seconds=float(s or 0))


def _time_column(prop: str) -> Any:
    return H.observed_at if prop == "observedAt" else H.modified_at


def _conditions(tenant_id: int, entity_id: str, tq: TemporalQuery) -> list[Any]:
    col = _time_column(tq.timeproperty)
    conds: list[Any] = [H.tenant_id == tenant_id, H.entity_id == entity_id]
    if tq.attrs is not None:
        conds.append(H.attr.in_([a[:512] for a in tq.attrs]))
    if tq.timeproperty == "observedAt" and tq.timerel is not None:
        conds.append(col.is_not(None))
    if tq.timerel == "before":
        conds.append(col < tq.time_at)
    elif tq.timerel == "after":
        conds.append(col >= tq.time_at)
    elif tq.timerel == "between":
        conds.extend([col >= tq.time_at, col < tq.end_time_at])
    return conds


def with_history(session: Session, tenant_id: int, entity_ids: list[str]) -> set[str]:
    """Which of these entities have a temporal representation."""
    out: set[str] = set()
    for i in range(0, len(entity_ids), 500):
        out.update(session.scalars(select(TE.entity_id).where(TE.tenant_id == tenant_id,
                                                               TE.entity_id.in_(entity_ids[i:i + 500]))))
    return out


def entity_types(session: Session, tenant_id: int, entity_id: str) -> list[str]:
    types = session.scalar(select(TE.types).where(TE.tenant_id == tenant_id, TE.entity_id == entity_id))
    if types is None:
        raise ResourceNotFound(f"entity {entity_id} has no temporal representation")
    return list(types)


def attribute_type(session: Session, tenant_id: int, entity_id: str, attr: str) -> str:
    """The attribute type (Property, Relationship, …) of one instance of the attribute's history."""
    value = session.scalar(select(H.value).where(H.tenant_id == tenant_id, H.entity_id == entity_id,
                                                 H.attr == attr[:512]).limit(1))
    return str(value.get("type", "Property")) if isinstance(value, dict) else "Property"


def _iso(value: datetime | None) -> str | None:
    """UTC with Z; milliseconds only when there are any (2020-08-01T12:03:00Z, as clients wrote it)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


@dataclass
class Instances:
    """Attribute name → instances (oldest first), and whether a limit cut some off (with the range returned)."""

    attrs: dict[str, list[dict[str, Any]]]
    truncated: bool = False
    first: datetime | None = None
    last: datetime | None = None


def instances(session: Session, tenant_id: int, entity_id: str, tq: TemporalQuery, *, sys_attrs: bool = False
              ) -> Instances:
    """The entity's attribute instances within the time range (lastN per attribute when asked)."""
    col = _time_column(tq.timeproperty)
    if tq.timeproperty == "observedAt" and tq.timerel is None:
        col = func.coalesce(H.observed_at, H.modified_at)  # instances without observedAt too, in write order
    conds = _conditions(tenant_id, entity_id, tq)
    names = list(session.scalars(select(H.attr).where(*conds).group_by(H.attr).order_by(H.attr)))
    out = Instances({})
    for name in names:
        per = min(tq.last_n, tq.max_instances) if tq.last_n else tq.max_instances
        order = (col.desc(), H.pk.desc()) if tq.last_n else (col.asc(), H.pk.asc())
        rows = session.execute(select(H.pk, H.value, H.observed_at, H.modified_at, col).where(*conds, H.attr == name)
                               .order_by(*order).limit(per + 1)).all()
        if len(rows) > per:
            rows = rows[:per]
            if not tq.last_n:
                out.truncated = True
        if tq.last_n:
            rows.reverse()
        items = []
        for pk, value, _observed, modified, when in rows:
            inst = dict(value)
            inst["instanceId"] = f"{INSTANCE_PREFIX}{pk}"
            if sys_attrs:
                inst["createdAt"] = inst["modifiedAt"] = _iso(modified)
            items.append(inst)
            if when is not None:
                out.first = when if out.first is None or when < out.first else out.first
                out.last = when if out.last is None or when > out.last else out.last
        out.attrs[name] = items
    return out


def aggregate(session: Session, tenant_id: int, entity_id: str, tq: TemporalQuery
              ) -> dict[str, dict[str, list[list[Any]]]]:
    """Attribute name → method → [[value, bucket start, bucket end], …], computed in SQL."""
    assert tq.aggr_methods is not None and tq.aggr_period is not None
    col = _time_column(tq.timeproperty)
    conds = _conditions(tenant_id, entity_id, tq)
    if tq.timerel == "between" and tq.time_at and tq.end_time_at:
        start, end = tq.time_at, tq.end_time_at
    else:
        bounds = session.execute(select(func.min(col), func.max(col)).where(*conds)).one()
        if bounds[0] is None:
            return {}
        start = tq.time_at if tq.timerel == "after" and tq.time_at else bounds[0]
        end = bounds[1]
    period = tq.aggr_period.total_seconds()
    if period <= 0:
        period = max((end - start).total_seconds(), 0.0) + 1e-3
        whole = True
    else:
        whole = False
        if (end - start).total_seconds() / period > MAX_BUCKETS:
            raise BadRequestData(f"aggrPeriodDuration is too short for the time range (more than {MAX_BUCKETS} "
                                 "buckets)")
    dialect = session.get_bind().dialect.name
    if whole:
        bucket = literal(0).label("bucket")
    elif dialect == "postgresql":
        bucket = func.floor((func.extract("epoch", col) - start.timestamp()) / period).label("bucket")
    else:
        # julianday() parses the stored text; the Julian day of `start` is computed here. CAST truncates (all rows
        # are at or after start); the small term keeps 10:00 - 08:00 from landing at 1.9999999 periods.
        j0 = start.timestamp() / 86400.0 + 2440587.5
        bucket = sql_cast((func.julianday(col) - j0) * (86400.0 / period) + 1e-7, Integer).label("bucket")
    num = H.num
    n = func.count(num)
    sumx = func.sum(num)
    sumsq = func.sum(num * num)
    stmt = select(H.attr, bucket, func.count(), sumx, func.min(num), func.max(num), sumsq, n).where(*conds) \
        .group_by(H.attr, bucket).order_by(H.attr, bucket)
    out: dict[str, dict[str, list[list[Any]]]] = {}
    distinct = _distinct_counts(session, conds, bucket) if "distinctCount" in tq.aggr_methods else {}
    for attr, b, total, s, lo, hi, sq, count in session.execute(stmt):
        b = int(b or 0)
        b_start = start + timedelta(seconds=b * period)
        b_end = end if whole else b_start + timedelta(seconds=period)
        span = [_iso(b_start), _iso(b_end)]
        methods = out.setdefault(attr, {})
        for m in tq.aggr_methods:
            if m == "totalCount":
                value: Any = total
            elif m == "distinctCount":
                value = distinct.get((attr, b), 0)
            elif count == 0:
                continue  # no numbers in the bucket: nothing to sum or average
            elif m == "sum":
                value = float(s)
            elif m == "avg":
                value = float(s) / count
            elif m == "min":
                value = float(lo)
            elif m == "max":
                value = float(hi)
            elif m == "sumsq":
                value = float(sq)
            else:  # stddev (population)
                mean = float(s) / count
                value = math.sqrt(max(float(sq) / count - mean * mean, 0.0))
            methods.setdefault(m, []).append([value, *span])
    return out


def _distinct_counts(session: Session, conds: list[Any], bucket: Any) -> dict[tuple[str, int], int]:
    sub = select(H.attr, bucket, H.value).where(*conds).subquery()
    counts: dict[tuple[str, int], set[str]] = {}
    for attr, b, value in session.execute(select(sub.c.attr, sub.c.bucket, sub.c.value)):
        v = value.get("value", value.get("object", value.get("languageMap"))) if isinstance(value, dict) else value
        counts.setdefault((attr, int(b or 0)), set()).add(orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode())
    return {k: len(v) for k, v in counts.items()}


# --- changes to history --------------------------------------------------------------------------------


def instance_pk(instance_id: str) -> int:
    if not instance_id.startswith(INSTANCE_PREFIX) or not instance_id[len(INSTANCE_PREFIX):].isdigit():
        raise ResourceNotFound(f"no attribute instance {instance_id[:120]}")
    return int(instance_id[len(INSTANCE_PREFIX):])


def delete_entity(session: Session, tenant_id: int, entity_id: str) -> None:
    entity_types(session, tenant_id, entity_id)
    session.execute(delete(H).where(H.tenant_id == tenant_id, H.entity_id == entity_id))
    session.execute(delete(TE).where(TE.tenant_id == tenant_id, TE.entity_id == entity_id))


def delete_attr(session: Session, tenant_id: int, entity_id: str, attr: str, *, dataset_id: str | None,
                delete_all: bool) -> None:
    entity_types(session, tenant_id, entity_id)
    conds = [H.tenant_id == tenant_id, H.entity_id == entity_id, H.attr == attr[:512]]
    if not delete_all:
        conds.append(H.dataset_id.is_(None) if dataset_id is None else H.dataset_id == dataset_id)
    if session.execute(delete(H).where(*conds)).rowcount == 0:
        raise ResourceNotFound(f"entity {entity_id} has no history of attribute {attr}")


def modify_instance(session: Session, tenant_id: int, entity_id: str, attr: str, instance_id: str,
                    fragment: dict[str, Any] | None) -> None:
    """Replace (fragment) or delete (None) one attribute instance of the history."""
    pk = instance_pk(instance_id)
    row = session.get(H, pk)
    if row is None or row.tenant_id != tenant_id or row.entity_id != entity_id or row.attr != attr[:512]:
        raise ResourceNotFound(f"no attribute instance {instance_id} of {attr} in {entity_id}")
    if fragment is None:
        session.delete(row)
        return
    value = {**row.value, **{k: v for k, v in fragment.items() if k not in SYSTEM and k != "instanceId"}}
    row.value = value
    row.observed_at = _when(value.get("observedAt"))
    row.modified_at = utcnow()
    row.num = _number(value)


def prune(session: Session, retention_days: dict[str, float], default_days: float | None) -> int:
    """Delete history rows older than the retention of their entity's type; the number deleted."""
    now = utcnow()
    removed = 0
    if not retention_days and default_days is None:
        return 0
    typed = list(session.execute(select(TE.tenant_id, TE.entity_id, TE.types)))
    by_days: dict[float, list[tuple[int, str]]] = {}
    for tid, eid, types in typed:
        days = min((retention_days[t] for t in types if t in retention_days), default=default_days)
        if days is not None:
            by_days.setdefault(days, []).append((tid, eid))
    for days, ents in by_days.items():
        cutoff = now - timedelta(days=days)
        for i in range(0, len(ents), 500):
            chunk = ents[i:i + 500]
            for tid in {t for t, _ in chunk}:
                ids = [e for t, e in chunk if t == tid]
                removed += session.execute(delete(H).where(H.tenant_id == tid, H.entity_id.in_(ids),
                                                           H.modified_at < cutoff)).rowcount or 0
    return removed

