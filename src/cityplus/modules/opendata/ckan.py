"""CKAN-compatible Action API (`/api/3/action/{name}`, `/api/action/{name}`), GET and POST.

Responses use CKAN's envelope `{help, success, result}` and its errors `{help, success: false, error: {__type,
message, …}}` (Not Found Error 404, Authorization Error 403, Validation Error 409 with field errors, Search Query
Error 400). Tokens come in the `Authorization` header, bare (as ckanapi sends them) or as `Bearer <token>`.
The route is public; each action checks access itself through the service (write actions need
`opendata.publish` and a dataset of the caller's department).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import DataError as DBAPIDataError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from cityplus.api.deps import DbSession, Principal, PublicAccess, check_csrf, get_ctx, resolve_principal
from cityplus.core.errors import Conflict, DomainError, Forbidden, NotFound, Unauthenticated, Unprocessable
from cityplus.core.identity import service as identity
from cityplus.modules.opendata import datastore, service
from cityplus.modules.opendata import search as search_index
from cityplus.modules.opendata.ckan_dicts import (
    CKAN_NAMES,
    group_dict,
    org_dict,
    package_dict,
    package_fields,
    resource_dict,
    resource_fields,
)
from cityplus.modules.opendata.models import Dataset, FacetValue
from cityplus.modules.opendata.schemas import DatastoreField
from cityplus.modules.opendata.service import Reader
from cityplus.modules.opendata.settings import opendata_settings
from cityplus.modules.opendata.vocab import THEMES

CKAN_VERSION = "2.10.4"


class CkanAccess(PublicAccess):
    """Public, resolving a CKAN-style bare token too; authentication errors are kept for the CKAN envelope."""

    async def __call__(self, request: Request, session: DbSession) -> Principal | None:
        try:
            header = request.headers.get("authorization") or request.headers.get("x-ckan-api-key") or ""
            if header and not header.lower().startswith("bearer "):
                ctx = get_ctx(request)
                found = identity.authenticate_token(session, header.strip())
                if found is None:
                    raise Unauthenticated("the API token is unknown, expired or revoked")
                user, token = found
                scopes = frozenset(token.scopes) & identity.role_scopes(user, ctx.registry.all_scopes())
                request.state.principal = Principal(user=user, scopes=scopes, via="token", token=token)
            principal = resolve_principal(request, session)
            await check_csrf(request, principal)
            return principal
        except DomainError as exc:
            request.state.ckan_auth_error = exc
            return None

    def __repr__(self) -> str:
        return "Public(CKAN)"


CkanCaller = Annotated[Principal | None, Depends(CkanAccess())]


@dataclass
class Call:
    """One action call: its parameters, the caller, and the request's database session."""

    session: Session
    reader: Reader
    params: dict[str, Any]
    base_url: str
    upload: tuple[str, bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def require(self, key: str) -> Any:
        v = self.params.get(key)
        if v is None or v == "":
            raise Unprocessable(f"Missing value: {key}", errors=[{"field": key, "message": "Missing value"}])
        return v

    def int_param(self, key: str, default: int, lo: int = 0, hi: int = 1_000_000) -> int:
        v = self.params.get(key, default)
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise Unprocessable(f"{key} must be an integer", errors=[{"field": key, "message": "Invalid integer"}]
                                ) from None
        if not lo <= n <= hi:
            raise Unprocessable(f"{key} must be between {lo} and {hi}",
                                errors=[{"field": key, "message": f"Must be between {lo} and {hi}"}])
        return n

    def bool_param(self, key: str, default: bool) -> bool:
        v = self.params.get(key, default)
        if isinstance(v, bool):
            return v
        if str(v).lower() in ("true", "1", "yes"):
            return True
        if str(v).lower() in ("false", "0", "no", ""):
            return False
        raise Unprocessable(f"{key} must be true or false", errors=[{"field": key, "message": "Invalid boolean"}])

    def json_param(self, key: str, default: Any) -> Any:
        v = self.params.get(key, default)
        if isinstance(v, str) and v.strip().startswith(("{", "[")):
            try:
                return json.loads(v)
            except json.JSONDecodeError:
                raise Unprocessable(f"{key} is not valid JSON", errors=[{"field": key, "message": "Invalid JSON"}]
                                    ) from None
        return v


# --- actions -----------------------------------------------------------------------------------------------------


def _pkg(call: Call, ds: Dataset) -> dict[str, Any]:
    org = identity.get_organisation(call.session, ds.org_code)
    return package_dict(ds, org, call.base_url)


def status_show(call: Call) -> dict[str, Any]:
    return {"site_title": "CityPlus 成都政府数据开放平台", "site_description": "Chengdu open data (CityPlus)",
            "site_url": call.base_url, "ckan_version": CKAN_VERSION, "locale_default": "zh_Hans_CN",
            "extensions": ["datastore", "dcat"]}


def package_list(call: Call) -> list[str]:
    limit = call.get("limit")
    return service.list_names(call.session, call.reader,
                              limit=None if limit is None else call.int_param("limit", 100, 0, 100_000),
                              offset=call.int_param("offset", 0))


CKAN_FACETS = {"organization": "organization", "groups": "theme", "tags": "keyword", "res_format": "format",
               "license_id": "license_id", "opening": "opening"}


def package_search(call: Call) -> dict[str, Any]:
    q = str(call.get("q", "") or "")
    if q.strip() in ("*:*", "*"):
        q = ""
    fq = str(call.get("fq", "") or "")
    facet_fields = call.json_param("facet.field", [])
    if not isinstance(facet_fields, list) or not all(isinstance(f, str) for f in facet_fields):
        raise search_index.SearchQueryError("facet.field must be a JSON list of field names")
    unknown = [f for f in facet_fields if f not in CKAN_FACETS]
    if unknown:
        raise search_index.SearchQueryError(f"cannot facet on {unknown}; use {', '.join(CKAN_FACETS)}")
    rows = call.int_param("rows", 10, 0, 1000)
    start = call.int_param("start", 0, 0, 10_000_000)
    facet_limit = call.int_param("facet.limit", 50, -1, 1000)
    reader = call.reader
    if not call.bool_param("include_private", False):
        reader = Reader(actor=None) if not reader.is_admin else reader
    result = service.search(call.session, reader, q=q, filters=search_index.parse_fq(fq),
                            facet_fields=[CKAN_FACETS[f] for f in facet_fields], sort=str(call.get("sort", "") or ""),
                            rows=rows, start=start, facet_limit=facet_limit if facet_limit >= 0 else 10_000)
    ours_to_ckan = {v: k for k, v in CKAN_FACETS.items()}
    facets = {ours_to_ckan[f]: counts for f, counts in result.facets.items()}
    search_facets = {name: {"title": name, "items": [{"name": v, "display_name": _facet_label(name, v), "count": n}
                                                     for v, n in counts.items()]}
                     for name, counts in facets.items()}
    return {"count": result.count, "sort": call.get("sort") or "score desc, metadata_modified desc",
            "facets": facets, "search_facets": search_facets, "results": [_pkg(call, d) for d in result.datasets]}


def _facet_label(facet: str, value: str) -> str:
    if facet == "groups" and value in THEMES:
        return THEMES[value].zh
    return value


def package_show(call: Call) -> dict[str, Any]:
    return _pkg(call, service.get_dataset(call.session, call.reader, str(call.require("id"))))


def _apply_resources(call: Call, ds: Dataset, resources: Any) -> None:
    if not isinstance(resources, list):
        raise Unprocessable("resources must be a list", errors=[{"field": "resources", "message": "must be a list"}])
    keep = set()
    for r in resources:
        if not isinstance(r, dict):
            raise Unprocessable("resources must be objects", errors=[{"field": "resources", "message": "bad entry"}])
        existing = next((x for x in ds.resources if x.id == r.get("id")), None)
        if existing is not None:
            service.update_resource(call.session, call.reader, existing, resource_fields(r, call.base_url))
            keep.add(existing.id)
        else:
            fields = resource_fields(r, call.base_url)
            if r.get("url_type") == "upload" and isinstance(r.get("url"), str):
                # a file of another catalogue (a loaded dump): kept as a link to where it lives
                fields = resource_fields({**r, "url_type": "", "resource_type": "link"}, "")
            created = service.add_resource(call.session, call.reader, ds, fields)
            keep.add(created.id)
    for res in list(ds.resources):
        if res.id not in keep:
            service.delete_resource(call.session, call.reader, res)


def _publication(call: Call, ds: Dataset, default_private: bool | None) -> None:
    if "private" not in call.params and default_private is None:
        return
    private = call.bool_param("private", bool(default_private))
    if not private and ds.state == "draft":
        service.publish_dataset(call.session, call.reader, ds, note=str(call.get("change_note", "") or ""))
    elif private and ds.state == "published":
        service.withdraw_dataset(call.session, call.reader, ds)


def package_create(call: Call) -> dict[str, Any]:
    fields = package_fields(call.params)
    if fields.org_code is None and call.reader.department:
        fields = fields.model_copy(update={"org_code": call.reader.department})
        fields.model_fields_set.add("org_code")
    ds = service.create_dataset(call.session, call.reader, fields)
    if "resources" in call.params:
        _apply_resources(call, ds, call.params["resources"])
    _publication(call, ds, default_private=False)  # CKAN's default: public at once
    return _pkg(call, ds)


def _existing(call: Call) -> Dataset:
    ref = call.get("id") or call.get("name")
    if not ref:
        raise Unprocessable("Missing value: id", errors=[{"field": "id", "message": "Missing value"}])
    return service.get_dataset(call.session, call.reader, str(ref))


def package_update(call: Call) -> dict[str, Any]:
    """Replace the metadata (fields not given return to their defaults); resources are kept unless given."""
    ds = _existing(call)
    given = package_fields(call.params)
    full = {k: None for k in ("title_en", "description_zh", "description_en", "themes", "keywords", "licence",
                              "frequency", "spatial", "temporal_start", "temporal_end", "contact_name",
                              "contact_email", "grade")}
    full.update(given.model_dump(exclude_unset=True))
    full["themes"] = full["themes"] or []
    full["keywords"] = full["keywords"] or []
    service.update_dataset(call.session, call.reader, ds, type(given).model_construct(**full),
                           note=str(call.get("change_note", "") or ""))
    if "resources" in call.params:
        _apply_resources(call, ds, call.params["resources"])
    _publication(call, ds, default_private=None)
    return _pkg(call, ds)


def package_patch(call: Call) -> dict[str, Any]:
    ds = _existing(call)
    service.update_dataset(call.session, call.reader, ds, package_fields(call.params),
                           note=str(call.get("change_note", "") or ""))
    if "resources" in call.params:
        _apply_resources(call, ds, call.params["resources"])
    _publication(call, ds, default_private=None)
    return _pkg(call, ds)


def package_delete(call: Call) -> None:
    service.delete_dataset(call.session, call.reader, _existing(call))


def resource_show(call: Call) -> dict[str, Any]:
    res = service.get_resource(call.session, call.reader, str(call.require("id")))
    return resource_dict(res, call.base_url, res.dataset.name)


def _field_types(call: Call) -> dict[str, str] | None:
    raw = call.json_param("fields", None)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise Unprocessable("fields must be a list of {id, type}", errors=[{"field": "fields", "message": "bad"}])
    try:
        parsed = [DatastoreField.model_validate(f) for f in raw]
    except ValidationError as exc:
        raise Unprocessable("invalid fields", errors=[{"field": "fields", "message": str(exc.errors()[0]["msg"])}]
                            ) from None
    return {f.id: f.type for f in parsed if f.type}


def resource_create(call: Call) -> dict[str, Any]:
    ds = service.get_dataset(call.session, call.reader, str(call.require("package_id")))
    res = service.add_resource(call.session, call.reader, ds, resource_fields(call.params, call.base_url),
                               upload=call.upload, field_types=_field_types(call),
                               max_bytes=opendata_settings().max_upload_bytes)
    return resource_dict(res, call.base_url, ds.name)


def resource_update(call: Call) -> dict[str, Any]:
    res = service.get_resource(call.session, call.reader, str(call.require("id")))
    res = service.update_resource(call.session, call.reader, res, resource_fields(call.params, call.base_url),
                                  upload=call.upload, field_types=_field_types(call),
                                  max_bytes=opendata_settings().max_upload_bytes)
    return resource_dict(res, call.base_url, res.dataset.name)


def resource_delete(call: Call) -> None:
    service.delete_resource(call.session, call.reader,
                            service.get_resource(call.session, call.reader, str(call.require("id"))))


def organization_list(call: Call) -> list[Any]:
    orgs = identity.list_organisations(call.session)
    if call.bool_param("all_fields", False):
        counts = service.publisher_counts(call.session, call.reader)
        return [org_dict(o, counts.get(o.code, 0)) for o in orgs]
    return [o.code for o in orgs]


def organization_show(call: Call) -> dict[str, Any]:
    ref = str(call.require("id"))
    try:
        org = identity.get_organisation(call.session, ref)
    except NotFound:
        raise NotFound(f"Organization not found: {ref}") from None
    counts = service.publisher_counts(call.session, call.reader)
    out = org_dict(org, counts.get(org.code, 0))
    if call.bool_param("include_datasets", False):
        res = service.search(call.session, call.reader, filters=[("organization", org.code)], rows=1000,
                             facet_fields=[])
        out["packages"] = [_pkg(call, d) for d in res.datasets]
    return out


def _theme_counts(call: Call) -> dict[str, int]:
    res = service.search(call.session, call.reader, facet_fields=["theme"], rows=0, facet_limit=1000)
    return res.facets.get("theme", {})


def group_list(call: Call) -> list[Any]:
    if call.bool_param("all_fields", False):
        counts = _theme_counts(call)
        return [group_dict(c, counts.get(c, 0)) for c in THEMES]
    return list(THEMES)


def group_show(call: Call) -> dict[str, Any]:
    ref = str(call.require("id"))
    if ref not in THEMES:
        raise NotFound(f"Group not found: {ref}")
    return group_dict(ref, _theme_counts(call).get(ref, 0))


def tag_list(call: Call) -> list[str]:
    visible = select(Dataset.id).where(service.visible_clause(call.reader))
    stmt = (select(FacetValue.value).where(FacetValue.facet == "keyword", FacetValue.dataset_id.in_(visible))
            .group_by(FacetValue.value).order_by(func.count().desc(), FacetValue.value))
    query = call.get("query")
    if query:
        stmt = stmt.where(FacetValue.value.contains(str(query), autoescape=True))
    return list(call.session.scalars(stmt.limit(1000)))


# --- DataStore actions -------------------------------------------------------------------------------------------


def _ds_resource(call: Call, *, edit: bool) -> Any:
    res = service.get_resource(call.session, call.reader, str(call.require("resource_id")))
    if edit:
        if not service.can_edit(call.reader, res.dataset):
            raise Forbidden(f"only staff of {res.dataset.org_code} holding opendata.publish may change this data")
    elif not service.can_read_data(call.reader, res.dataset):
        raise Forbidden("the data of this dataset is not open to you (有条件开放 / 不予开放)")
    return res


def _records(call: Call) -> list[Any]:
    records = call.json_param("records", [])
    if not isinstance(records, list):
        raise Unprocessable("records must be a list", errors=[{"field": "records", "message": "must be a list"}])
    return records


def datastore_create(call: Call) -> dict[str, Any]:
    resource = call.get("resource")
    if isinstance(resource, dict) and not call.get("resource_id"):
        ds = service.get_dataset(call.session, call.reader, str(resource.get("package_id", "")))
        res = service.add_resource(call.session, call.reader, ds,
                                   resource_fields({**resource, "resource_type": "api"} if resource.get("url") else
                                                   {**resource, "resource_type": "link",
                                                    "url": f"{call.base_url}/api/3/action/datastore_search"},
                                                   call.base_url))
    else:
        res = _ds_resource(call, edit=True)
    raw_fields = call.json_param("fields", None)
    pk = call.json_param("primary_key", [])
    pk = [pk] if isinstance(pk, str) else pk
    if not res.datastore_table:
        if not isinstance(raw_fields, list) or not raw_fields:
            raise Unprocessable("fields are needed to create a DataStore table",
                                errors=[{"field": "fields", "message": "Missing value"}])
        try:
            fields = [DatastoreField.model_validate(f) for f in raw_fields]
        except ValidationError as exc:
            raise Unprocessable("invalid fields", errors=[{"field": "fields", "message": exc.errors()[0]["msg"]}]
                                ) from None
        if len({f.id for f in fields}) != len(fields) or any(f.id in datastore.RESERVED for f in fields):
            raise Unprocessable("field ids must be unique and not _id",
                                errors=[{"field": "fields", "message": "duplicate or reserved id"}])
        datastore.create(call.session, res, [f.model_dump() for f in fields], primary_key=pk)
    elif raw_fields:
        known = {f["id"] for f in res.fields}
        new = [f for f in raw_fields if not isinstance(f, dict) or f.get("id") not in known]
        if new:
            raise Conflict("adding fields to an existing table is not supported; delete and recreate it",
                           errors=[{"field": "fields", "message": "unknown fields"}])
    records = _records(call)
    if records:
        datastore.upsert(call.session, res, records, "insert")
    _changed(call, res, "datastore_create")
    return {"resource_id": res.id, "fields": [{"id": f["id"], "type": f["type"]} for f in res.fields],
            "primary_key": res.primary_key, "method": "insert"}


def _changed(call: Call, res: Any, action: str) -> None:
    from cityplus.core import audit

    assert call.reader.actor is not None
    audit.append(call.session, call.reader.actor, f"opendata.{action}", "opendata_resource", res.id,
                 {"rows": res.row_count})


def datastore_upsert(call: Call) -> dict[str, Any]:
    res = _ds_resource(call, edit=True)
    if not res.datastore_table:
        raise NotFound(f"Resource {res.id} has no DataStore table")
    method = str(call.get("method", "upsert"))
    records = _records(call)
    datastore.upsert(call.session, res, records, method)
    _changed(call, res, "datastore_upsert")
    return {"resource_id": res.id, "method": method, "records": records}


def datastore_delete(call: Call) -> dict[str, Any]:
    res = _ds_resource(call, edit=True)
    if not res.datastore_table:
        raise NotFound(f"Resource {res.id} has no DataStore table")
    filters = call.json_param("filters", None)
    if filters is None:
        datastore.drop(call.session, res)
    else:
        if not isinstance(filters, dict):
            raise Unprocessable("filters must be an object", errors=[{"field": "filters", "message": "bad"}])
        datastore.delete_rows(call.session, res, filters)
    _changed(call, res, "datastore_delete")
    return {"resource_id": res.id, "filters": filters}


def datastore_search(call: Call) -> dict[str, Any]:
    res = _ds_resource(call, edit=False)
    if not res.datastore_table:
        raise NotFound(f"Resource {res.id} has no DataStore table")
    filters = call.json_param("filters", {})
    if not isinstance(filters, dict):
        raise Unprocessable("filters must be an object", errors=[{"field": "filters", "message": "bad"}])
    q = call.json_param("q", "")
    if not isinstance(q, str | dict):
        raise Unprocessable("q must be a string or an object", errors=[{"field": "q", "message": "bad"}])
    fields = call.json_param("fields", None)
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
        raise Unprocessable("fields must be a list of names", errors=[{"field": "fields", "message": "bad"}])
    sort = call.get("sort", "")
    if isinstance(sort, list):
        sort = ",".join(str(s) for s in sort)
    fmt = call.get("records_format", "objects")
    if fmt != "objects":
        raise Unprocessable("only records_format=objects is supported",
                            errors=[{"field": "records_format", "message": "unsupported"}])
    limit = call.int_param("limit", 100, 0, opendata_settings().max_rows)
    offset = call.int_param("offset", 0)
    out = datastore.search(call.session, res, filters=filters, q=q, fields=fields, sort=str(sort or ""),
                           distinct=call.bool_param("distinct", False), limit=limit, offset=offset,
                           include_total=call.bool_param("include_total", True))
    base = f"/api/3/action/datastore_search?resource_id={res.id}"
    out.update({"resource_id": res.id, "include_total": out["total"] is not None, "records_format": "objects",
                "_links": {"start": base, "next": f"{base}&offset={offset + limit}"}})
    if out["total"] is None:
        del out["total"]
    return out


@dataclass(frozen=True)
class Action:
    fn: Callable[[Call], Any]
    write: bool = False


ACTIONS: dict[str, Action] = {
    "status_show": Action(status_show), "package_list": Action(package_list),
    "package_search": Action(package_search), "package_show": Action(package_show),
    "package_create": Action(package_create, True), "package_update": Action(package_update, True),
    "package_patch": Action(package_patch, True), "package_delete": Action(package_delete, True),
    "resource_show": Action(resource_show), "resource_create": Action(resource_create, True),
    "resource_update": Action(resource_update, True), "resource_patch": Action(resource_update, True),
    "resource_delete": Action(resource_delete, True),
    "organization_list": Action(organization_list), "organization_show": Action(organization_show),
    "group_list": Action(group_list), "group_show": Action(group_show), "tag_list": Action(tag_list),
    "datastore_create": Action(datastore_create, True), "datastore_upsert": Action(datastore_upsert, True),
    "datastore_delete": Action(datastore_delete, True), "datastore_search": Action(datastore_search),
}


# --- envelope ----------------------------------------------------------------------------------------------------


def _help(request: Request, name: str) -> str:
    return str(request.url_for("ckan_action_help")) + f"?name={name}"


def ckan_error(request: Request, name: str, exc: DomainError) -> JSONResponse:
    error: dict[str, Any]
    if isinstance(exc, search_index.SearchQueryError):
        status, error = 400, {"__type": "Search Query Error", "message": f"Search Query is invalid: {exc.detail}"}
    elif isinstance(exc, NotFound):
        status, error = 404, {"__type": "Not Found Error", "message": f"Not found: {exc.detail}"}
    elif isinstance(exc, Forbidden | Unauthenticated):
        status, error = 403, {"__type": "Authorization Error", "message": f"Access denied: {exc.detail}"}
    elif isinstance(exc, Unprocessable | Conflict):
        status, error = 409, {"__type": "Validation Error", "message": exc.detail}
        for e in exc.errors:
            key = str(e.get("field", "__all__"))
            error.setdefault(CKAN_NAMES.get(key, key), []).append(str(e.get("message", "invalid")))
    else:
        status, error = 400, {"__type": "Bad Request", "message": exc.detail}
    return JSONResponse({"help": _help(request, name), "success": False, "error": error}, status_code=status)


async def _params(request: Request) -> tuple[dict[str, Any], tuple[str, bytes] | None]:
    """Action parameters from the query string (GET) or a JSON / form body (POST); an uploaded file if any."""
    params: dict[str, Any] = dict(request.query_params)
    upload = None
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            limit = opendata_settings().max_upload_bytes
            async with request.form(max_part_size=limit + 1) as form:
                for k, v in form.multi_items():
                    if isinstance(v, UploadFile):
                        upload = (v.filename or "upload", await v.read())
                    else:
                        params[k] = v  # JSON-valued parameters (fields, filters …) are parsed by the action
        else:
            raw = await request.body()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise DomainError("Bad request - JSON Error: the body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise DomainError("Bad request - JSON Error: the body must be a JSON object")
                params.update(body)
    return params, upload


def router() -> APIRouter:
    r = APIRouter(tags=["ckan"])

    @r.get("/api/3/action", operation_id="ckan_action_help", include_in_schema=False,
           dependencies=[Depends(CkanAccess())])
    def ckan_action_help(request: Request) -> JSONResponse:
        """The list of supported actions."""
        return JSONResponse({"help": str(request.url), "success": True, "result": sorted(ACTIONS)})

    async def run(name: str, request: Request, session: Session, caller: Principal | None) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        auth_error = getattr(request.state, "ckan_auth_error", None)
        if auth_error is not None:
            return ckan_error(request, name, auth_error)
        action = ACTIONS.get(name)
        if action is None:
            return JSONResponse({"help": _help(request, name), "success": False,
                                 "error": {"__type": "Bad Request", "message": f"Action name not known: {name}"}},
                                status_code=400)
        if action.write and request.method != "POST":
            return ckan_error(request, name, DomainError(f"{name} changes data: send it as POST"))
        try:
            params, upload = await _params(request)
        except DomainError as exc:
            return ckan_error(request, name, exc)
        ctx = get_ctx(request)
        call = Call(session=session, reader=Reader.of(caller), params=params,
                    base_url=ctx.settings.base_url.rstrip("/"), upload=upload)

        def execute() -> Any:
            try:
                result = action.fn(call)
                session.flush()
                return result, None
            except DomainError as exc:
                session.rollback()
                return None, exc
            except (IntegrityError, DBAPIDataError) as exc:
                # The database refused a row (duplicate primary key, value out of range): the caller's data is at
                # fault; the transaction is rolled back whole.
                session.rollback()
                detail = str(exc.orig).splitlines()[0][:200] if exc.orig else "the database refused the data"
                return None, Conflict(f"the data was refused: {detail}",
                                      errors=[{"field": "records", "message": detail}])

        result, error = await run_in_threadpool(execute)
        if error is not None:
            return ckan_error(request, name, error)
        return JSONResponse({"help": _help(request, name), "success": True, "result": result})

    for prefix in ("/api/3/action", "/api/action"):
        tag = "3" if "3" in prefix else "unversioned"

        @r.get(prefix + "/{name}", operation_id=f"ckan_action_get_{tag}", include_in_schema=prefix.endswith("3"))
        async def ckan_get(name: str, request: Request, session: DbSession, caller: CkanCaller) -> JSONResponse:
            """Run a read action (CKAN Action API)."""
            return await run(name, request, session, caller)

        @r.post(prefix + "/{name}", operation_id=f"ckan_action_post_{tag}", include_in_schema=prefix.endswith("3"))
        async def ckan_post(name: str, request: Request, session: DbSession, caller: CkanCaller) -> JSONResponse:
            """Run any action (CKAN Action API)."""
            return await run(name, request, session, caller)

    return r
