"""The NGSI-LD API (/ngsi-ld/v1): entities, attributes, batch operations, discovery. Thin over service.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cityplus.api.deps import DbSession, get_ctx
from cityplus.core import audit
from cityplus.modules.context import geo as geomod
from cityplus.modules.context import http, jsonld, linked, ordering, params, service
from cityplus.modules.context import query as qmod
from cityplus.modules.context.api_common import (
    PREFIX,
    Body,
    EntityId,
    NgsiLdRoute,
    Reader,
    Writer,
    actor_of,
    attrs_param,
    expand_entity,
    ld_request,
    open_types,
    render,
    render_full,
    update_result,
)
from cityplus.modules.context.errors import BadRequestData, InvalidRequest, ResourceNotFound
from cityplus.modules.context.normalize import (
    ENTITY_RESERVED,
    NAME_RE,
    is_uri,
    nested_null,
    normalize_attribute,
    reject_nulls,
)
from cityplus.modules.context.params import known_params
from cityplus.modules.context.runtime import runtime


def router() -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["ngsi-ld"], route_class=NgsiLdRoute)

    @r.post("/entities", status_code=201, operation_id="ngsild_create_entity",
          dependencies=[Depends(known_params("create"))])
    def create_entity(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Create an entity."""
        _require_object(body[0])
        ld = ld_request(request, *body)
        entity = expand_entity(body[0], ld)
        reject_nulls(entity)
        service.create_entity(session, http.tenant_of(request), entity)
        audit.append(session, actor_of(principal), "context.entity_create", "ngsi_ld_entity", entity["id"],
                     {"tenant": http.tenant_of(request), "types": entity["type"]})
        # Header values are Latin-1: ids with other characters (e.g. Chinese) are percent-encoded (RFC 3986).
        location = quote(entity["id"], safe=":/@!$&'()*+,;=-._~")
        return Response(status_code=201, headers={"Location": f"{PREFIX}/entities/{location}"})

    @r.get("/entities", operation_id="ngsild_query_entities", dependencies=[Depends(known_params("query"))])
    def query_entities(request: Request, principal: Reader, session: DbSession) -> Response:
        """Query entities by id, idPattern, type, attrs, q, scopeQ and geo-query, paged."""
        ld = ld_request(request)
        p = request.query_params
        rt = runtime(get_ctx(request))
        limit = http.int_param(request, "limit", rt.settings.default_limit, minimum=0)
        offset = http.int_param(request, "offset", 0)
        count = http.bool_param(request, "count")
        http.options(request)  # invalid options/format: 400 before anything is looked up
        service.check_limit(limit, rt.settings.max_limit)
        attrs = attrs_param(request, ld)
        shape = params.shape_params(request, attrs_given=attrs is not None)
        _check_geometry_property(request, ld)
        selectors = {k: p.get(k) for k in ("id", "idPattern", "type", "q", "scopeQ", "georel", "geometry",
                                           "coordinates", "geoproperty")}
        local = p.get("local")
        if local is not None and local not in ("true", "false"):
            raise BadRequestData(f"local must be true or false, not {local[:20]!r}")
        if selectors["type"] == "*":
            if local == "false":
                raise BadRequestData("type=* (every type) cannot be combined with local=false")
            selectors["type"] = None
            selectors["idPattern"] = selectors["idPattern"] or ".*"
        if selectors["id"] and not any(selectors[k] for k in ("type", "idPattern", "q", "scopeQ", "georel")) \
                and attrs is None and local != "true":
            raise BadRequestData("id alone does not select entities: name their type (or attrs, q, a geo-query)")
        if local == "true" and not any(selectors.values()) and attrs is None and shape.pick is None:
            selectors["idPattern"] = ".*"  # a local query may ask for every entity (§5.7.2.4)
        query = build_query(ld, selectors, attrs, limit, offset, count)
        order = ordering.parse(p.get("orderBy"), p.get("collation"), p.get("orderFrom"), None,
                               ld.active.expand_term)
        if shape.pick is not None and attrs is None and not shape.pick.names() & params.ENTITY_MEMBERS:
            # pick without entity members selects entities by their attributes, as attrs does.
            query.attrs = [ld.active.expand_term(n) for n in shape.pick.names()]
        if not restrict_to_open_types(request, ld, query):
            return http.ld_response([], ld)
        if limit == 0 and not count:
            raise BadRequestData("limit=0 is only allowed with count=true")
        page, total = service.query_entities(session, http.tenant_of(request), query) if order is None else \
            ordering.query_sorted(session, http.tenant_of(request), query, order)
        roots = [(e, render(request, ld, e, attrs, shape)) for e in page]
        docs = [d for _, d in roots if any(k != "@context" for k in d)]
        if shape.join is not None:
            docs += join_roots(request, session, ld, [(e, d) for e, d in roots if d], shape)
        headers: dict[str, str] = {}
        if total is not None:
            headers["NGSILD-Results-Count"] = str(total)
        links = _page_links(request, ld, offset, limit, len(page), total)
        if links:
            headers["Link"] = ", ".join(filter(None, [http.link_header(ld).get("Link"), links]))
        return http.ld_response(docs, ld, headers=headers)

    @r.delete("/entities", status_code=204, operation_id="ngsild_purge_entities",
              dependencies=[Depends(known_params("purge"))])
    def purge_entities(request: Request, principal: Writer, session: DbSession) -> Response:
        """Purge Entities (v1.9.1 §5.6.21): delete every entity the selectors match; a selector is required."""
        ld = ld_request(request)
        selectors = {k: request.query_params.get(k) for k in ("id", "idPattern", "type", "q", "scopeQ", "georel",
                                                              "geometry", "coordinates", "geoproperty")}
        if not any(selectors.values()):
            raise BadRequestData("name the entities to purge: type, id, idPattern, q, scopeQ or a geo-query")
        tenant = http.tenant_of(request)
        query = build_query(ld, selectors, None, PURGE_CHUNK, 0, False)
        purged = 0
        while True:  # each round deletes what the previous one left: the next page starts again at offset 0
            page, _ = service.query_entities(session, tenant, query)
            if not page:
                break
            done = len(service.batch_write(session, tenant, "delete", [e.entity_id for e in page]).success)
            purged += done
            if len(page) < PURGE_CHUNK or not done:
                break
        audit.append(session, actor_of(principal), "context.entities_purge", "ngsi_ld_tenant", tenant or "default",
                     {"purged": purged, "selectors": {k: v for k, v in selectors.items() if v}})
        return Response(status_code=204)

    @r.get("/entities/{entity_id}", operation_id="ngsild_get_entity", dependencies=[Depends(known_params("retrieve"))])
    def get_entity(request: Request, principal: Reader, entity_id: EntityId, session: DbSession) -> Response:
        """One entity."""
        ld = ld_request(request)
        http.options(request)
        attrs = attrs_param(request, ld)
        shape = params.shape_params(request, attrs_given=attrs is not None)
        _check_geometry_property(request, ld)
        ent = service.get_entity(session, http.tenant_of(request), entity_id)
        visible = open_types(request, ld)
        if visible is not None and not visible & set(ent.types):
            raise ResourceNotFound(f"entity {entity_id} not found")
        _check_type_selector(request, ld, ent)
        if attrs is not None and not set(attrs) & set(ent.attrs):
            raise ResourceNotFound(f"entity {entity_id} has none of the attributes {request.query_params['attrs']}")
        doc = render(request, ld, ent, attrs, shape)
        if not any(k != "@context" for k in doc):
            raise ResourceNotFound(f"pick/omit leave nothing of entity {entity_id}")
        if shape.join is not None:
            flat = join_roots(request, session, ld, [(ent, doc)], shape)
            if flat:  # join=flat: the entity, then the entities it links to (alone when none was found)
                return http.ld_response([doc, *flat], ld)
        return http.ld_response(doc, ld)

    @r.put("/entities/{entity_id}", status_code=204, operation_id="ngsild_replace_entity",
          dependencies=[Depends(known_params("replace"))])
    def replace_entity(request: Request, principal: Writer, body: Body, entity_id: EntityId, session: DbSession
                       ) -> Response:
        """Replace an entity."""
        _require_object(body[0])
        ld = ld_request(request, *body)
        entity = expand_entity(body[0], ld, require_id=False)
        if entity.get("id", entity_id) != entity_id:
            raise BadRequestData("the body's id differs from the id in the path")
        entity["id"] = entity_id
        _check_write_type(request, session, ld, entity_id)
        service.replace_entity(session, http.tenant_of(request), entity_id, entity)
        audit.append(session, actor_of(principal), "context.entity_replace", "ngsi_ld_entity", entity_id,
                     {"tenant": http.tenant_of(request)})
        return Response(status_code=204)

    @r.patch("/entities/{entity_id}", status_code=204, operation_id="ngsild_merge_entity",
          dependencies=[Depends(known_params("merge"))])
    def merge_entity(request: Request, principal: Writer, body: Body, entity_id: EntityId, session: DbSession
                     ) -> Response:
        """Merge-patch an entity (urn:ngsi-ld:null deletes an attribute)."""
        _require_object(body[0])
        ld = ld_request(request, *body)
        fragment = expand_entity(body[0], ld, require_id=False, require_type=False)
        if fragment.get("id", entity_id) != entity_id:
            raise BadRequestData("the body's id differs from the id in the path")
        _check_write_type(request, session, ld, entity_id)
        service.merge_entity(session, http.tenant_of(request), entity_id, fragment)
        return Response(status_code=204)

    @r.delete("/entities/{entity_id}", status_code=204, operation_id="ngsild_delete_entity",
          dependencies=[Depends(known_params("delete"))])
    def delete_entity(request: Request, principal: Writer, entity_id: EntityId, session: DbSession) -> Response:
        """Delete an entity."""
        _check_write_type(request, session, None, entity_id)
        service.delete_entity(session, http.tenant_of(request), entity_id)
        audit.append(session, actor_of(principal), "context.entity_delete", "ngsi_ld_entity", entity_id,
                     {"tenant": http.tenant_of(request)})
        return Response(status_code=204)

    @r.post("/entities/{entity_id}/attrs", operation_id="ngsild_append_attrs",
          dependencies=[Depends(known_params("append"))])
    def append_attrs(request: Request, principal: Writer, body: Body, entity_id: EntityId, session: DbSession
                     ) -> Response:
        """Append attributes (options=noOverwrite keeps existing ones)."""
        _require_object(body[0])
        ld = ld_request(request, *body)
        opts, _ = http.options(request)
        fragment = expand_entity(body[0], ld, require_id=False, require_type=False)
        _check_write_type(request, session, ld, entity_id)
        result = service.append_attrs(session, http.tenant_of(request), entity_id, fragment,
                                      no_overwrite="noOverwrite" in opts)
        return update_result(result, ld)

    @r.patch("/entities/{entity_id}/attrs", operation_id="ngsild_update_attrs",
          dependencies=[Depends(known_params("update"))])
    def update_attrs(request: Request, principal: Writer, body: Body, entity_id: EntityId, session: DbSession
                     ) -> Response:
        """Update existing attributes."""
        _require_object(body[0])
        ld = ld_request(request, *body)
        fragment = expand_entity(body[0], ld, require_id=False, require_type=False)
        _check_write_type(request, session, ld, entity_id)
        return update_result(service.update_attrs(session, http.tenant_of(request), entity_id, fragment), ld)

    def _attr_fragment(ld: http.LdRequest, raw: Any, attr: str, *, partial: bool) -> tuple[str, dict[str, Any]]:
        """The expanded attribute name and one normalized, expanded instance from an attribute body."""
        check_attr_name(attr)
        if not isinstance(raw, dict):
            raise BadRequestData("the body must be an attribute object")
        raw = {k: v for k, v in raw.items() if k != "@context"}
        instance = normalize_attribute(attr, raw, partial=partial)
        if isinstance(instance, list):
            raise BadRequestData("give one attribute instance")
        name = ld.active.expand_term(attr)
        return name, jsonld.expand_entity({attr: instance}, ld.active)[name]

    @r.patch("/entities/{entity_id}/attrs/{attr}", status_code=204, operation_id="ngsild_patch_attr",
          dependencies=[Depends(known_params("attr_patch"))])
    def patch_attr(attr: str, request: Request, principal: Writer, body: Body, entity_id: EntityId, session: DbSession
                   ) -> Response:
        """Partially update one attribute: the members and sub-attributes given replace those stored."""
        check_attr_name(attr)
        ld = ld_request(request, *body)
        raw = body[0]
        if isinstance(raw, dict) and nested_null(raw.get("value")):
            raise BadRequestData("urn:ngsi-ld:null inside a value only removes a key in a merge (PATCH /entities/{id})")
        if isinstance(raw, dict) and raw.get("datasetId") == "@none":
            raw = {k: v for k, v in raw.items() if k != "datasetId"}  # §4.5.5: the default instance
        _check_write_type(request, session, ld, entity_id)
        if isinstance(raw, dict) and "type" in raw:
            current = service.get_entity(session, http.tenant_of(request), entity_id).attrs.get(
                ld.active.expand_term(attr))
            stored = next((i for i in service.instances(current) if i.get("datasetId") == raw.get("datasetId")),
                          None) if current is not None else None
            if stored is not None and stored.get("type") != raw["type"]:
                raise BadRequestData(f"a partial update cannot change attribute {attr} from {stored.get('type')} "
                                     f"to {str(raw['type'])[:40]}")
        if isinstance(raw, dict) and "type" not in raw:
            # A fragment without a type patches the stored instance of that datasetId and keeps its type.
            current = service.get_entity(session, http.tenant_of(request), entity_id).attrs.get(
                ld.active.expand_term(attr))
            if current is None:
                raise ResourceNotFound(f"entity {entity_id} has no attribute {attr}")
            stored = next((i for i in service.instances(current) if i.get("datasetId") == raw.get("datasetId")), None)
            if stored is not None:
                raw = {**raw, "type": stored["type"]}
        name, fragment = _attr_fragment(ld, raw, attr, partial=True)
        service.update_attr(session, http.tenant_of(request), entity_id, name, fragment, replace=False)
        return Response(status_code=204)

    @r.put("/entities/{entity_id}/attrs/{attr}", status_code=204, operation_id="ngsild_replace_attr",
          dependencies=[Depends(known_params("attr_replace"))])
    def replace_attr(attr: str, request: Request, principal: Writer, body: Body, entity_id: EntityId,
                     session: DbSession) -> Response:
        """Replace one attribute."""
        ld = ld_request(request, *body)
        name, fragment = _attr_fragment(ld, body[0], attr, partial=False)
        _check_write_type(request, session, ld, entity_id)
        service.update_attr(session, http.tenant_of(request), entity_id, name, fragment, replace=True)
        return Response(status_code=204)

    @r.delete("/entities/{entity_id}/attrs/{attr}", status_code=204, operation_id="ngsild_delete_attr",
          dependencies=[Depends(known_params("attr_delete"))])
    def delete_attr(attr: str, request: Request, principal: Writer, entity_id: EntityId, session: DbSession
                    ) -> Response:
        """Delete an attribute (one datasetId, or all instances with deleteAll=true); scope deletes the scope."""
        ld = ld_request(request)
        _check_write_type(request, session, ld, entity_id)
        if attr == "scope":  # §4.18: scope is deleted like an attribute (it cannot be patched or replaced)
            service.delete_scope(session, http.tenant_of(request), entity_id)
            return Response(status_code=204)
        check_attr_name(attr)
        service.delete_attr(session, http.tenant_of(request), entity_id, ld.active.expand_term(attr),
                            dataset_id=request.query_params.get("datasetId"),
                            delete_all=request.query_params.get("deleteAll") == "true")
        return Response(status_code=204)

    @r.api_route("/entities//attrs", methods=["POST", "PATCH"], include_in_schema=False)
    @r.api_route("/entities//attrs/{attr}", methods=["PATCH", "PUT", "DELETE"], include_in_schema=False)
    @r.api_route("/entities", methods=["PUT", "PATCH"], include_in_schema=False)
    def missing_entity_id(request: Request, principal: Writer) -> Response:
        """An entity operation whose path has no entity id (400, not 404/405)."""
        raise BadRequestData("the entity id is missing from the path")

    return r


