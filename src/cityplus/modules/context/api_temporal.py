"""NGSI-LD temporal API (/ngsi-ld/v1/temporal/...): the history of entities, raw, simplified or aggregated.

Thin over temporal.py: reads select entities as GET /entities does (on their current state) and return each one's
attribute instances in the time range; writes add, change or delete history instances.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cityplus.api.deps import DbSession, get_ctx
from cityplus.core import audit
from cityplus.modules.context import http, jsonld, service, temporal
from cityplus.modules.context.api import build_query, check_attr_name
from cityplus.modules.context.api_common import (
    PREFIX,
    Body,
    EntityId,
    NgsiLdRoute,
    Reader,
    Writer,
    actor_of,
    attrs_param,
    ld_request,
)
from cityplus.modules.context.errors import BadRequestData, InvalidRequest, ResourceNotFound
from cityplus.modules.context.normalize import is_uri
from cityplus.modules.context.runtime import runtime

TEMPORAL_PARAMS = {"timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "aggrMethods", "aggrPeriodDuration"}
READ_PARAMS = TEMPORAL_PARAMS | {"attrs", "options", "format", "lang", "local"}
QUERY_PARAMS = READ_PARAMS | {"id", "idPattern", "type", "q", "scopeQ", "georel", "geometry", "coordinates",
                              "geoproperty", "limit", "offset", "count"}
SIMPLE_MEMBER = {"Property": ("value", "values"), "GeoProperty": ("value", "values"),
                 "Relationship": ("object", "objects"), "LanguageProperty": ("languageMap", "languageMaps"),
                 "VocabProperty": ("vocab", "vocabs"), "JsonProperty": ("json", "jsons"),
                 "ListProperty": ("valueList", "valueLists"), "ListRelationship": ("objectList", "objectLists")}


WRAPPED = frozenset({"LanguageProperty", "VocabProperty", "JsonProperty"})


def _check_params(request: Request, allowed: set[str]) -> None:
    unknown = set(request.query_params) - allowed
    if unknown:
        raise InvalidRequest(f"unknown URL parameter {sorted(unknown)[0]!r}")


def _mode(request: Request) -> tuple[str, bool]:
    opts = {o.strip() for o in request.query_params.get("options", "").split(",") if o.strip()}
    known = {"temporalValues", "aggregatedValues", "sysAttrs", "keyValues", "normalized"}
    if opts - known:
        raise InvalidRequest(f"unknown options: {', '.join(sorted(opts - known))}")
    fmt = request.query_params.get("format")
    if fmt is not None and fmt not in ("normalized", "temporalValues", "simplified", "aggregatedValues"):
        raise InvalidRequest(f"format must be normalized, temporalValues or aggregatedValues, not {fmt[:30]!r}")
    if "aggregatedValues" in opts or fmt == "aggregatedValues":
        return "aggregated", "sysAttrs" in opts
    if opts & {"temporalValues", "keyValues"} or fmt in ("temporalValues", "simplified"):
        return "simplified", "sysAttrs" in opts
    return "normalized", "sysAttrs" in opts


def _temporal_query(request: Request, ld: http.LdRequest, mode: str, given: dict[str, Any] | None = None
                    ) -> temporal.TemporalQuery:
    """The temporal parameters: from the URL, or (POST query) from the body's temporalQ."""
    p = request.query_params
    values = {k: p.get(k) for k in TEMPORAL_PARAMS} if given is None else \
        {k: (None if given.get(k) is None else str(given[k])) for k in TEMPORAL_PARAMS}
    tq = temporal.parse_query(values, ld.active.expand_term,
                              aggregated=mode == "aggregated",
                              max_instances=runtime(get_ctx(request)).settings.max_instances)
    tq.attrs = attrs_param(request, ld)
    return tq


