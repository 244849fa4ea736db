"""NGSI-LD batch operations (/entityOperations/*): each entity succeeds or fails alone."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from cityplus.api.deps import DbSession, get_ctx
from cityplus.core import audit
from cityplus.modules.context import http, jsonld, ordering, params, service
from cityplus.modules.context.api import build_query, join_roots, restrict_to_open_types
from cityplus.modules.context.api_common import (
    PREFIX,
    Body,
    Reader,
    Writer,
    actor_of,
    expand_entity,
    ld_request,
    render,
)
from cityplus.modules.context.errors import BadRequestData, NgsiLdError
from cityplus.modules.context.normalize import is_uri, reject_nulls
from cityplus.modules.context.runtime import runtime

MAX_BATCH = 10_000


def _problem(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, NgsiLdError):
        return {"type": exc.type_uri, "title": exc.title, "status": exc.status, "detail": exc.detail}
    return {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "BadRequestData", "status": 400,
            "detail": str(exc)}


def _entities(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise BadRequestData("the body must be a JSON array of entities")
    if not body:
        raise BadRequestData("the batch is empty: give at least one entity")
    if len(body) > MAX_BATCH:
        raise BadRequestData(f"at most {MAX_BATCH} entities per batch")
    nulls = [i for i, item in enumerate(body) if item is None]
    if nulls:  # a null is not an entity that fails alone but a malformed request
        raise BadRequestData(f"the batch holds null at position(s) {', '.join(map(str, nulls[:10]))}")
    return body


def _result(res: service.BatchResult, *, ok_status: int, ok_body: Any = None) -> Response:
    if not res.errors:
        return JSONResponse(ok_body, status_code=ok_status) if ok_body is not None else Response(status_code=ok_status)
    return JSONResponse({"success": res.success,
                         "errors": [{"entityId": eid, "error": _problem(exc)} for eid, exc in res.errors]},
                        status_code=207)


def router() -> APIRouter:
    r = APIRouter(prefix=f"{PREFIX}/entityOperations", tags=["ngsi-ld"])

    def _run(request: Request, session: Session, body: tuple[Any, str], op: str, *, require_type: bool = True
             ) -> service.BatchResult:
        """Expand each entity (a bad one fails alone), then apply the operation to the rest, set-based."""
        shared = ld_request(request, None, http.JSON) if body[1] == http.JSON else None
        if shared is None and _context_link(request):
            # §6.3.5: application/ld+json carries the @context in the body; a Link header as well is an error of
            # the whole request, not of each entity.
            raise BadRequestData("a JSON-LD Link header is not allowed with Content-Type application/ld+json")
        failed: list[tuple[str, Exception]] = []
        entities: list[dict[str, Any]] = []
        for raw in _entities(body[0]):
            try:
                if shared is not None and isinstance(raw, dict) and "@context" in raw:
                    raise BadRequestData("an entity sent as application/json cannot carry an @context "
                                         "(use application/ld+json, or a Link header)")
                # application/ld+json batches carry an @context in every element.
                ld = shared or ld_request(request, raw, http.JSONLD)
                entity = expand_entity(raw, ld, require_type=require_type)
                if op == "create":
                    reject_nulls(entity)
                entities.append(entity)
            except NgsiLdError as exc:
                failed.append((str(raw.get("id") if isinstance(raw, dict) else raw), exc))
        res = service.batch_write(session, http.tenant_of(request), op, entities)
        res.errors = failed + res.errors
        return res

    @r.post("/create", operation_id="ngsild_batch_create")
    def batch_create(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Create entities; 201 with their ids, or 207 listing successes and errors."""
        res = _run(request, session, body, "create")
        _audit(session, principal, "create", res, http.tenant_of(request))
        return _result(res, ok_status=201, ok_body=res.success)

    @r.post("/upsert", operation_id="ngsild_batch_upsert")
    def batch_upsert(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Create or update entities (options=update appends, default replaces)."""
        opts, _ = http.options(request)
        res = _run(request, session, body, "upsert_update" if "update" in opts else "upsert")
        _audit(session, principal, "upsert", res, http.tenant_of(request))
        if res.errors:
            return _result(res, ok_status=204)
        return JSONResponse(res.created, status_code=201) if res.created else Response(status_code=204)

    @r.post("/update", operation_id="ngsild_batch_update")
    def batch_update(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Update attributes of existing entities (options=noOverwrite keeps existing attributes)."""
        opts, _ = http.options(request)
        res = _run(request, session, body, "update_no_overwrite" if "noOverwrite" in opts else "update",
                   require_type=False)
        _audit(session, principal, "update", res, http.tenant_of(request))
        return _result(res, ok_status=204)

    @r.post("/merge", operation_id="ngsild_batch_merge")
    def batch_merge(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Merge-patch existing entities."""
        res = _run(request, session, body, "merge", require_type=False)
        _audit(session, principal, "merge", res, http.tenant_of(request))
        return _result(res, ok_status=204)

    @r.post("/delete", operation_id="ngsild_batch_delete")
    def batch_delete(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Delete entities by id."""
        tenant = http.tenant_of(request)
        invalid: list[tuple[str, Exception]] = []
        valid = []
        for eid in _entities(body[0]):
            if is_uri(eid):
                valid.append(eid)
            else:
                invalid.append((str(eid), BadRequestData(f"{eid!r} is not an entity id (URI)")))
        res = service.batch_write(session, tenant, "delete", valid)
        res.errors = invalid + res.errors
        _audit(session, principal, "delete", res, tenant)
        return _result(res, ok_status=204)

    @r.post("/query", operation_id="ngsild_batch_query")
    def batch_query(request: Request, principal: Reader, body: Body, session: DbSession) -> Response:
        """Query entities with a Query object in the body (same semantics as GET /entities)."""
        data = body[0]
        if not isinstance(data, dict) or data.get("type") != "Query":
            raise BadRequestData("the body must be a Query object with \"type\": \"Query\"")
        ld = ld_request(request, *body)
        rt = runtime(get_ctx(request))
        limit = http.int_param(request, "limit", rt.settings.default_limit)
        offset = http.int_param(request, "offset", 0)
        service.check_limit(limit, rt.settings.max_limit)
        http.options(request)
        if "temporalQ" in data:
            raise BadRequestData("temporalQ is only for the Query Temporal Evolution of Entities operation")
        for key in ("q", "scopeQ", "csf", "lang"):
            if key in data and not isinstance(data[key], str):
                raise BadRequestData(f"{key} must be a string")
        ids, types, pattern = _selectors(data.get("entities"))
        geo = data.get("geoQ") or {}
        if not isinstance(geo, dict):
            raise BadRequestData("geoQ must be an object")
        order = _ordering(data.get("ordering"), ld) if "ordering" in data else None
        attrs = data.get("attrs")
        if attrs is not None and (not isinstance(attrs, list) or not attrs
                                  or not all(isinstance(a, str) and a.strip() for a in attrs)):
            raise BadRequestData("attrs must be a non-empty array of attribute names")
        shape = params.shape_from(_shape_members(data), attrs_given=attrs is not None)
        expanded = [ld.active.expand_term(a) for a in attrs] if attrs is not None else None
        query = build_query(ld, {"id": ids or None, "idPattern": pattern, "type": types or None, "q": data.get("q"),
                                 "scopeQ": data.get("scopeQ"), "georel": geo.get("georel"),
                                 "geometry": geo.get("geometry"), "coordinates": geo.get("coordinates"),
                                 "geoproperty": geo.get("geoproperty")},
                            expanded, limit, offset, http.bool_param(request, "count"))
        if shape.pick is not None and attrs is None and not shape.pick.names() & params.ENTITY_MEMBERS:
            # as on GET /entities: a pick of attributes only selects the entities that carry them
            query.attrs = [ld.active.expand_term(n) for n in shape.pick.names()]
        if not restrict_to_open_types(request, ld, query):
            return http.ld_response([], ld)
        page, total = service.query_entities(session, http.tenant_of(request), query) if order is None else \
            ordering.query_sorted(session, http.tenant_of(request), query, order)
        roots = [(e, render(request, ld, e, expanded, shape)) for e in page]
        docs = [d for _, d in roots if any(k != "@context" for k in d)]
        if shape.join is not None:
            docs += join_roots(request, session, ld, [(e, d) for e, d in roots if d], shape)
        headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
        return http.ld_response(docs, ld, headers=headers)

    return r


def _context_link(request: Request) -> bool:
    try:
        return jsonld.parse_link_header(request.headers.get("link") or "") is not None
    except jsonld.ContextRuleError:
        return True


def _selectors(entities: Any) -> tuple[list[str], str, str | None]:
    """ids, type expression and idPattern of the Query's EntitySelectors (§5.2.33: type is mandatory, id is a URI
    or an array of URIs and takes precedence over idPattern)."""
    if entities is None:
        return [], "", None
    if not isinstance(entities, list) or not entities:
        raise BadRequestData("entities must be a non-empty array of EntitySelector")
    ids: list[str] = []
    types: list[str] = []
    patterns: list[str] = []
    for sel in entities:
        if not isinstance(sel, dict):
            raise BadRequestData("each member of entities must be an EntitySelector object")
        if not isinstance(sel.get("type"), str) or not sel["type"].strip():
            raise BadRequestData("an EntitySelector must name its type (a string)")
        types.append(sel["type"])
        if "id" in sel:
            given = sel["id"] if isinstance(sel["id"], list) else [sel["id"]]
            if not given or not all(isinstance(i, str) and is_uri(i) for i in given):
                raise BadRequestData("EntitySelector id must be a URI or a non-empty array of URIs")
            ids.extend(given)
        elif "idPattern" in sel:
            if not isinstance(sel["idPattern"], str):
                raise BadRequestData("EntitySelector idPattern must be a string")
            patterns.append(sel["idPattern"])
    return ids, "|".join(types), ("|".join(f"(?:{p})" for p in patterns) if patterns and not ids else None)


def _shape_members(data: dict[str, Any]) -> dict[str, str]:
    """pick, omit (arrays of names, or the URL parameters' string form), join and joinLevel of a Query body, as the
    URL parameter strings params.shape_from parses."""
    out: dict[str, str] = {}
    for key in ("pick", "omit"):
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            out[key] = ",".join(value)
        elif isinstance(value, str):
            out[key] = value
        else:
            raise BadRequestData(f"{key} must be a non-empty array of entity member or attribute names")
    if "join" in data:
        if not isinstance(data["join"], str):
            raise BadRequestData("join must be 'inline', 'flat' or '@none'")
        out["join"] = data["join"]
    if "joinLevel" in data:
        level = data["joinLevel"]
        if isinstance(level, bool) or not isinstance(level, int):
            raise BadRequestData("joinLevel must be a positive integer")
        out["joinLevel"] = str(level)
    return out


def _ordering(value: Any, ld: http.LdRequest) -> ordering.Ordering | None:
    """The Query's `ordering` member (OrderingParams, §5.2.43): orderBy, collation, coordinates, geometry."""
    if not isinstance(value, dict):
        raise BadRequestData("ordering must be an object")
    if "coordinates" in value and not isinstance(value["coordinates"], list):
        raise BadRequestData("ordering.coordinates must be a JSON array")
    if "geometry" in value and not isinstance(value["geometry"], str):
        raise BadRequestData("ordering.geometry must be a string")
    return ordering.parse(value.get("orderBy"), value.get("collation"), value.get("coordinates"),
                          value.get("geometry"), ld.active.expand_term)


def _audit(session: Session, principal: Any, what: str, res: service.BatchResult, tenant: str | None) -> None:
    # One summary entry per batch, not one per entity: batches carry sensor readings by the thousand.
    if res.success:
        audit.append(session, actor_of(principal), f"context.batch_{what}", "ngsi_ld_tenant", tenant or "default",
                     {"succeeded": len(res.success), "failed": len(res.errors)})
