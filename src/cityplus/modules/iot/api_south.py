"""The HTTP southbound of the IoT Agents: devices POST measures to /iot/json (JSON) and /iot/d (Ultralight 2.0).

Devices authenticate by apikey (`k`) and device id (`i`), as with FIWARE IoT Agents: the routes carry no user
principal, hence no ambient credentials and no CSRF check. A message that cannot be applied is answered 4xx and kept
as a dead letter in the same transaction; a duplicate (same device and timestamp) is answered 200 and not applied.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select

from cityplus.api.deps import DbSession, PublicAccess, get_ctx
from cityplus.api.problems import problem
from cityplus.modules.context import service as context_service
from cityplus.modules.iot import commands
from cityplus.modules.iot.errors import DeviceNotFound, IotError, UnsupportedContentType, WrongSyntax
from cityplus.modules.iot.ingest import Message, ingest
from cityplus.modules.iot.models import Device
from cityplus.modules.iot.runtime import runtime
from cityplus.modules.iot.schemas import DEVICE_ID, TOPIC_LEVEL
from cityplus.modules.iot.service import tenant_group


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
GetCmd = Annotated[bool, Query(alias="getCmd", description="answer with the device's pending commands")]
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}},
                                                       "text/plain": {"schema": {"type": "string"}}}}}


async def raw_body(request: Request) -> bytes:
    return await request.body()


def _failed(request: Request, e: IotError, reason: str | None) -> Response:
    # Answered, not raised: the request's transaction must commit, with the dead letter in it.
    return problem(e.status, e.title, e.detail, type_slug=e.type_slug, type_uri=e.type_uri, errors=e.errors,
                   headers=e.headers or None, instance=request.url.path,
                   extensions={**e.extensions(), "dead_letter": reason})


def _run(request: Request, session: Any, msg: Message, get_cmd: bool = False) -> Response:
    ctx = get_ctx(request)
    active = context_service.core_context(ctx)
    if msg.payload or not get_cmd:
        outcome = ingest(session, runtime(ctx), msg, active)
        if outcome.error is not None:
            return _failed(request, outcome.error, outcome.dead_letter_reason)
        device = session.get(Device, outcome.device.id) if outcome.device is not None else None
    else:  # a poll for commands without measures
        device = session.scalar(select(Device).where(Device.apikey == msg.apikey, Device.device_id == msg.device_id))
        if device is None:
            raise DeviceNotFound(f"device {msg.device_id[:64]} is not provisioned under apikey {msg.apikey[:64]}")
    if get_cmd and device is not None:
        # IoT Agent polling: the answer is the device's pending commands, in its own format.
        group = tenant_group(session, device.tenant, device.apikey)
        pending = commands.poll(session, device, group, active)
        if msg.fmt == "ul":
            return PlainTextResponse(pending or "")
        return Response(pending or "{}", media_type="application/json")
    return JSONResponse({"applied": outcome.applied, "duplicates": outcome.duplicates, "stale": outcome.stale})


def _results(request: Request, session: Any, msg: Message) -> Response:
    ctx = get_ctx(request)
    count, error = commands.apply_results(session, runtime(ctx), msg, context_service.core_context(ctx))
    if error is not None:
        return _failed(request, error, "command_result")
    return JSONResponse({"results": count})


def router() -> APIRouter:
    r = APIRouter(prefix="/iot", tags=["iot"], dependencies=[DEVICE_ROUTE])

    @r.post("/json", operation_id="iot_south_json", openapi_extra=_BODY)
    def measures_json(request: Request, session: DbSession, k: Apikey, i: DeviceId, t: Timestamp = None,
                      get_cmd: GetCmd = False, body: bytes = Depends(raw_body)) -> Response:
        """A device's measures as an IoTA-JSON object (`{"t": 23.5, "h": 61}`) or a list of them."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype != "application/json":
            raise UnsupportedContentType(f"Content-Type must be application/json, not {ctype}")
        return _run(request, session, Message(transport="http", channel=request.url.path, apikey=k, device_id=i,
                                              fmt="json", payload=body, resource="/iot/json", timestamp=t,
                                              message_id=request.headers.get("idempotency-key")), get_cmd)

    @r.post("/d", operation_id="iot_south_ul", openapi_extra=_BODY)
    def measures_ul(request: Request, session: DbSession, k: Apikey, i: DeviceId, t: Timestamp = None,
                    get_cmd: GetCmd = False, body: bytes = Depends(raw_body)) -> Response:
        """A device's measures in Ultralight 2.0 (`t|23.5|h|61`, groups separated by `#`)."""
        return _run(request, session, Message(transport="http", channel=request.url.path, apikey=k, device_id=i,
                                              fmt="ul", payload=body, resource="/iot/d", timestamp=t,
                                              message_id=request.headers.get("idempotency-key")), get_cmd)

    @r.get("/d", operation_id="iot_south_ul_get")
    def measures_ul_get(request: Request, k: Apikey, i: DeviceId,
                        d: Annotated[str, Query(max_length=8192, description="Ultralight measures")] = "",
                        t: Timestamp = None, get_cmd: GetCmd = False) -> Response:
        """Ultralight measures in the query (`?k=…&i=…&d=t|23.5|h|61`), and/or a poll for commands (`getCmd=1`)."""
        if not d.strip() and not get_cmd:
            raise WrongSyntax("d: no measures")
        # A GET request gets a read-only session; this one writes, so it opens its own transaction.
        with get_ctx(request).db.session() as session:
            return _run(request, session, Message(transport="http", channel=request.url.path, apikey=k,
                                                  device_id=i, fmt="ul", payload=d.strip().encode(),
                                                  resource="/iot/d", timestamp=t), get_cmd)

    @r.get("/json", operation_id="iot_south_json_poll")
    def poll_json(request: Request, k: Apikey, i: DeviceId, get_cmd: GetCmd = False) -> Response:
        """A JSON device's poll for its pending commands (`getCmd=1`): `{"<command>": value, …}`."""
        if not get_cmd:
            raise WrongSyntax("GET /iot/json only polls for commands: add getCmd=1")
        with get_ctx(request).db.session() as session:
            return _run(request, session, Message(transport="http", channel=request.url.path, apikey=k,
                                                  device_id=i, fmt="json", payload=b"", resource="/iot/json"), True)

    @r.post("/json/commands", operation_id="iot_south_json_results", openapi_extra=_BODY)
    def results_json(request: Request, session: DbSession, k: Apikey, i: DeviceId,
                     body: bytes = Depends(raw_body)) -> Response:
        """Command results of a JSON device: `{"<command>": result}`."""
        return _results(request, session, Message(transport="http", channel=request.url.path, apikey=k,
                                                  device_id=i, fmt="json", payload=body, resource="/iot/json"))

    @r.post("/d/commands", operation_id="iot_south_ul_results", openapi_extra=_BODY)
    def results_ul(request: Request, session: DbSession, k: Apikey, i: DeviceId,
                   body: bytes = Depends(raw_body)) -> Response:
        """Command results of an Ultralight device: `<device_id>@<command>|<result>`."""
        return _results(request, session, Message(transport="http", channel=request.url.path, apikey=k,
                                                  device_id=i, fmt="ul", payload=body, resource="/iot/d"))

    return r