def _representation(session: Any, tenant_id: int, entity_id: str, types: list[str], tq: temporal.TemporalQuery,
                    mode: str, sys_attrs: bool, ld: http.LdRequest) -> tuple[dict[str, Any], temporal.Instances | None]:
    compact = ld.active.compact_iri
    head: dict[str, Any] = {"id": entity_id, "type": compact(types[0]) if len(types) == 1 else
                            [compact(t) for t in types]}
    if mode == "aggregated":
        out = dict(head)
        aggregated = temporal.aggregate(session, tenant_id, entity_id, tq)
        kinds = _kinds(session, tenant_id, entity_id, list(aggregated))
        for name, methods in aggregated.items():
            out[compact(name)] = {"type": kinds.get(name, "Property"), **methods}
        return out, None
    found = temporal.instances(session, tenant_id, entity_id, tq, sys_attrs=sys_attrs)
    if mode == "normalized":
        doc = {"id": entity_id, "type": types[0] if len(types) == 1 else types}
        for name, items in found.attrs.items():
            doc[name] = items
        return jsonld.compact_entity(doc, ld.active), found
    out = dict(head)
    time_key = tq.timeproperty
    for name, items in found.attrs.items():
        kind = items[0].get("type", "Property") if items else "Property"
        member, plural = SIMPLE_MEMBER.get(kind, ("value", "values"))
        pairs = []
        for i in items:
            value = i.get(member)
            if kind == "VocabProperty":
                value = [compact(v) for v in value] if isinstance(value, list) else compact(str(value))
            if kind in WRAPPED:  # values that are objects themselves are wrapped in their member (§4.5.9)
                value = {member: value}
            pairs.append([value, i.get(time_key) if time_key == "observedAt" else i.get("modifiedAt")])
        out[compact(name)] = {"type": kind, plural: pairs}
    return out, found


def _kinds(session: Any, tenant_id: int, entity_id: str, names: list[str]) -> dict[str, str]:
    return {n: temporal.attribute_type(session, tenant_id, entity_id, n) for n in names}


def _range_headers(found: list[temporal.Instances]) -> tuple[int, dict[str, str]]:
    cut = [f for f in found if f is not None and f.truncated]
    if not cut:
        return 200, {}
    first = min(f.first for f in cut if f.first is not None)
    last = max(f.last for f in cut if f.last is not None)
    return 206, {"Content-Range": f"date-time {temporal._iso(first)}-{temporal._iso(last)}/*"}


def _types_of(session: Any, t: Any, entity_id: str) -> list[str]:
    """The entity's types from its temporal representation (404 when it has none, e.g. after DELETE)."""
    return temporal.entity_types(session, t.id, entity_id)


