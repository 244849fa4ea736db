"""URL parameters of the NGSI-LD API: which ones each operation defines, and the pick/omit/join grammar.

GS CIM 009 v1.8 §6.3.20: a query parameter the operation does not define is an InvalidRequest (400). The pick and
omit projections (§4.21) name entity members and attributes separated by ',' or '|'; `attr{...}` selects members of
the entity that a Relationship links to, which only has a meaning with `join` (§4.5.23) and at most `joinLevel` hops.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from cityplus.modules.context.errors import BadRequestData, InvalidRequest

# Entity members that pick/omit may name besides attributes.
ENTITY_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt"})
MAX_JOIN_LEVEL = 10
MAX_PROJECTION_LENGTH = 4096
_PROJECTION_NAME = re.compile(r"[^\s,|{}()\[\];=<>\"'!]+")

_QUERY = {"id", "idPattern", "type", "attrs", "pick", "omit", "q", "scopeQ", "georel", "geometry", "coordinates",
          "geoproperty", "geometryProperty", "lang", "options", "format", "limit", "offset", "count", "local", "csf",
          "join", "joinLevel", "containedBy", "datasetId", "entityMap", "orderBy", "collation", "orderFrom"}
_RETRIEVE = {"type", "attrs", "pick", "omit", "geometryProperty", "lang", "options", "format", "local", "join",
             "joinLevel", "containedBy", "datasetId", "entityMap"}
ALLOWED: dict[str, frozenset[str]] = {
    "query": frozenset(_QUERY),
    "retrieve": frozenset(_RETRIEVE),
    "create": frozenset({"local"}),
    "replace": frozenset({"type", "local", "options"}),
    "merge": frozenset({"type", "local", "options"}),
    "delete": frozenset({"type", "local"}),
    "purge": frozenset({"type", "id", "idPattern", "q", "scopeQ", "georel", "geometry", "coordinates", "geoproperty",
                        "local"}),
    "append": frozenset({"type", "local", "options"}),
    "update": frozenset({"type", "local", "options"}),
    "attr_patch": frozenset({"type", "local", "options"}),
    "attr_replace": frozenset({"type", "local", "options"}),
    "attr_delete": frozenset({"type", "local", "datasetId", "deleteAll"}),
    "types": frozenset({"details", "local"}),
    "type": frozenset({"local"}),
    "attributes": frozenset({"details", "local"}),
    "attribute": frozenset({"local"}),
}


def check_known(request: Request, operation: str) -> None:
    """400 InvalidRequest for a query parameter the operation does not define, or one given twice."""
    allowed = ALLOWED[operation]
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in allowed:
            raise InvalidRequest(f"unknown query parameter {name[:64]!r} for this operation; "
                                 f"allowed: {', '.join(sorted(allowed)) or 'none'}")
        if name in seen:
            raise InvalidRequest(f"query parameter {name!r} is given more than once")
        seen.add(name)


def known_params(operation: str) -> Any:
    """A route dependency that runs check_known before the body and the entity are looked at."""

    def dependency(request: Request) -> None:
        check_known(request, operation)

    return dependency


# --- pick / omit ---------------------------------------------------------------------------------------------


@dataclass
class Projection:
    """A parsed pick or omit: member name -> nested projection of the linked entity (None: the member itself)."""

    members: dict[str, Projection | None] = field(default_factory=dict)

    def depth(self) -> int:
        """How many Relationship hops the projection reaches into (0: the entity's own members only)."""
        return max((1 + sub.depth() for sub in self.members.values() if sub is not None), default=0)

    def names(self) -> set[str]:
        return set(self.members)


def parse_projection(param: str, text: str) -> Projection:
    """Parse `name(,|name)*` where a name may carry `{...}` (same grammar, nested); BadRequestData on errors."""
    if len(text) > MAX_PROJECTION_LENGTH:
        raise BadRequestData(f"{param} is longer than {MAX_PROJECTION_LENGTH} characters")
    proj, pos = _projection(param, text, 0, 0)
    if pos != len(text):
        raise BadRequestData(f"{param}: unexpected {text[pos]!r} at position {pos} (unbalanced '}}'?)")
    return proj


def _projection(param: str, text: str, pos: int, depth: int) -> tuple[Projection, int]:
    proj = Projection()
    while True:
        m = _PROJECTION_NAME.match(text, pos)
        if m is None:
            found = repr(text[pos]) if pos < len(text) else "the end"
            raise BadRequestData(f"{param}: expected an entity member or attribute name at position {pos}, "
                                 f"found {found}")
        name, pos = m.group(), m.end()
        sub: Projection | None = None
        if pos < len(text) and text[pos] == "{":
            if depth + 1 > MAX_JOIN_LEVEL:
                raise BadRequestData(f"{param}: linked entity selections nest deeper than {MAX_JOIN_LEVEL} levels")
            sub, pos = _projection(param, text, pos + 1, depth + 1)
            if pos >= len(text) or text[pos] != "}":
                raise BadRequestData(f"{param}: '{{' after {name!r} is not closed")
            pos += 1
        if name in proj.members and (proj.members[name] is None) != (sub is None):
            raise BadRequestData(f"{param}: {name!r} is named twice in different forms")
        proj.members[name] = sub
        if pos < len(text) and text[pos] in ",|":
            pos += 1
            continue
        if pos < len(text) and text[pos] not in "}":
            raise BadRequestData(f"{param}: unexpected {text[pos]!r} at position {pos}")
        if pos < len(text) and depth == 0:
            raise BadRequestData(f"{param}: unexpected '}}' at position {pos}")
        return proj, pos


@dataclass
class Join:
    """Linked entity retrieval (§4.5.23): 'inline' or 'flat', and how many Relationship hops to follow."""

    mode: str
    level: int


@dataclass
class Shape:
    """pick, omit and join of one request, checked against each other."""

    pick: Projection | None = None
    omit: Projection | None = None
    join: Join | None = None


def shape_params(request: Request, *, attrs_given: bool) -> Shape:
    """Parse and cross-check pick, omit, join and joinLevel (400 BadRequestData for any contradiction)."""
    return shape_from(request.query_params, attrs_given=attrs_given)


def shape_from(p: Mapping[str, str], *, attrs_given: bool) -> Shape:
    """shape_params on any mapping of the four members as URL parameter strings (the batch Query body too)."""
    pick = parse_projection("pick", p["pick"]) if "pick" in p else None
    omit = parse_projection("omit", p["omit"]) if "omit" in p else None
    if attrs_given and (pick is not None or omit is not None):
        raise BadRequestData("attrs cannot be combined with pick or omit (pick replaces attrs)")
    if pick is not None and omit is not None:
        both = pick.names() & omit.names()
        if both:
            raise BadRequestData(f"{', '.join(sorted(both))} named in both pick and omit")
    join = None
    mode = p.get("join")
    if mode is not None and mode not in ("inline", "flat", "@none"):
        raise BadRequestData(f"join must be 'inline', 'flat' or '@none', not {mode[:32]!r}")
    level_raw = p.get("joinLevel")
    level = 1
    if level_raw is not None:
        if not re.fullmatch(r"\d{1,6}", level_raw) or int(level_raw) < 1:
            raise BadRequestData(f"joinLevel must be a positive integer, not {level_raw[:32]!r}")
        level = int(level_raw)
        if level > MAX_JOIN_LEVEL:
            raise BadRequestData(f"joinLevel {level} exceeds the maximum of {MAX_JOIN_LEVEL}")
    if mode in ("inline", "flat"):
        join = Join(mode, level)
    depth = max(pick.depth() if pick else 0, omit.depth() if omit else 0)
    if depth and join is None:
        raise BadRequestData("pick/omit select members of linked entities ('{...}'), which needs join=inline|flat")
    if join is not None and depth > join.level:
        raise BadRequestData(f"pick/omit reach {depth} linked entity levels deep but joinLevel is {join.level}")
    return Shape(pick, omit, join)


def project(doc: dict[str, Any], shape_pick: Projection | None, shape_omit: Projection | None) -> dict[str, Any]:
    """Apply pick and omit to one entity's top-level members (nested selections keep the member itself)."""
    out = doc
    if shape_pick is not None:
        out = {k: v for k, v in out.items() if k in shape_pick.members or k == "@context"}
    if shape_omit is not None:
        out = {k: v for k, v in out.items() if k not in shape_omit.members or shape_omit.members[k] is not None}
    return out


def sub_projection(proj: Projection | None, name: str) -> Projection | None:
    """The projection that applies to the entity linked by attribute `name`."""
    return proj.members.get(name) if proj is not None else None