def _require_object(body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest(f"the body must be a JSON object, not {type(body).__name__}")


def check_attr_name(attr: str) -> None:
    """id, type, scope and system members are not attributes: the attribute routes refuse them."""
    if attr in ENTITY_RESERVED:
        raise BadRequestData(f"{attr!r} is not an attribute name")
    if attr.startswith("@") or not NAME_RE.match(attr):
        raise BadRequestData(f"invalid attribute name {attr[:80]!r}")


def _check_geometry_property(request: Request, ld: http.LdRequest) -> None:
    gp = request.query_params.get("geometryProperty")
    if gp is not None and ld.accept != http.GEOJSON:
        raise BadRequestData("geometryProperty is only meaningful with Accept: application/geo+json")
    if gp is not None and not gp.strip():
        raise BadRequestData("geometryProperty must name a GeoProperty")


def _check_write_type(request: Request, session: Any, ld: http.LdRequest | None, entity_id: str) -> None:
    """The optional `type` selector of single-entity writes (§4.17): 404 unless the entity has that type. Only a
    request that gives one pays for the lookup."""
    if "type" not in request.query_params:
        return
    ld = ld or ld_request(request)
    _check_type_selector(request, ld, service.get_entity(session, http.tenant_of(request), entity_id))


def _check_type_selector(request: Request, ld: http.LdRequest, ent: Any) -> None:
    """The optional `type` of single-entity operations: the entity must have it (404 otherwise)."""
    raw = request.query_params.get("type")
    if raw is None:
        return
    if not raw.strip():
        raise BadRequestData("type must name an entity type")
    selected = service.parse_types(raw, ld.active.expand_term)
    if not selected.matches(ent.types):
        raise ResourceNotFound(f"entity {ent.entity_id} is not of type {raw[:80]}")


PURGE_CHUNK = 1000  # entities deleted per round by DELETE /entities


def join_roots(request: Request, session: Any, ld: http.LdRequest, roots: list[tuple[Any, dict[str, Any]]],
          shape: params.Shape) -> list[dict[str, Any]]:
    """Linked entity retrieval for rendered roots; the flat list of linked entities (inline: changes roots)."""
    assert shape.join is not None
    visible = open_types(request, ld)
    _, fmt = http.options(request)
    return linked.join_linked(
        session, http.tenant_of(request), roots, shape.join, lambda e: render_full(request, ld, e, None),
        ld.active.compact_iri, pick=shape.pick, omit=shape.omit, simplified=fmt == "simplified",
        visible=lambda e: visible is None or bool(visible & set(e.types)))


def restrict_to_open_types(request: Request, ld: http.LdRequest, query: service.EntityQuery) -> bool:
    """Narrow an anonymous caller's query to the open entity types; False when nothing can be visible."""
    visible = open_types(request, ld)
    if visible is None:
        return True
    query.types = service.TypeExpr(tuple((t,) for t in visible)) if query.types is None else \
        service.TypeExpr(tuple(g for g in query.types.groups if set(g) & visible))
    return bool(query.types.groups)


def build_query(ld: http.LdRequest, p: dict[str, Any], attrs: list[str] | None, limit: int, offset: int,
                count: bool) -> service.EntityQuery:
    """An EntityQuery from URL parameters or a Query body (names expanded with the caller's context)."""
    expand = ld.active.expand_term
    try:
        q = qmod.parse_q(p["q"], expand) if p.get("q") else None
        scope_q = qmod.parse_scope_q(p["scopeQ"]) if p.get("scopeQ") else None
    except qmod.QuerySyntaxError as exc:
        raise BadRequestData(f"invalid query: {exc}") from None
    try:
        geo = geomod.parse_geo_query(p.get("georel"), p.get("geometry"), p.get("coordinates"),
                                     p.get("geoproperty"), expand)
    except geomod.GeoQueryError as exc:
        raise BadRequestData(str(exc)) from None
    ids = p.get("id")
    if isinstance(ids, str):
        ids = [i.strip() for i in ids.split(",") if i.strip()]
    for i in ids or []:
        if not is_uri(i):
            raise BadRequestData(f"id must be a URI (or a comma-separated list of URIs), not {str(i)[:80]!r}")
    types = service.parse_types(p["type"], expand) if p.get("type") else None
    return service.EntityQuery(ids=ids or None, id_pattern=p.get("idPattern"), types=types, q=q, scope_q=scope_q,
                               geo=geo, attrs=attrs, limit=limit, offset=offset, count=count)


def _page_links(request: Request, ld: http.LdRequest, offset: int, limit: int, returned: int, total: int | None
                ) -> str:
    """rel="prev"/"next" Link values (§5.5.9): the request's parameters sorted by name, the media type answered."""
    params_ = dict(request.query_params)
    base = str(request.url.path)
    media = ld.accept

    def link(off: int, rel: str) -> str:
        query = {**params_, "offset": str(off), "limit": str(limit)}
        # Readable but header-safe: only characters that would break the URI or the Link syntax are encoded.
        qs = "&".join(f"{quote(k, safe='')}={quote(v, safe=_LINK_SAFE)}" for k, v in sorted(query.items()))
        return f'<{base}?{qs}>; rel="{rel}"; type="{media}"'

    links = []
    if offset > 0 and limit > 0:
        links.append(link(max(0, offset - limit), "prev"))
    more = (total is not None and offset + limit < total) or (total is None and returned == limit and limit > 0)
    if more:
        links.append(link(offset + limit, "next"))
    return ", ".join(links)


_LINK_SAFE = ":/@!$'()*+,;=-._~|"