def _split_instances(raw: Any, ld: http.LdRequest, *, require_id: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A temporal entity body: its head (id, type, scope) and every attribute's instances, each validated and
    expanded on its own (a temporal attribute is a list of instances of one attribute at different times)."""
    if not isinstance(raw, dict):
        raise BadRequestData("a temporal entity must be a JSON object")
    raw = {k: v for k, v in raw.items() if k != "@context"}
    head = service.expand_compact({k: raw[k] for k in ("id", "type", "scope") if k in raw}, ld.active,
                                  require_id=require_id, require_type=require_id)
    attrs: dict[str, list[Any]] = {}
    for name, value in raw.items():
        if name in ("id", "type", "scope"):
            continue
        for inst in value if isinstance(value, list) else [value]:
            one = service.expand_compact({name: inst}, ld.active, require_id=False, require_type=False)
            for key, v in one.items():
                attrs.setdefault(key, []).extend(v if isinstance(v, list) else [v])
    if not attrs and require_id:
        raise BadRequestData("a temporal entity needs at least one attribute instance")
    return head, attrs


def _latest(attrs: dict[str, list[Any]]) -> dict[str, Any]:
    """The newest instance per attribute and datasetId (the entity's current state after a temporal create)."""
    out: dict[str, Any] = {}
    for name, items in attrs.items():
        best: dict[Any, Any] = {}
        for inst in items:
            key = inst.get("datasetId")
            when = inst.get("observedAt") or ""
            if key not in best or when >= (best[key].get("observedAt") or ""):
                best[key] = inst
        chosen = list(best.values())
        out[name] = chosen[0] if len(chosen) == 1 else chosen
    return out


def router() -> APIRouter:
    r = APIRouter(prefix=f"{PREFIX}/temporal", tags=["ngsi-ld"], route_class=NgsiLdRoute)

    @r.get("/entities/{entity_id}", operation_id="ngsild_temporal_get_entity")
    def get_temporal_entity(request: Request, principal: Reader, entity_id: EntityId, session: DbSession
                            ) -> Response:
        """The temporal evolution of one entity (options=temporalValues or aggregatedValues)."""
        _check_params(request, READ_PARAMS)
        ld = ld_request(request)
        mode, sys_attrs = _mode(request)
        tq = _temporal_query(request, ld, mode)
        t = service.tenant(session, http.tenant_of(request), create=False)
        types = _types_of(session, t, entity_id)
        doc, found = _representation(session, t.id, entity_id, types, tq, mode, sys_attrs, ld)
        if tq.attrs is not None and not any(k not in ("id", "type", "@context") for k in doc):
            names = ", ".join(map(ld.active.compact_iri, tq.attrs))
            raise ResourceNotFound(f"entity {entity_id} has no history of {names}")
        status, headers = _range_headers([found] if found else [])
        return http.ld_response(doc, ld, status=status, headers=headers)

    def _query(request: Request, session: Any, ld: http.LdRequest, selectors: dict[str, Any],
               attrs: list[str] | None, limit: int, offset: int, count: bool,
               temporal_q: dict[str, Any] | None = None) -> Response:
        mode, sys_attrs = _mode(request)
        tq = _temporal_query(request, ld, mode, temporal_q)
        if attrs is not None:
            tq.attrs = attrs
        query = build_query(ld, selectors, None, limit, offset, count)
        page, total = service.query_entities(session, http.tenant_of(request), query)
        t = service.tenant(session, http.tenant_of(request), create=False)
        kept = temporal.with_history(session, t.id, [e.entity_id for e in page])
        docs, found = [], []
        for ent in page:
            if ent.entity_id not in kept:  # an entity whose temporal representation was deleted
                continue
            doc, f = _representation(session, t.id, ent.entity_id, list(ent.types), tq, mode, sys_attrs, ld)
            docs.append(doc)
            found.append(f)
        status, headers = _range_headers(found)
        if total is not None:
            headers["NGSILD-Results-Count"] = str(total)
        return http.ld_response(docs, ld, status=status, headers=headers)

    @r.get("/entities", operation_id="ngsild_temporal_query")
    def query_temporal(request: Request, principal: Reader, session: DbSession) -> Response:
        """The temporal evolution of the entities a query selects (type, id, idPattern, q, geo-query)."""
        _check_params(request, QUERY_PARAMS)
        ld = ld_request(request)
        p = request.query_params
        rt = runtime(get_ctx(request))
        limit = http.int_param(request, "limit", rt.settings.default_limit)
        service.check_limit(limit, rt.settings.max_limit)
        selectors = {k: p.get(k) for k in ("id", "idPattern", "type", "q", "scopeQ", "georel", "geometry",
                                           "coordinates", "geoproperty")}
        if not any(selectors.values()) and p.get("attrs") is None:
            raise BadRequestData("name at least one of type, id, idPattern, attrs, q, geometry or scopeQ")
        return _query(request, session, ld, selectors, attrs_param(request, ld), limit,
                      http.int_param(request, "offset", 0), http.bool_param(request, "count"))

    @r.post("/entityOperations/query", operation_id="ngsild_temporal_query_post")
    def query_temporal_post(request: Request, principal: Reader, body: Body, session: DbSession) -> Response:
        """POST form of the temporal query: a Query body with temporalQ."""
        _check_params(request, {"limit", "offset", "count", "options", "format", "lang"})
        raw = body[0]
        if not isinstance(raw, dict) or raw.get("type") != "Query":
            raise BadRequestData("the body must be a Query object (type: Query)")
        ld = ld_request(request, *body)
        rt = runtime(get_ctx(request))
        limit = http.int_param(request, "limit", rt.settings.default_limit)
        service.check_limit(limit, rt.settings.max_limit)
        selectors: dict[str, Any] = {"q": raw.get("q"), "scopeQ": raw.get("scopeQ")}
        ents = raw.get("entities") or []
        if not isinstance(ents, list):
            raise BadRequestData("entities must be an array")
        if ents:
            e = ents[0]
            selectors.update({"id": e.get("id"), "idPattern": e.get("idPattern"), "type": e.get("type")})
        geo = raw.get("geoQ")
        if isinstance(geo, dict):
            selectors.update({k: geo.get(k) for k in ("georel", "geometry", "coordinates", "geoproperty")})
        temporal_q = raw.get("temporalQ") or {}
        if not isinstance(temporal_q, dict):
            raise BadRequestData("temporalQ must be an object")
        unknown = set(temporal_q) - TEMPORAL_PARAMS
        if unknown:
            raise BadRequestData(f"temporalQ: unknown member {sorted(unknown)[0]!r}")
        if "lastN" in temporal_q and (isinstance(temporal_q["lastN"], bool) or
                                      not isinstance(temporal_q["lastN"], int)):
            raise BadRequestData("temporalQ.lastN must be a positive integer")
        attrs = raw.get("attrs")
        if attrs is not None and (not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs)):
            raise BadRequestData("attrs must be an array of attribute names")
        expanded = [ld.active.expand_term(a) for a in attrs] if attrs else None
        return _query(request, session, ld, selectors, expanded, limit, http.int_param(request, "offset", 0),
                      http.bool_param(request, "count"), temporal_q)

    @r.post("/entities", operation_id="ngsild_temporal_create")
    def create_temporal(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Create or extend an entity's temporal evolution; a new entity also gets its latest instances as state."""
        _check_params(request, set())
        ld = ld_request(request, *body)
        head, attrs = _split_instances(body[0], ld, require_id=True)
        t = service.tenant(session, http.tenant_of(request), create=True)
        entity_id = head["id"]
        created = not temporal.with_history(session, t.id, [entity_id])  # 201: a new temporal representation
        try:
            service.get_entity(session, t.name or None, entity_id)
            temporal.add_instances(session, t.id, entity_id, head["type"], attrs)
        except ResourceNotFound:
            latest = _latest(attrs)
            service.create_entity(session, t.name or None, {**head, **latest})
            rest = {n: [i for i in items if i is not _pick(latest[n], i)] for n, items in attrs.items()}
            temporal.add_instances(session, t.id, entity_id, head["type"], {n: v for n, v in rest.items() if v})
        audit.append(session, actor_of(principal), "context.temporal_write", "ngsi_ld_entity", entity_id,
                     {"tenant": t.name, "instances": sum(len(v) for v in attrs.values())})
        if created:
            location = quote(entity_id, safe=":/@!$&'()*+,;=-._~")
            return Response(status_code=201, headers={"Location": f"{PREFIX}/temporal/entities/{location}",
                                                      **http.tenant_header(ld)})
        return Response(status_code=204, headers=http.tenant_header(ld))

    @r.post("/entities/{entity_id}/attrs", status_code=204, operation_id="ngsild_temporal_append")
    def append_temporal(request: Request, principal: Writer, body: Body, entity_id: EntityId, session: DbSession
                        ) -> Response:
        """Add attribute instances to an entity's history."""
        _check_params(request, set())
        ld = ld_request(request, *body)
        _, attrs = _split_instances(body[0], ld, require_id=False)
        if not attrs:
            raise BadRequestData("no attribute instances given")
        t = service.tenant(session, http.tenant_of(request), create=False)
        _types_of(session, t, entity_id)
        temporal.add_instances(session, t.id, entity_id, None, attrs)
        audit.append(session, actor_of(principal), "context.temporal_write", "ngsi_ld_entity", entity_id,
                     {"tenant": t.name, "instances": sum(len(v) for v in attrs.values())})
        return Response(status_code=204, headers=http.tenant_header(ld))

    @r.delete("/entities/{entity_id}", status_code=204, operation_id="ngsild_temporal_delete")
    def delete_temporal(request: Request, principal: Writer, entity_id: EntityId, session: DbSession) -> Response:
        """Delete an entity's temporal evolution (its current state is not touched)."""
        _check_params(request, set())
        ld = ld_request(request)
        t = service.tenant(session, http.tenant_of(request), create=False)
        temporal.delete_entity(session, t.id, entity_id)
        audit.append(session, actor_of(principal), "context.temporal_delete", "ngsi_ld_entity", entity_id,
                     {"tenant": t.name})
        return Response(status_code=204, headers=http.tenant_header(ld))

    @r.delete("/entities/{entity_id}/attrs/{attr}", status_code=204, operation_id="ngsild_temporal_delete_attr")
    def delete_temporal_attr(attr: str, request: Request, principal: Writer, entity_id: EntityId,
                             session: DbSession) -> Response:
        """Delete the history of one attribute (default instances, one datasetId, or deleteAll=true)."""
        _check_params(request, {"datasetId", "deleteAll"})
        ld = ld_request(request)
        dataset = request.query_params.get("datasetId")
        if dataset is not None and not is_uri(dataset):
            raise BadRequestData("datasetId must be a URI")
        check_attr_name(attr)
        t = service.tenant(session, http.tenant_of(request), create=False)
        temporal.delete_attr(session, t.id, entity_id, ld.active.expand_term(attr), dataset_id=dataset,
                             delete_all=http.bool_param(request, "deleteAll"))
        audit.append(session, actor_of(principal), "context.temporal_delete", "ngsi_ld_entity", entity_id,
                     {"tenant": t.name, "attr": attr})
        return Response(status_code=204, headers=http.tenant_header(ld))

    @r.patch("/entities/{entity_id}/attrs/{attr}/{instance_id}", status_code=204,
             operation_id="ngsild_temporal_patch_instance")
    def patch_instance(attr: str, instance_id: str, request: Request, principal: Writer, body: Body,
                       entity_id: EntityId, session: DbSession) -> Response:
        """Change one instance of an attribute's history."""
        _check_params(request, set())
        check_attr_name(attr)
        _check_instance_id(instance_id)
        ld = ld_request(request, *body)
        raw = body[0]
        if not isinstance(raw, dict):
            raise BadRequestData("the body must be an attribute fragment")
        name = ld.active.expand_term(attr)
        value = raw.get(attr, raw)
        fragment = service.expand_compact({attr: value}, ld.active, require_id=False, require_type=False)[name]
        if isinstance(fragment, list):
            raise BadRequestData("give one instance")
        t = service.tenant(session, http.tenant_of(request), create=False)
        temporal.modify_instance(session, t.id, entity_id, name, instance_id, fragment)
        audit.append(session, actor_of(principal), "context.temporal_write", "ngsi_ld_entity", entity_id,
                     {"tenant": t.name, "instance": instance_id})
        return Response(status_code=204, headers=http.tenant_header(ld))

    @r.delete("/entities/{entity_id}/attrs/{attr}/{instance_id}", status_code=204,
              operation_id="ngsild_temporal_delete_instance")
    def delete_instance(attr: str, instance_id: str, request: Request, principal: Writer, entity_id: EntityId,
                        session: DbSession) -> Response:
        """Delete one instance of an attribute's history."""
        _check_params(request, set())
        check_attr_name(attr)
        _check_instance_id(instance_id)
        ld = ld_request(request)
        t = service.tenant(session, http.tenant_of(request), create=False)
        temporal.modify_instance(session, t.id, entity_id, ld.active.expand_term(attr), instance_id, None)
        audit.append(session, actor_of(principal), "context.temporal_delete", "ngsi_ld_entity", entity_id,
                     {"tenant": t.name, "instance": instance_id})
        return Response(status_code=204, headers=http.tenant_header(ld))

    @r.api_route("/entities//attrs", methods=["POST"], include_in_schema=False)
    @r.api_route("/entities//attrs/{attr}", methods=["DELETE"], include_in_schema=False)
    @r.api_route("/entities//attrs/{attr}/{instance_id}", methods=["PATCH", "DELETE"], include_in_schema=False)
    @r.api_route("/entities/{entity_id}/attrs//{instance_id}", methods=["PATCH", "DELETE"], include_in_schema=False)
    def missing_path_member(request: Request, principal: Writer) -> Response:
        """A temporal operation whose path lacks the entity id, attribute name or instance id (400, not 404)."""
        raise BadRequestData("the entity id, attribute name or instance id is missing from the path")

    return r


def _check_instance_id(instance_id: str) -> None:
    if not is_uri(instance_id):
        raise BadRequestData(f"instanceId must be a URI, not {instance_id[:80]!r}")


def _pick(latest: Any, inst: Any) -> Any:
    """The instance object of `latest` that is `inst` itself (identity), or None."""
    for item in latest if isinstance(latest, list) else [latest]:
        if item is inst:
            return item
    return None

