"""NGSI-LD @context management: /jsonldContexts (GS CIM 009 v1.8 §5.13, resources 6.29 and 6.30).

The broker knows @contexts of two of the spec's three kinds:

- Hosted: added with POST /jsonldContexts, stored in `context_jsonld_contexts` (kind "hosted") under the URL
  `<base_url>/ngsi-ld/v1/jsonldContexts/<id>`. The resolver's `hosted` lookup finds them by URL, so requests can
  name that URL in a Link header (or inside an @context) and nothing is fetched over the network. They are
  shared by all tenants, as the resolver is.
- Cached: contexts the broker holds a copy of, named by their original URL: the built-in NGSI-LD core context,
  the files configured in CITYPLUS_CONTEXT_PRELOAD, and remote documents the resolver has fetched and still
  caches. The remote cache lives in each process's memory, so a listing shows what the answering process holds.
  Their local id is derived from the URL (stable across processes); §6.30 also allows the URL itself as
  contextId.
- ImplicitlyCreated: never. The broker does not mint URLs for inline @contexts (an ld+json response repeats the
  caller's inline @context instead), so kind=ImplicitlyCreated lists nothing.

Details objects (§5.13.3/§5.13.4) carry URL, localId and kind, and createdAt: for hosted contexts when they were
added, for cached ones when the answering process made its copy (start-up for built-in and preloaded ones).
numberOfHits, lastUsage and expiry are omitted: the broker does not record them, and made-up values would be worse
than none.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from cityplus.api.deps import DbSession, get_ctx
from cityplus.core import audit
from cityplus.modules.context import http, jsonld
from cityplus.modules.context.api_common import PREFIX, Body, Reader, Writer, actor_of
from cityplus.modules.context.errors import (
    BadRequestData,
    InvalidRequest,
    LdContextNotAvailable,
    OperationNotSupported,
    ResourceNotFound,
)
from cityplus.modules.context.models import HostedContext
from cityplus.modules.context.runtime import runtime

PATH = "/jsonldContexts"
MAX_CONTEXT_BYTES = 1_000_000  # same bound as a remote @context download
STORED_HOSTED = "hosted"  # HostedContext.kind of contexts added through POST
# The spec's kind names; the `kind` parameter is matched case-insensitively (hosted, Hosted, ...).
HOSTED, CACHED, IMPLICIT = "Hosted", "Cached", "ImplicitlyCreated"
KINDS = {k.lower(): k for k in (HOSTED, CACHED, IMPLICIT)}


# --- data: hosted contexts (table context_jsonld_contexts) and the resolver's cached copies --------------------


@dataclass(frozen=True)
class ContextInfo:
    """One known @context: where it is served from and what kind it is."""

    url: str
    local_id: str
    kind: str
    created_at: datetime | None = None
    origin: str = ""  # cached only: "core", "preload" or "remote"

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"URL": self.url, "localId": self.local_id, "kind": self.kind}
        if self.created_at is not None:
            out["createdAt"] = self.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return out


def hosted_url(request: Request, context_id: str) -> str:
    return f"{get_ctx(request).settings.base_url}{PREFIX}{PATH}/{context_id}"


def validate_document(body: Any, resolver: jsonld.ContextResolver) -> Any:
    """The @context of a POSTed JSON-LD document, checked to be one the resolver can process.

    It must be a JSON object or array (a bare URL string names a context instead of giving one); array members
    may be objects or URLs. Other top-level members of the document are ignored: only the @context is hosted.
    """
    if not isinstance(body, dict):
        raise BadRequestData("the body must be a JSON object with an @context member")
    if "@context" not in body:
        raise InvalidRequest("the body has no @context member")  # §5.13.2.4 (ETSI TP 050_02_01)
    context = body["@context"]
    if not isinstance(context, dict | list):
        raise BadRequestData("@context must be a JSON object or array (a URL alone names a context; host the "
                             "context itself, or reference the URL directly in Link headers)")
    if isinstance(context, list) and not all(isinstance(c, str | dict) for c in context):
        # checked before any member URL is fetched: a malformed document is 400, whatever the network says
        raise BadRequestData("each member of an @context array is a URL or a context object")
    if len(json.dumps(context, ensure_ascii=False).encode()) > MAX_CONTEXT_BYTES:
        raise BadRequestData(f"@context is larger than {MAX_CONTEXT_BYTES} bytes")
    try:
        resolver.resolve(context)
    except jsonld.InvalidContext as exc:
        raise BadRequestData(f"invalid @context: {exc}") from None
    except jsonld.LdContextNotAvailable as exc:  # a context it includes cannot be retrieved
        raise LdContextNotAvailable(str(exc)) from None
    return context


def add_hosted(session: Session, request: Request, context: Any) -> HostedContext:
    context_id = uuid.uuid4().hex
    row = HostedContext(id=context_id, url=hosted_url(request, context_id), body={"@context": context},
                        kind=STORED_HOSTED)
    session.add(row)
    session.flush()
    return row


def hosted_info(row: HostedContext) -> ContextInfo:
    kind = {STORED_HOSTED: HOSTED, "implicitlyCreated": IMPLICIT}.get(row.kind, HOSTED)
    return ContextInfo(url=row.url, local_id=row.id, kind=kind, created_at=row.created_at)


def list_hosted(session: Session) -> list[HostedContext]:
    return list(session.scalars(select(HostedContext).order_by(HostedContext.created_at, HostedContext.id)))


def cached_id(url: str) -> str:
    """The local id of a cached context: derived from its URL, so every process gives the same one."""
    return "cached-" + hashlib.sha256(url.encode()).hexdigest()[:32]


def list_cached(request: Request) -> list[ContextInfo]:
    rt = runtime(get_ctx(request))
    core = jsonld.CORE_CONTEXT_URL
    out = [ContextInfo(url=core, local_id=cached_id(core), kind=CACHED, created_at=rt.resolver.copied_at(core),
                       origin="core")]
    seen = {core}
    for origin, urls in (("preload", sorted(rt.settings.preload)), ("remote", rt.resolver.cached_urls())):
        for url in urls:
            if url not in seen:
                seen.add(url)
                out.append(ContextInfo(url=url, local_id=cached_id(url), kind=CACHED,
                                       created_at=rt.resolver.copied_at(url), origin=origin))
    return out


def find(session: Session, request: Request, context_id: str) -> tuple[ContextInfo, HostedContext | None]:
    """A known context by local id (or, for cached ones, by original URL); ResourceNotFound otherwise."""
    row = session.get(HostedContext, context_id)
    if row is not None:
        return hosted_info(row), row
    for info in list_cached(request):
        if context_id in (info.local_id, info.url):
            return info, None
    if jsonld.is_core_url(context_id):  # another core-context version: the same built-in copy
        return ContextInfo(url=context_id, local_id=cached_id(context_id), kind=CACHED, origin="core"), None
    raise ResourceNotFound(f"no @context {context_id}")


def invalidate_after_commit(session: Session, resolver: jsonld.ContextResolver, url: str) -> None:
    """Drop the URL from the resolver now and again once the transaction commits.

    Until the commit, a concurrent request can still read the row and cache an ActiveContext for the URL; the
    second invalidation removes it. Other processes keep what they cached until it falls out of their LRU.
    """
    resolver.invalidate(url)
    event.listen(session, "after_commit", lambda _s: resolver.invalidate(url), once=True)


# --- routes ----------------------------------------------------------------------------------------------------


def router() -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["ngsi-ld"])

    @r.post(PATH, status_code=201, operation_id="ngsild_add_jsonld_context")
    def add_context(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Add (host) an @context; it is then served at, and resolvable by, the URL in the Location header."""
        context = validate_document(body[0], runtime(get_ctx(request)).resolver)
        row = add_hosted(session, request, context)
        audit.append(session, actor_of(principal), "context.jsonld_context_create", "ngsi_ld_context", row.id,
                     {"url": row.url})
        return Response(status_code=201, headers={"Location": f"{PREFIX}{PATH}/{row.id}"})

    @r.get(PATH, operation_id="ngsild_list_jsonld_contexts")
    def list_contexts(request: Request, principal: Reader, session: DbSession) -> Response:
        """The known @contexts: their URLs, or details objects with details=true; `kind` filters."""
        details = http.bool_param(request, "details")
        raw_kind = request.query_params.get("kind")
        kind = KINDS.get(raw_kind.lower()) if raw_kind is not None else None
        if raw_kind is not None and kind is None:
            raise BadRequestData(f"kind must be one of {', '.join(KINDS.values())}, not {raw_kind!r}")
        infos = list_cached(request) + [hosted_info(row) for row in list_hosted(session)]
        infos = [i for i in infos if kind is None or i.kind == kind]
        body = [i.details() for i in infos] if details else [i.url for i in infos]
        return JSONResponse(body, media_type=http.negotiate(request))

    @r.get(PATH + "/{context_id:path}", operation_id="ngsild_get_jsonld_context")
    def get_context(context_id: str, request: Request, principal: Reader, session: DbSession) -> Response:
        """A hosted @context document, or any known context's details object with details=true."""
        details = http.bool_param(request, "details")
        media = http.negotiate(request)
        info, row = find(session, request, context_id)
        if details:
            return JSONResponse(info.details(), media_type=media)
        if row is None:
            raise OperationNotSupported(f"{info.url} is a cached copy of a context served elsewhere; only hosted "
                                        "@contexts are served (ask with details=true for its metadata)")
        return JSONResponse(row.body, media_type=media)

    @r.delete(PATH + "/{context_id:path}", status_code=204, operation_id="ngsild_delete_jsonld_context")
    def delete_context(context_id: str, request: Request, principal: Writer, session: DbSession) -> Response:
        """Delete a hosted @context or drop a cached copy; reload=true re-downloads a cached one instead."""
        reload = http.bool_param(request, "reload")
        resolver = runtime(get_ctx(request)).resolver
        try:
            info, row = find(session, request, context_id)
        except ResourceNotFound:
            if reload:  # §5.13.5.4: reload is for cached @contexts; an unknown one cannot be reloaded (400)
                raise BadRequestData(f"no cached @context {context_id} to reload") from None
            raise
        if info.origin == "core":
            raise BadRequestData("the NGSI-LD core @context cannot be deleted or reloaded")
        if info.origin == "preload":
            raise BadRequestData(f"{info.url} is preloaded from a local file (CITYPLUS_CONTEXT_PRELOAD); change the "
                                 "configuration instead")
        if reload and row is not None:
            raise BadRequestData(f"only cached @contexts can be reloaded; {info.url} is {info.kind.lower()}")
        if row is not None:
            session.delete(row)
            session.flush()
            invalidate_after_commit(session, resolver, row.url)
            audit.append(session, actor_of(principal), "context.jsonld_context_delete", "ngsi_ld_context", row.id,
                         {"url": row.url})
            return Response(status_code=204)
        # A remote cached copy: forget it; with reload=true fetch it again right away (a failed download leaves no
        # copy, and the next use of the URL tries again).
        resolver.invalidate(info.url)
        if reload:
            try:
                resolver.resolve(info.url)
            except (jsonld.LdContextNotAvailable, jsonld.InvalidContext) as exc:
                raise LdContextNotAvailable(f"reloading {info.url} failed: {exc}") from None
        audit.append(session, actor_of(principal), "context.jsonld_context_reload" if reload
                     else "context.jsonld_context_delete", "ngsi_ld_context", info.local_id, {"url": info.url})
        return Response(status_code=204)

    return r
