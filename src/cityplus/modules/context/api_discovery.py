"""NGSI-LD discovery: /types and /attributes (with details=true)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cityplus.api.deps import DbSession
from cityplus.modules.context import http, service
from cityplus.modules.context.api_common import PREFIX, NgsiLdRoute, Reader, ld_request
from cityplus.modules.context.errors import BadRequestData, ResourceNotFound
from cityplus.modules.context.params import known_params


def router() -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["ngsi-ld"], route_class=NgsiLdRoute)

    @r.get("/types", operation_id="ngsild_list_types", dependencies=[Depends(known_params("types"))])
    def list_types(request: Request, principal: Reader, session: DbSession) -> Response:
        """Entity types present (EntityTypeList, or EntityType details with details=true)."""
        ld = ld_request(request)
        summary = service.type_summary(session, http.tenant_of(request))
        c = ld.active.compact_iri
        if _details(request):
            body: Any = [{"id": ty, "type": "EntityType", "typeName": c(ty),
                          "attributeNames": sorted(c(a) for a in info["attrs"])} for ty, info in summary.items()]
        else:
            body = {"id": "urn:ngsi-ld:EntityTypeList:" + (http.tenant_of(request) or "default"),
                    "type": "EntityTypeList", "typeList": sorted(c(t) for t in summary)}
        return http.ld_response(body, ld)

    @r.get("/types/{type_name:path}", operation_id="ngsild_get_type", dependencies=[Depends(known_params("type"))])
    def get_type(type_name: str, request: Request, principal: Reader, session: DbSession) -> Response:
        """EntityTypeInfo: how many entities of a type, and their attributes."""
        ld = ld_request(request)
        iri = ld.active.expand_term(type_name)
        info = service.type_summary(session, http.tenant_of(request)).get(iri)
        if info is None:
            raise ResourceNotFound(f"no entities of type {type_name}")
        c = ld.active.compact_iri
        body = {"id": iri, "type": "EntityTypeInfo", "typeName": c(iri), "entityCount": info["count"],
                "attributeDetails": [{"id": a, "type": "Attribute", "attributeName": c(a),
                                      "attributeTypes": sorted(t for t in kinds if t)}
                                     for a, kinds in sorted(info["attrs"].items())]}
        return http.ld_response(body, ld)

    def _attributes(session: Any, tenant: str | None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ty, info in service.type_summary(session, tenant).items():
            for a, kinds in info["attrs"].items():
                entry = out.setdefault(a, {"types": set(), "kinds": set()})
                entry["types"].add(ty)
                entry["kinds"].update(k for k in kinds if k)
        return out

    @r.get("/attributes", operation_id="ngsild_list_attributes",
           dependencies=[Depends(known_params("attributes"))])
    def list_attributes(request: Request, principal: Reader, session: DbSession) -> Response:
        """Attributes present (AttributeList, or Attribute details with details=true)."""
        ld = ld_request(request)
        attrs = _attributes(session, http.tenant_of(request))
        c = ld.active.compact_iri
        if _details(request):
            body: Any = [{"id": a, "type": "Attribute", "attributeName": c(a),
                          "typeNames": sorted(c(t) for t in e["types"])} for a, e in sorted(attrs.items())]
        else:
            body = {"id": "urn:ngsi-ld:AttributeList:" + (http.tenant_of(request) or "default"),
                    "type": "AttributeList", "attributeList": sorted(c(a) for a in attrs)}
        return http.ld_response(body, ld)

    @r.get("/attributes/{attr:path}", operation_id="ngsild_get_attribute",
           dependencies=[Depends(known_params("attribute"))])
    def get_attribute(attr: str, request: Request, principal: Reader, session: DbSession) -> Response:
        """Attribute details: the types that use it and its attribute types."""
        ld = ld_request(request)
        iri = ld.active.expand_term(attr)
        entry = _attributes(session, http.tenant_of(request)).get(iri)
        if entry is None:
            raise ResourceNotFound(f"no attribute {attr}")
        c = ld.active.compact_iri
        count = service.query_entities(session, http.tenant_of(request),
                                       service.EntityQuery(attrs=[iri], limit=0, count=True))[1]
        body = {"id": iri, "type": "Attribute", "attributeName": c(iri), "attributeCount": count,
                "attributeTypes": sorted(entry["kinds"]), "typeNames": sorted(c(t) for t in entry["types"])}
        return http.ld_response(body, ld)

    return r


def _details(request: Request) -> bool:
    raw = request.query_params.get("details")
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise BadRequestData(f"details must be true or false, not {raw[:20]!r}")
    return raw.lower() == "true"
