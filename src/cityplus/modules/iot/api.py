"""The IoT Agent API at /iot: provisioning (services, devices), dead letters and the HTTP southbound. Thin."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from cityplus import __version__
from cityplus.api.deps import PUBLIC_ROUTE, DbSession, Scoped, get_ctx
from cityplus.modules.context import service as context_service
from cityplus.modules.iot import commands, service
from cityplus.modules.iot.errors import UnsupportedContentType, WrongSyntax
from cityplus.modules.iot.models import Command
from cityplus.modules.iot.runtime import runtime
from cityplus.modules.iot.schemas import DeviceIn, DevicesBody, ServiceGroupIn, ServicesBody, parse

PREFIX = "/iot"
Reader = Scoped("iot.read")
Manager = Scoped("iot.manage")
Limit = Annotated[int, Query(ge=0, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="entries to skip")]
_PROVISIONING_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object"}}}}}


def tenant_of(request: Request) -> str:
    """Fiware-Service, or NGSILD-Tenant (the same tenant in the context broker); both must agree."""
    fiware, ngsild = request.headers.get("fiware-service"), request.headers.get("ngsild-tenant")
    if fiware is not None and ngsild is not None and fiware.strip() != ngsild.strip():
        raise WrongSyntax("fiware-service and NGSILD-Tenant name different tenants")
    return service.tenant_name(fiware if fiware is not None else ngsild)


Tenant = Annotated[str, Depends(tenant_of)]


async def json_body(request: Request) -> Any:
    """The request's JSON body (application/json); 415 or 400 WRONG_SYNTAX otherwise."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedContentType(f"Content-Type must be application/json, not {ctype}")
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WrongSyntax(f"the body is not valid JSON: {exc}") from None


Body = Annotated[Any, Depends(json_body)]


def command_document(c: Command) -> dict[str, Any]:
    return {"id": c.id, "command": c.name, "value": c.value, "transport": c.transport, "status": c.status,
            "info": c.info, "created_at": service.iso(c.created_at), "updated_at": service.iso(c.updated_at)}


