"""NGSI-LD subscriptions API (/ngsi-ld/v1/subscriptions): create, list, retrieve, update, delete.

Managing subscriptions needs `context.write`: a subscription makes the platform send data to an address of the
subscriber's choosing. Thin over subscriptions.py; delivery is notifier.py's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cityplus.api.deps import DbSession, get_ctx
from cityplus.core import audit
from cityplus.modules.context import http, service, subscriptions
from cityplus.modules.context.api import _page_links
from cityplus.modules.context.api_common import PREFIX, Body, NgsiLdRoute, Writer, actor_of, ld_request
from cityplus.modules.context.errors import BadRequestData
from cityplus.modules.context.normalize import is_uri
from cityplus.modules.context.runtime import runtime


async def subscription_id_param(subscription_id: str) -> str:
    if not is_uri(subscription_id):
        raise BadRequestData(f"subscription id must be a URI, not {subscription_id[:80]!r}")
    return subscription_id


def _known(request: Request, allowed: set[str]) -> None:
    unknown = set(request.query_params) - allowed
    if unknown:
        raise BadRequestData(f"unknown URL parameter {sorted(unknown)[0]!r}")


def router() -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["ngsi-ld"], route_class=NgsiLdRoute)

    @r.post("/subscriptions", status_code=201, operation_id="ngsild_create_subscription")
    def create_subscription(request: Request, principal: Writer, body: Body, session: DbSession) -> Response:
        """Create a subscription: notify an HTTP or MQTT endpoint when matching entities change."""
        _known(request, set())
        ld = ld_request(request, *body)
        spec = subscriptions.parse(body[0], ld.active)
        if "jsonldContext" in spec:
            _check_context(request, spec["jsonldContext"])
        t = service.tenant(session, http.tenant_of(request), create=True)
        row = subscriptions.create(session, t.id, spec, ld.context)
        audit.append(session, actor_of(principal), "context.subscription_create", "ngsi_ld_subscription",
                     row.sub_id, {"tenant": t.name, "endpoint": spec["notification"]["endpoint"]["uri"]})
        location = quote(row.sub_id, safe=":/@!$&'()*+,;=-._~")
        return Response(status_code=201, headers={"Location": f"{PREFIX}/subscriptions/{location}",
                                                  **http.tenant_header(ld)})

    @r.get("/subscriptions", operation_id="ngsild_list_subscriptions")
    def list_subscriptions(request: Request, principal: Writer, session: DbSession) -> Response:
        """The tenant's subscriptions, paged (limit, offset, count)."""
        _known(request, {"limit", "offset", "count", "options"})
        ld = ld_request(request)
        rt = runtime(get_ctx(request))
        limit = http.int_param(request, "limit", rt.settings.default_limit)
        offset = http.int_param(request, "offset", 0)
        service.check_limit(limit, rt.settings.max_limit)
        count = http.bool_param(request, "count")
        opts, _ = http.options(request)
        t = service.tenant(session, http.tenant_of(request), create=False)
        rows, total = subscriptions.list_(session, t.id, limit, offset)
        docs = [subscriptions.document(row, ld.active, sys_attrs="sysAttrs" in opts) for row in rows]
        headers = {"NGSILD-Results-Count": str(total)} if count else {}
        links = _page_links(request, ld, offset, limit, len(rows), total)
        if links:
            headers["Link"] = ", ".join(filter(None, [http.link_header(ld).get("Link"), links]))
        return http.ld_response(docs, ld, headers=headers)

    @r.get("/subscriptions/{subscription_id}", operation_id="ngsild_get_subscription")
    def get_subscription(request: Request, principal: Writer, session: DbSession,
                         subscription_id: str = Depends(subscription_id_param)) -> Response:
        """One subscription with its status and delivery counters."""
        _known(request, {"options"})
        ld = ld_request(request)
        opts, _ = http.options(request)
        t = service.tenant(session, http.tenant_of(request), create=False)
        row = subscriptions.get(session, t.id, subscription_id)
        return http.ld_response(subscriptions.document(row, ld.active, sys_attrs="sysAttrs" in opts), ld)

    @r.patch("/subscriptions/{subscription_id}", status_code=204, operation_id="ngsild_update_subscription")
    def update_subscription(request: Request, principal: Writer, body: Body, session: DbSession,
                            subscription_id: str = Depends(subscription_id_param)) -> Response:
        """Change members of a subscription (e.g. isActive, q, notification.endpoint)."""
        _known(request, set())
        ld = ld_request(request, *body)
        fragment = subscriptions.parse(body[0], ld.active, partial=True)
        if not fragment and not (isinstance(body[0], dict) and body[0]):
            raise BadRequestData("subscription: the update is empty")
        if "jsonldContext" in fragment:
            _check_context(request, fragment["jsonldContext"])
        t = service.tenant(session, http.tenant_of(request), create=False)
        row = subscriptions.patch(session, t.id, subscription_id, fragment,
                                  ld.context if _has_context(request, body) else None)
        audit.append(session, actor_of(principal), "context.subscription_update", "ngsi_ld_subscription",
                     row.sub_id, {"tenant": t.name, "members": sorted(fragment)})
        return Response(status_code=204, headers=http.tenant_header(ld))

    @r.delete("/subscriptions/{subscription_id}", status_code=204, operation_id="ngsild_delete_subscription")
    def delete_subscription(request: Request, principal: Writer, session: DbSession,
                            subscription_id: str = Depends(subscription_id_param)) -> Response:
        """Delete a subscription (its undelivered notifications go with it)."""
        _known(request, set())
        ld = ld_request(request)
        t = service.tenant(session, http.tenant_of(request), create=False)
        subscriptions.delete(session, t.id, subscription_id)
        audit.append(session, actor_of(principal), "context.subscription_delete", "ngsi_ld_subscription",
                     subscription_id, {"tenant": t.name})
        return Response(status_code=204, headers=http.tenant_header(ld))

    return r


def _has_context(request: Request, body: tuple[Any, str]) -> bool:
    return "link" in request.headers or (isinstance(body[0], dict) and "@context" in body[0])


def _check_context(request: Request, url: str) -> None:
    """jsonldContext must be resolvable now (400 otherwise), not at the first notification."""
    from cityplus.modules.context import jsonld
    from cityplus.modules.context.errors import LdContextNotAvailable

    try:
        runtime(get_ctx(request)).resolver.resolve(url)
    except jsonld.LdContextNotAvailable as exc:
        raise LdContextNotAvailable(f"subscription: jsonldContext {exc}") from None
    except jsonld.InvalidContext as exc:
        raise BadRequestData(f"subscription: jsonldContext is not a valid JSON-LD context: {exc}") from None
