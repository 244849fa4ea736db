"""Shared pieces of the NGSI-LD routes: access, body, @context resolution, entity expansion and rendering."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from cityplus.api.deps import DbSession, Principal, RequireScope, get_ctx, resolve_principal
from cityplus.core.audit import Actor
from cityplus.modules.context import http, jsonld, service
from cityplus.modules.context.errors import BadRequestData
from cityplus.modules.context.normalize import is_uri, normalize_entity
from cityplus.modules.context.runtime import runtime

PREFIX = "/ngsi-ld/v1"


class ContextAccess(RequireScope):
    """Scope check that honours CITYPLUS_CONTEXT_AUTH=none and anonymous reads of open entity types."""

    async def __call__(self, request: Request, session: DbSession) -> Principal | None:  # type: ignore[override]
        rt = runtime(get_ctx(request))
        if rt.settings.auth == "none":
            return None
        if self.scope == "context.read" and rt.settings.open_types and resolve_principal(request, session) is None:
            request.state.open_types_only = True
            return None
        return await super().__call__(request, session)


Reader = Annotated[Principal | None, Depends(ContextAccess("context.read"))]
Writer = Annotated[Principal | None, Depends(ContextAccess("context.write"))]


async def json_body(request: Request) -> tuple[Any, str]:
    return await http.read_body(request, merge_patch=request.method == "PATCH")


Body = Annotated[tuple[Any, str], Depends(json_body)]


def entity_id_param(entity_id: str) -> str:
    """The {entityId} path segment, which must be a URI (400 BadRequestData, not a 404 lookup, otherwise)."""
    if not is_uri(entity_id):
        raise BadRequestData(f"entity id must be a URI, not {entity_id[:80]!r}")
    return entity_id


EntityId = Annotated[str, Depends(entity_id_param)]


def actor_of(principal: Principal | None) -> Actor:
    return principal.actor if principal is not None else Actor.system("ngsi-ld")


def ld_request(request: Request, body: Any = None, media: str | None = None) -> http.LdRequest:
    return http.resolve(request, runtime(get_ctx(request)).resolver, body, media)


def expand_entity(raw: Any, ld: http.LdRequest, *, require_id: bool = True, require_type: bool = True
                   ) -> dict[str, Any]:
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k != "@context"}
    entity = normalize_entity(raw, require_id=require_id, require_type=require_type)
    expanded = jsonld.expand_entity(entity, ld.active)
    if "type" in entity:
        types = expanded["type"]
        expanded["type"] = types if isinstance(types, list) else [types]
    return expanded


def open_types(request: Request, ld: http.LdRequest) -> set[str] | None:
    if not getattr(request.state, "open_types_only", False):
        return None
    return {ld.active.expand_term(t) for t in runtime(get_ctx(request)).settings.open_types}


def render(request: Request, ld: http.LdRequest, ent: Any, attrs: list[str] | None) -> dict[str, Any]:
    opts, fmt = http.options(request)
    doc = service.entity_document(ent, attrs=attrs, sys_attrs="sysAttrs" in opts)
    doc = http.shape(http.compact(doc, ld), fmt, request.query_params.get("lang"))
    pick = names(request, "pick")
    omit = names(request, "omit")
    if pick:
        doc = {k: v for k, v in doc.items() if k in pick or k == "@context"}
    if omit:
        doc = {k: v for k, v in doc.items() if k not in omit}
    return doc


def names(request: Request, param: str) -> set[str] | None:
    raw = request.query_params.get(param)
    return {p.strip() for p in raw.split(",") if p.strip()} if raw else None


def attrs_param(request: Request, ld: http.LdRequest) -> list[str] | None:
    given = names(request, "attrs")
    return [ld.active.expand_term(n) for n in given] if given else None


def update_result(result: service.UpdateResult, ld: http.LdRequest) -> Response:
    if not result.not_updated:
        return Response(status_code=204)
    body = {"updated": [ld.active.compact_iri(n) for n in result.updated],
            "notUpdated": [{"attributeName": ld.active.compact_iri(n), "reason": r} for n, r in result.not_updated]}
    return JSONResponse(body, status_code=207)