def router() -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["iot"])

    @r.get("/about", operation_id="iot_about", dependencies=[PUBLIC_ROUTE])
    def about() -> dict[str, Any]:
        """Gateway version, as IoT Agents report it."""
        return {"libVersion": "cityplus-" + __version__, "version": __version__, "baseRoot": "/",
                "protocols": ["IoTA-JSON", "IoTA-UL"]}

    # --- service groups ---------------------------------------------------------------------------------

    @r.post("/services", status_code=201, operation_id="iot_create_services", openapi_extra=_PROVISIONING_BODY)
    def create_services(request: Request, principal: Manager, tenant: Tenant, body: Body,
                        session: DbSession) -> Response:
        """Create service groups: `{"services": [{"apikey", "resource", "entity_type", "attributes", …}]}`."""
        payload: ServicesBody = parse(ServicesBody, body)
        path = service.service_path(request.headers.get("fiware-servicepath"))
        service.create_groups(session, principal.actor, tenant, path or "/", payload.services)
        return Response(status_code=201)

    @r.get("/services", operation_id="iot_list_services")
    def list_services(request: Request, principal: Reader, tenant: Tenant, session: DbSession,
                      limit: Limit = 20, offset: Offset = 0) -> dict[str, Any]:
        """The tenant's service groups (of the Fiware-ServicePath, or all with none or `/*`)."""
        path = service.service_path(request.headers.get("fiware-servicepath"), listing=True)
        rows, total = service.list_groups(session, tenant, path, limit=limit, offset=offset)
        return {"count": total, "services": [service.group_document(g) for g in rows]}

    @r.put("/services", status_code=204, operation_id="iot_update_service", openapi_extra=_PROVISIONING_BODY)
    def update_service(principal: Manager, tenant: Tenant, body: Body, session: DbSession,
                       resource: Annotated[str, Query(min_length=1, max_length=256)],
                       apikey: Annotated[str, Query(min_length=1, max_length=128)]) -> Response:
        """Change a service group, named by `resource` and `apikey`; fields not given stay as they are."""
        patch: ServiceGroupIn = parse(ServiceGroupIn, body)
        service.update_group(session, principal.actor, tenant, resource, apikey, patch)
        return Response(status_code=204)

    @r.delete("/services", status_code=204, operation_id="iot_delete_service")
    def delete_service(principal: Manager, tenant: Tenant, session: DbSession,
                       resource: Annotated[str, Query(min_length=1, max_length=256)],
                       apikey: Annotated[str, Query(min_length=1, max_length=128)],
                       device: Annotated[bool, Query(description="also remove the group's devices")] = False,
                       ) -> Response:
        """Remove a service group (and with `device=true` its devices)."""
        service.delete_group(session, principal.actor, tenant, resource, apikey, with_devices=device)
        return Response(status_code=204)

    # --- devices ----------------------------------------------------------------------------------------

    @r.post("/devices", status_code=201, operation_id="iot_create_devices", openapi_extra=_PROVISIONING_BODY)
    def create_devices(request: Request, principal: Manager, tenant: Tenant, body: Body,
                       session: DbSession) -> Response:
        """Provision devices: `{"devices": [{"device_id", "entity_name", "entity_type", "attributes", …}]}`."""
        payload: DevicesBody = parse(DevicesBody, body)
        path = service.service_path(request.headers.get("fiware-servicepath"))
        service.create_devices(session, principal.actor, tenant, path or "/", payload.devices)
        return Response(status_code=201)

    @r.get("/devices", operation_id="iot_list_devices")
    def list_devices(request: Request, principal: Reader, tenant: Tenant, session: DbSession,
                     limit: Limit = 20, offset: Offset = 0,
                     status: Annotated[str | None, Query(pattern="^(unknown|online|offline)$")] = None,
                     ) -> dict[str, Any]:
        """The tenant's devices with their health (filter `status=online|offline|unknown`)."""
        path = service.service_path(request.headers.get("fiware-servicepath"), listing=True)
        rows, total = service.list_devices(session, tenant, path, limit=limit, offset=offset, status=status)
        return {"count": total, "devices": [service.device_document(d) for d in rows]}

    @r.get("/devices/{device_id}", operation_id="iot_get_device")
    def get_device(principal: Reader, tenant: Tenant, device_id: str, session: DbSession) -> dict[str, Any]:
        """One device, with its health."""
        return service.device_document(service.get_device(session, tenant, device_id))

    @r.put("/devices/{device_id}", status_code=204, operation_id="iot_update_device",
           openapi_extra=_PROVISIONING_BODY)
    def update_device(principal: Manager, tenant: Tenant, device_id: str, body: Body,
                      session: DbSession) -> Response:
        """Change a device; fields not given stay as they are."""
        patch: DeviceIn = parse(DeviceIn, body)
        service.update_device(session, principal.actor, tenant, device_id, patch)
        return Response(status_code=204)

    @r.delete("/devices/{device_id}", status_code=204, operation_id="iot_delete_device")
    def delete_device(principal: Manager, tenant: Tenant, device_id: str, session: DbSession) -> Response:
        """Remove a device from the registry (its entity stays in the context broker)."""
        service.delete_device(session, principal.actor, tenant, device_id)
        return Response(status_code=204)

    # --- commands ---------------------------------------------------------------------------------------

    @r.post("/devices/{device_id}/commands/{name}", status_code=202, operation_id="iot_send_command",
            openapi_extra=_PROVISIONING_BODY)
    def send_command(request: Request, principal: Manager, tenant: Tenant, device_id: str, name: str, body: Body,
                     session: DbSession) -> dict[str, Any]:
        """Send a provisioned command (`{"value": …}`): published over MQTT, or kept for the device to poll."""
        if not isinstance(body, dict) or set(body) - {"value"}:
            raise WrongSyntax('the body is {"value": <the command\'s value>}')
        ctx = get_ctx(request)
        row = commands.send(session, runtime(ctx), principal.actor, tenant, device_id, name, body.get("value"),
                            context_service.core_context(ctx))
        return command_document(row)

    @r.get("/devices/{device_id}/commands", operation_id="iot_list_commands")
    def list_commands(principal: Reader, tenant: Tenant, device_id: str, session: DbSession, limit: Limit = 20,
                      offset: Offset = 0) -> dict[str, Any]:
        """The device's commands, newest first, with status and result."""
        rows, total = service.list_commands(session, tenant, device_id, limit=limit, offset=offset)
        return {"count": total, "commands": [command_document(c) for c in rows]}

    # --- dead letters -----------------------------------------------------------------------------------

    @r.get("/deadletters", operation_id="iot_list_dead_letters")
    def list_dead_letters(principal: Reader, tenant: Tenant, session: DbSession, limit: Limit = 20,
                          offset: Offset = 0,
                          reason: Annotated[str | None, Query(max_length=32)] = None,
                          device_id: Annotated[str | None, Query(max_length=256)] = None,
                          apikey: Annotated[str | None, Query(max_length=128)] = None,
                          unmatched: Annotated[bool, Query(description="letters no service group matched")] = False,
                          ) -> JSONResponse:
        """Messages that could not be applied, newest first, with reason and (truncated) raw payload."""
        flt = service.DeadLetterFilter(reason=reason, device_id=device_id, apikey=apikey)
        rows, total = service.list_dead_letters(session, None if unmatched else tenant, flt, limit=limit,
                                                offset=offset)
        return JSONResponse({"count": total, "deadletters": [service.dead_letter_document(d) for d in rows]})

    return r
