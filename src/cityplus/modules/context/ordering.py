"""Ordering of query results (`orderBy`, `collation`, `orderFrom`; NGSI-LD v1.9.1 §4.23, OrderingParams §5.2.43).

`orderBy` is a comma-separated list of items `path[;asc|desc|dist-asc|dist-desc]`. A path names an entity member
(`id`, `type`, `createdAt`, `modifiedAt`) or an attribute, then optionally its sub-attributes or members with `.`
(`name.subProperty`, `name.createdAt`) and a member of a compound value with `[…]` (`address[city]`). Values of
different datatypes rank Numbers < Strings < Booleans < other JSON; entities without the value come last in either
direction. Strings compare by code point unless a `collation` (a BCP 47 tag) asks for the Unicode Collation
Algorithm (pyuca's DUCET, i.e. the root collation; language tailorings are not applied). `dist-asc`/`dist-desc`
order by the distance of a GeoProperty from the reference geometry `orderFrom` (a Point by default).

Sorting needs the whole result set: the matching entities are read (at most MAX_SORTED of them, else 403
TooManyResults) and paged after sorting. Queries without orderBy take the usual paged SQL path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from sqlalchemy.orm import Session

from cityplus.modules.context import geo as geomod
from cityplus.modules.context import service
from cityplus.modules.context.errors import BadRequestData, TooManyResults

MAX_SORTED = 10_000
DIRECTIONS = ("asc", "desc", "dist-asc", "dist-desc")
ENTITY_MEMBERS = ("id", "type", "createdAt", "modifiedAt")
INSTANCE_MEMBERS = frozenset({"createdAt", "modifiedAt", "observedAt", "unitCode", "datasetId", "value", "object",
                              "languageMap", "vocab", "json", "valueList", "objectList"})
_BCP47 = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
_PATH = re.compile(r"([^\s\[\];,.]+(?:\.[^\s\[\];,.]+)*)((?:\[[^\s\[\];,]+\])*)")
_ABSENT = object()


@dataclass(frozen=True)
class OrderItem:
    members: tuple[str, ...]  # expanded attribute / sub-attribute names, or an entity member
    compound: tuple[str, ...]  # keys into a compound value
    direction: str


@dataclass(frozen=True)
class Ordering:
    items: tuple[OrderItem, ...]
    collation: str | None = None
    origin: Any = None  # shapely geometry for dist-asc/dist-desc


def parse(order_by: Any, collation: Any, coordinates: Any, geometry: Any, expand: Callable[[str], str]
          ) -> Ordering | None:
    """The Ordering asked for (None without orderBy); BadRequestData names what is wrong."""
    if order_by is None:
        if collation is not None or coordinates is not None:
            raise BadRequestData("collation and orderFrom only apply with orderBy")
        return None
    texts = order_by if isinstance(order_by, list) else [order_by]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequestData("orderBy must be a string (or, in a Query body, an array of strings)")
    items = []
    for text in texts:
        for part in text.split(","):
            items.append(_item(part.strip(), expand))
    if collation is not None and (not isinstance(collation, str) or not _BCP47.fullmatch(collation)):
        raise BadRequestData(f"collation must be a BCP 47 language tag (e.g. und, de), not {str(collation)[:40]!r}")
    origin = None
    if any(i.direction.startswith("dist") for i in items):
        if coordinates is None:
            raise BadRequestData("ordering by distance (dist-asc, dist-desc) needs the reference coordinates "
                                 "(orderFrom)")
        origin = _origin(coordinates, geometry)
    return Ordering(tuple(items), collation, origin)


def _item(text: str, expand: Callable[[str], str]) -> OrderItem:
    path, _, direction = text.partition(";")
    direction = direction.strip() or "asc"
    if direction not in DIRECTIONS:
        raise BadRequestData(f"orderBy: unknown direction {direction[:20]!r} (asc, desc, dist-asc, dist-desc)")
    m = _PATH.fullmatch(path.strip())
    if m is None:
        raise BadRequestData(f"orderBy: invalid path {path[:80]!r}")
    names = m.group(1).split(".")
    compound = tuple(re.findall(r"\[([^\]]+)\]", m.group(2)))
    if names[0] in ENTITY_MEMBERS:
        if len(names) > 1 or compound:
            raise BadRequestData(f"orderBy: {names[0]} has no members")
        members = (names[0],)
    else:
        members = (expand(names[0]), *(n if n in INSTANCE_MEMBERS else expand(n) for n in names[1:]))
    if direction.startswith("dist") and (names[0] in ENTITY_MEMBERS or len(members) > 1 or compound):
        raise BadRequestData("orderBy: dist-asc/dist-desc apply to a GeoProperty")
    return OrderItem(members, compound, direction)


def _origin(coordinates: Any, geometry: Any) -> Any:
    if isinstance(coordinates, str):
        try:
            coordinates = json.loads(coordinates)
        except ValueError:
            raise BadRequestData("orderFrom must be a JSON array of coordinates, e.g. [8,40]") from None
    if not isinstance(coordinates, list):
        raise BadRequestData("the ordering coordinates must be a JSON array")
    gtype = geometry if geometry is not None else "Point"
    if not isinstance(gtype, str):
        raise BadRequestData("the ordering geometry must be a string (a GeoJSON geometry type)")
    try:
        return geomod.build_geometry(gtype, coordinates, "orderFrom")
    except geomod.GeoQueryError as exc:
        raise BadRequestData(str(exc)) from None


def query_sorted(session: Session, tenant: str | None, query: service.EntityQuery, ordering: Ordering
                 ) -> tuple[list[Any], int | None]:
    """service.query_entities, ordered: every match is read (at most MAX_SORTED), sorted, then paged."""
    everything, _ = service.query_entities(session, tenant, replace(query, offset=0, limit=MAX_SORTED + 1,
                                                                     count=False))
    if len(everything) > MAX_SORTED:
        raise TooManyResults(f"orderBy sorts at most {MAX_SORTED} entities; narrow the query")
    ordered = sort(everything, ordering)
    return ordered[query.offset:query.offset + query.limit], (len(ordered) if query.count else None)


def sort(entities: Sequence[Any], ordering: Ordering) -> list[Any]:
    """The entities in the order asked for (stable: ties keep storage order)."""
    out = list(entities)
    for item in reversed(ordering.items):  # least significant first; Python's sort is stable
        keyed = [(_value(e, item, ordering), e) for e in out]
        present = [(k, e) for k, e in keyed if k is not _ABSENT]
        present.sort(key=lambda ke: ke[0], reverse=item.direction in ("desc", "dist-desc"))
        out = [e for _, e in present] + [e for k, e in keyed if k is _ABSENT]
    return out


def _value(ent: Any, item: OrderItem, ordering: Ordering) -> Any:
    first = item.members[0]
    if first == "id":
        raw: Any = ent.entity_id
    elif first == "type":
        raw = ent.types[0] if ent.types else _ABSENT
    elif first in ("createdAt", "modifiedAt") and len(item.members) == 1:
        raw = getattr(ent, "created_at" if first == "createdAt" else "modified_at").isoformat()
    else:
        raw = _attribute_value(ent.attrs.get(first, _ABSENT), item.members[1:])
        for key in item.compound:
            raw = raw.get(key, _ABSENT) if isinstance(raw, dict) else _ABSENT
    if raw is _ABSENT or raw is None:
        return _ABSENT
    if item.direction.startswith("dist"):
        try:
            return (0, geomod.distance_m(ordering.origin, geomod.geometry_from_geojson(raw)))
        except geomod.GeoQueryError:
            return _ABSENT
    return _rank(raw, ordering.collation)


def _attribute_value(attr: Any, path: tuple[str, ...]) -> Any:
    """The value of an attribute (its default instance) or of a sub-attribute / member along `path`."""
    inst = _default(attr)
    for i, step in enumerate(path):
        if inst is None:
            return _ABSENT
        if step in INSTANCE_MEMBERS:
            return inst.get(step, _ABSENT) if i == len(path) - 1 else _ABSENT
        inst = _default(inst.get(step, _ABSENT))
    if inst is None:
        return _ABSENT
    return inst.get(_VALUE_MEMBER.get(inst.get("type", ""), "value"), _ABSENT)


def _default(attr: Any) -> dict[str, Any] | None:
    """The default instance of an attribute (the one without datasetId), else its first instance."""
    instances = attr if isinstance(attr, list) else [attr]
    dicts = [x for x in instances if isinstance(x, dict)]
    return next((x for x in dicts if "datasetId" not in x), dicts[0] if dicts else None)


_VALUE_MEMBER = {"Property": "value", "GeoProperty": "value", "Relationship": "object", "LanguageProperty":
                 "languageMap", "VocabProperty": "vocab", "ListProperty": "valueList", "ListRelationship":
                 "objectList", "JsonProperty": "json"}


def _rank(value: Any, collation: str | None) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, _collator().sort_key(value) if collation else value)
    return (3, json.dumps(value, sort_keys=True, ensure_ascii=False))


@cache
def _collator() -> Any:
    import pyuca  # the DUCET tables load once, on first use

    return pyuca.Collator()
