"""The HTTP southbound of the IoT Agents: devices POST measures to /iot/json (JSON) and /iot/d (Ultralight 2.0).

Devices authenticate by apikey (`k`) and device id (`i`), as with FIWARE IoT Agents: the routes carry no user
principal, hence no ambient credentials and no CSRF check. A message that cannot be applied is answered 4xx and kept
as a dead letter in the same transaction; a duplicate (same device and timestamp) is answered 200 and not applied.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from cityplus.api.deps import DbSession, PublicAccess, get_ctx
from cityplus.api.problems import problem
from cityplus.modules.context.runtime import runtime as context_runtime
from cityplus.modules.iot.errors import UnsupportedContentType, WrongSyntax
from cityplus.modules.iot.ingest import Message, ingest
from cityplus.modules.iot.runtime import runtime
from cityplus.modules.iot.schemas import DEVICE_ID, TOPIC_LEVEL


class DeviceAccess(PublicAccess):
    """Public as far as users go: devices present their apikey in the request instead."""

    async def __call__(self, request: Request, session: DbSession) -> None:  # type: ignore[override]
        return None

    def __repr__(self) -> str:
        return "Public(device apikey)"


DEVICE_ROUTE = Depends(DeviceAccess())
Apikey = Annotated[str, Query(alias="k", pattern=TOPIC_LEVEL, description="the service group's apikey")]
DeviceId = Annotated[str, Query(alias="i", pattern=DEVICE_ID, description="the device id")]
Timestamp = Annotated[str | None, Query(alias="t", max_length=40, description="ISO 8601 observation time")]
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}},
                                                       "text/plain": {"schema": {"type": "string"}}}}}


async def raw_body(request: Request) -> bytes:
    return await request.body()


def _run(request: Request, session: Any, msg: Message) -> Response:
    ctx = get_ctx(request)
    outcome = ingest(session, runtime(ctx), msg, context_runtime(ctx).resolver.core())
    if outcome.error is not None:
        e = outcome.error
        # Answered, not raised: the request's transaction must commit, with the dead letter in it.
        return problem(e.status, e.title, e.detail, type_slug=e.type_slug, type_uri=e.type_uri, errors=e.errors,
                       instance=request.url.path,
                       extensions={**e.extensions(), "dead_letter": outcome.dead_letter_reason})
    return JSONResponse({"applied": outcome.applied, "duplicates": outcome.duplicates, "stale": outcome.stale})


def router() -> APIRouter:
    r = APIRouter(prefix="/iot", tags=["iot"], dependencies=[DEVICE_ROUTE])

    @r.post("/json", operation_id="iot_south_json", openapi_extra=_BODY)
    def measures_json(request: Request, session: DbSession, k: Apikey, i: DeviceId, t: Timestamp = None,
                      body: bytes = Depends(raw_body)) -> Response:
        """A device's measures as an IoTA-JSON object (`{"t": 23.5, "h": 61}`) or a list of them."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype != "application/json":
            raise UnsupportedContentType(f"Content-Type must be application/json, not {ctype}")
        return _run(request, session, Message(transport="http", channel=request.url.path, apikey=k, device_id=i,
                                              fmt="json", payload=body, resource="/iot/json", timestamp=t,
                                              message_id=request.headers.get("idempotency-key")))

    @r.post("/d", operation_id="iot_south_ul", openapi_extra=_BODY)
    def measures_ul(request: Request, session: DbSession, k: Apikey, i: DeviceId, t: Timestamp = None,
                    body: bytes = Depends(raw_body)) -> Response:
        """A device's measures in Ultralight 2.0 (`t|23.5|h|61`, groups separated by `#`)."""
        return _run(request, session, Message(transport="http", channel=request.url.path, apikey=k, device_id=i,
                                              fmt="ul", payload=body, resource="/iot/d", timestamp=t,
                                              message_id=request.headers.get("idempotency-key")))

    @r.get("/d", operation_id="iot_south_ul_get")
    def measures_ul_get(request: Request, k: Apikey, i: DeviceId,
                        d: Annotated[str, Query(min_length=1, max_length=8192, description="Ultralight measures")],
                        t: Timestamp = None) -> Response:
        """Ultralight measures in the query (`?k=…&i=…&d=t|23.5|h|61`), for the simplest devices."""
        if not d.strip():
            raise WrongSyntax("d: no measures")
        # A GET request gets a read-only session; this one writes, so it opens its own transaction.
        with get_ctx(request).db.session() as session:
            return _run(request, session, Message(transport="http", channel=request.url.path, apikey=k,
                                                  device_id=i, fmt="ul", payload=d.encode(), resource="/iot/d",
                                                  timestamp=t))

    return r
