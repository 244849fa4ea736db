"""Shared pieces of the NGSI-LD routes: access, body, @context resolution, entity expansion and rendering."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from cityplus.api.deps import DbSession, Principal, RequireScope, get_ctx, principal_of
from cityplus.core.audit import Actor
from cityplus.core.errors import DomainError
from cityplus.modules.context import http, params, service
from cityplus.modules.context.errors import BadRequestData
from cityplus.modules.context.normalize import is_uri
from cityplus.modules.context.runtime import runtime

PREFIX = "/ngsi-ld/v1"


class NgsiLdRoute(APIRoute):
    """Echoes the request's NGSILD-Tenant header on every response of the route, errors included (§6.3.14), and
    answers 411 Length Required to a POST, PATCH or PUT without Content-Length (§6.3.4)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            tenant = http.tenant_of(request)
            if request.method in ("POST", "PATCH", "PUT") and "content-length" not in request.headers:
                # §6.3.4: a body of unannounced length (chunked) is refused before anything else, with a bare 411
                return Response(status_code=411)
            try:
                response = await handler(request)
            except DomainError as exc:
                if tenant:
                    exc.headers = {**exc.headers, "NGSILD-Tenant": tenant}
                raise
            if tenant and "ngsild-tenant" not in response.headers:
                response.headers["NGSILD-Tenant"] = tenant
            return response

        return route


class ContextAccess(RequireScope):
    """Scope check that honours CITYPLUS_CONTEXT_AUTH=none and anonymous reads of open entity types."""

    async def __call__(self, request: Request, session: DbSession) -> Principal | None:  # type: ignore[override]
        rt = runtime(get_ctx(request))
        if rt.settings.auth == "none":
            return None
        if self.scope == "context.read" and rt.settings.open_types and await principal_of(request, session) is None:
            request.state.open_types_only = True
            return None
        return await super().__call__(request, session)


Reader = Annotated[Principal | None, Depends(ContextAccess("context.read"))]
Writer = Annotated[Principal | None, Depends(ContextAccess("context.write"))]


async def json_body(request: Request) -> tuple[Any, str]:
    return await http.read_body(request, merge_patch=request.method == "PATCH")


Body = Annotated[tuple[Any, str], Depends(json_body)]


async def entity_id_param(entity_id: str) -> str:  # async: a check this cheap is not worth a thread hop
    """The {entityId} path segment, which must be a URI (400 BadRequestData, not a 404 lookup, otherwise)."""
    if not is_uri(entity_id):
        raise BadRequestData(f"entity id must be a URI, not {entity_id[:80]!r}")
    return entity_id


EntityId = Annotated[str, Depends(entity_id_param)]


def actor_of(principal: Principal | None) -> Actor:
    return principal.actor if principal is not None else Actor.system("ngsi-ld")


def ld_request(request: Request, body: Any = None, media: str | None = None) -> http.LdRequest:
    # GeoJSON is a representation of entities: offered by the entity reads and the batch query only.
    path = request.url.path.rstrip("/")
    geo = (request.method == "GET" and "/entities" in path and "/attrs" not in path) or \
        path.endswith("/entityOperations/query")
    return http.resolve(request, runtime(get_ctx(request)).resolver, body, media, geo=geo)


def expand_entity(raw: Any, ld: http.LdRequest, *, require_id: bool = True, require_type: bool = True
                   ) -> dict[str, Any]:
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k != "@context"}
    return service.expand_compact(raw, ld.active, require_id=require_id, require_type=require_type)


def open_types(request: Request, ld: http.LdRequest) -> set[str] | None:
    if not getattr(request.state, "open_types_only", False):
        return None
    return {ld.active.expand_term(t) for t in runtime(get_ctx(request)).settings.open_types}


def render(request: Request, ld: http.LdRequest, ent: Any, attrs: list[str] | None,
           shape: params.Shape | None = None) -> dict[str, Any]:
    """One entity as the caller asked for it: format, options, lang, then pick/omit (from the URL unless given)."""
    if shape is None:
        shape = params.shape_params(request, attrs_given=False)
    return params.project(render_full(request, ld, ent, attrs), shape.pick, shape.omit)


def render_full(request: Request, ld: http.LdRequest, ent: Any, attrs: list[str] | None) -> dict[str, Any]:
    """One entity in the requested format and language, before pick/omit."""
    opts, fmt = http.options(request)
    doc = service.entity_document(ent, attrs=attrs, sys_attrs="sysAttrs" in opts)
    datasets = request.query_params.get("datasetId")
    if datasets is not None:
        doc = _only_datasets(doc, datasets)
    return http.shape(http.compact(doc, ld), fmt, request.query_params.get("lang"))


def _only_datasets(doc: dict[str, Any], datasets: str) -> dict[str, Any]:
    """Keep the attribute instances of the given datasetIds (`@none`: the default instance), §4.5.5."""
    wanted = {d.strip() for d in datasets.split(",")}
    if not all(wanted) or not all(d == "@none" or is_uri(d) for d in wanted):
        raise BadRequestData("datasetId must be a comma-separated list of URIs or @none")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("id", "type", "scope", "createdAt", "modifiedAt", "@context"):
            out[key] = value
            continue
        kept = [i for i in service.instances(value) if i.get("datasetId", "@none") in wanted]
        if kept:
            out[key] = kept[0] if len(kept) == 1 else kept
    return out


def names(request: Request, param: str) -> set[str] | None:
    raw = request.query_params.get(param)
    return {p.strip() for p in raw.split(",") if p.strip()} if raw else None


def attrs_param(request: Request, ld: http.LdRequest) -> list[str] | None:
    """The expanded names of `attrs` (a comma-separated list of attribute names; entity members are refused)."""
    raw = request.query_params.get("attrs")
    if raw is None:
        return None
    given = [p.strip() for p in raw.split(",")]
    if not all(given):
        raise BadRequestData("attrs must be a comma-separated list of attribute names, with no empty member")
    members = [n for n in given if n in params.ENTITY_MEMBERS or n == "@context"]
    if members:
        raise BadRequestData(f"attrs names attributes only; {', '.join(members)} is an entity member (use pick)")
    for n in given:
        if not _ATTR_NAME.fullmatch(n):
            raise BadRequestData(f"attrs: invalid attribute name {n[:80]!r}")
    return [ld.active.expand_term(n) for n in dict.fromkeys(given)]


_ATTR_NAME = re.compile(r"[^\s<>\"'=;()\[\]{}|]{1,256}")


def update_result(result: service.UpdateResult, ld: http.LdRequest) -> Response:
    if not result.not_updated:
        return Response(status_code=204, headers=http.tenant_header(ld))
    body = {"updated": [ld.active.compact_iri(n) for n in result.updated],
            "notUpdated": [{"attributeName": ld.active.compact_iri(n), "reason": r} for n, r in result.not_updated]}
    return JSONResponse(body, status_code=207)
