"""Open-data portal pages: search with facets, dataset pages with previews, downloads, publisher forms."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from cityplus.api.deps import Ctx, DbSession, Principal
from cityplus.core.errors import DomainError, Forbidden, NotFound
from cityplus.core.identity import service as identity
from cityplus.modules.opendata import datastore, downloads, service
from cityplus.modules.opendata.ckan_dicts import validation_error
from cityplus.modules.opendata.models import Dataset
from cityplus.modules.opendata.quality import quality
from cityplus.modules.opendata.schemas import DatasetFields, ResourceFields
from cityplus.modules.opendata.search import SearchQueryError
from cityplus.modules.opendata.service import Reader
from cityplus.modules.opendata.settings import opendata_settings
from cityplus.modules.opendata.vocab import FREQUENCIES, GRADES, LICENCES, OPENING, PLAN_AREAS, SHARING, THEMES
from cityplus.web.i18n import N_
from cityplus.web.render import Msg, PageScoped, PublicPage, redirect, render

PER_PAGE = 20
PREVIEW_ROWS = 20
FACETS = ("theme", "organization", "format", "opening", "license_id")
SORTS = {"": N_("Relevance"), "metadata_modified desc": N_("Last modified"), "popularity desc": N_("Most downloaded")}
CHECK_LABELS = {"licence": N_("Open licence"), "description": N_("Description"), "temporal": N_("Time coverage"),
                "spatial": N_("Area coverage"), "frequency": N_("Update frequency"),
                "on_time": N_("Updated on time"), "open_format": N_("Open format"),
                "reachable": N_("Resources reachable"), "documentation": N_("Documentation")}


def _vocab() -> dict[str, Any]:
    return {"themes": THEMES, "plan_areas": PLAN_AREAS, "licences": LICENCES, "frequencies": FREQUENCIES,
            "opening": OPENING, "sharing": SHARING, "grades": GRADES}


def _form_errors(exc: DomainError) -> dict[str, Msg]:
    """Field errors of a service error, shown beside the fields (the detail stays in the service's words)."""
    errors: dict[str, Msg] = {}
    for e in exc.errors or [{"field": "form", "message": exc.detail}]:
        errors[str(e.get("field", "form"))] = Msg(N_("Check this entry: %(detail)s"),
                                                   {"detail": str(e.get("message", exc.detail))})
    return errors


def router() -> APIRouter:
    """Public catalogue pages and the publisher department's forms."""
    r = APIRouter(prefix="/opendata", include_in_schema=False)

    @r.get("", response_class=HTMLResponse)
    def catalogue(request: Request, principal: PublicPage, session: DbSession, q: str = "", theme: str = "",
                  organization: str = "", format: str = "", opening: str = "", license_id: str = "",
                  sort: str = "", page: str = "1") -> HTMLResponse:
        """Search the catalogue, with facet counts and filters."""
        q = q.strip()[:200]
        chosen = {k: v[:100] for k, v in (("theme", theme), ("organization", organization), ("format", format),
                                          ("opening", opening), ("license_id", license_id)) if v}
        number = int(page) if page.isdigit() and 0 < int(page) < 10_000 else 1
        sort = sort if sort in SORTS else ""
        try:
            result = service.search(session, Reader.of(principal), q=q, filters=list(chosen.items()),
                                    facet_fields=FACETS, sort=sort, rows=PER_PAGE, start=(number - 1) * PER_PAGE)
        except SearchQueryError:
            result = service.search(session, Reader.of(principal), rows=0)
        query = {"q": q, **chosen, "sort": sort}
        base = {k: v for k, v in query.items() if v}
        orgs = {o.code: o for o in identity.list_organisations(session)}
        return render(request, "opendata/index.html", {
            "q": q, "chosen": chosen, "result": result, "orgs": orgs, "sorts": SORTS, "sort": sort,
            "page": number, "pages": max(1, -(-result.count // PER_PAGE)), "base": base,
            "link": lambda **kw: "/opendata?" + urlencode({k: v for k, v in {**base, **kw}.items() if v}),
            **_vocab()})

    def dataset_page(request: Request, session: Session, reader: Reader, ds: Dataset, *, status: int = 200,
                     errors: dict[str, Msg] | None = None, form: dict[str, Any] | None = None,
                     notice: str | None = None) -> HTMLResponse:
        preview = chart = map_ = None
        table = next((res for res in ds.resources if res.datastore_table), None)
        if table is not None and service.can_read_data(reader, ds):
            preview = datastore.search(session, table, limit=PREVIEW_ROWS, include_total=True)
            chart = chart_of(preview)
            map_ = map_of(session, table)
        q = quality(ds)
        examples = []
        if table is not None:
            base = str(request.base_url)
            examples = [f"curl '{base}api/3/action/datastore_search?resource_id={table.id}&limit=5'",
                        f"import ckanapi\nportal = ckanapi.RemoteCKAN('{base}')\n"
                        f"rows = portal.action.datastore_search(resource_id='{table.id}', limit=5)"]
        editable = service.can_edit(reader, ds)
        return render(request, "opendata/dataset.html", {
            "ds": ds, "org": identity.get_organisation(session, ds.org_code), "quality": q,
            "check_labels": CHECK_LABELS, "preview": preview, "api_examples": examples, "chart": chart,
            "map": map_, "preview_res": table,
            "can_read_data": service.can_read_data(reader, ds), "editable": editable,
            "versions": service.versions(session, ds) if editable else [],
            "errors": errors or {}, "form": form or {}, "notice": notice, **_vocab()}, status=status)

    @r.get("/dataset/{name}", response_class=HTMLResponse)
    def dataset(name: str, request: Request, principal: PublicPage, session: DbSession,
                notice: str | None = None) -> HTMLResponse:
        """A dataset: metadata, resources, preview, quality score, API examples."""
        reader = Reader.of(principal)
        ds = service.get_dataset(session, reader, name[:100])
        return dataset_page(request, session, reader, ds,
                            notice=N_("Saved.") if notice == "saved" else None)

    @r.get("/dataset/{name}/resource/{rid}/download")
    def download(name: str, rid: str, request: Request, principal: PublicPage, session: DbSession, ctx: Ctx,
                 format: str = "") -> Response:
        """The original file, or the table streamed as csv, json, xlsx or geojson."""
        reader = Reader.of(principal)
        res = service.get_resource(session, reader, rid[:36])
        if res.dataset.name != name or not service.can_read_data(reader, res.dataset):
            raise NotFound("no such download")
        if not format:
            stored = service.resource_file(session, res)
            if stored is None:
                raise NotFound("this resource has no file")
            _count(ctx, res.dataset_id)
            return Response(stored.content, media_type="application/octet-stream", headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(stored.filename)}"})
        body = downloads.stream(ctx.db, res, format)  # refuses a bad format before anything is counted
        _count(ctx, res.dataset_id)
        filename = f"{res.dataset.name}-{res.id[:8]}.{format}"
        return StreamingResponse(body, media_type=downloads.MEDIA[format],
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    # --- publisher ------------------------------------------------------------------------------------------

    def publish_page(request: Request, session: Session, principal: Principal, *, status: int = 200,
                     errors: dict[str, Msg] | None = None, form: dict[str, Any] | None = None) -> HTMLResponse:
        reader = Reader.of(principal)
        mine = service.search(session, reader, filters=[("organization", reader.department or "-")], rows=500,
                              facet_fields=[], sort="metadata_modified desc").datasets
        return render(request, "opendata/publish.html", {
            "datasets": mine, "errors": errors or {}, "form": form or {}, "org": reader.department,
            **_vocab()}, status=status)

    @r.get("/publish", response_class=HTMLResponse)
    def publish(request: Request, principal: PageScoped("opendata.publish"), session: DbSession) -> HTMLResponse:
        """The department's datasets (drafts included) and the form for a new one."""
        return publish_page(request, session, principal)

    def _fields(form: dict[str, Any]) -> DatasetFields:
        raw = {k: v for k, v in form.items() if v not in ("", None) or k in ("title_en", "description_zh",
                                                                             "description_en", "spatial")}
        raw["themes"] = form.get("themes") or []
        raw["keywords"] = [k.strip() for k in str(form.get("keywords", "")).replace("，", ",").split(",")
                           if k.strip()]
        try:
            return DatasetFields.model_validate(raw)
        except ValidationError as exc:
            raise validation_error(exc) from None

    async def _read_form(request: Request) -> dict[str, Any]:
        form = await request.form()
        out: dict[str, Any] = {k: str(v)[:20_000] for k, v in form.items() if not isinstance(v, UploadFile)}
        out["themes"] = [str(t) for t in form.getlist("themes")]
        out.pop("csrf_token", None)
        return out

    @r.post("/publish")
    async def create(request: Request, principal: PageScoped("opendata.publish"), session: DbSession) -> Response:
        """Create a draft dataset of the caller's department."""
        from starlette.concurrency import run_in_threadpool

        form = await _read_form(request)
        form["org_code"] = Reader.of(principal).department or ""

        def run() -> Response:
            try:
                with session.begin_nested():
                    ds = service.create_dataset(session, Reader.of(principal), _fields(form))
            except Forbidden:
                raise
            except DomainError as exc:
                return publish_page(request, session, principal, status=422, errors=_form_errors(exc), form=form)
            return redirect(f"/opendata/dataset/{ds.name}", notice="saved")

        return await run_in_threadpool(run)

    @r.post("/dataset/{name}/edit")
    async def edit(name: str, request: Request, principal: PageScoped("opendata.publish"),
                   session: DbSession) -> Response:
        """Change a dataset's metadata (a published one gets a new version with the change note)."""
        from starlette.concurrency import run_in_threadpool

        form = await _read_form(request)
        note = str(form.pop("change_note", ""))[:2000]
        reader = Reader.of(principal)

        def run() -> Response:
            ds = service.get_dataset(session, reader, name[:100])
            try:
                with session.begin_nested():
                    fields = _fields({**form, "org_code": ds.org_code, "name": ds.name})
                    service.update_dataset(session, reader, ds, fields, note=note)
            except (Forbidden, NotFound):
                raise
            except DomainError as exc:
                session.refresh(ds)
                return dataset_page(request, session, reader, ds, status=422, errors=_form_errors(exc), form=form)
            return redirect(f"/opendata/dataset/{ds.name}", notice="saved")

        return await run_in_threadpool(run)

    @r.post("/dataset/{name}/publish")
    def publish_dataset(name: str, principal: PageScoped("opendata.publish"), session: DbSession,
                        action: Annotated[str, Form()] = "publish") -> Response:
        """Publish a draft, or withdraw a published dataset."""
        reader = Reader.of(principal)
        ds = service.get_dataset(session, reader, name[:100])
        if action == "withdraw":
            service.withdraw_dataset(session, reader, ds)
        else:
            service.publish_dataset(session, reader, ds)
        return redirect(f"/opendata/dataset/{ds.name}", notice="saved")

    @r.post("/dataset/{name}/resources")
    def upload(name: str, request: Request, principal: PageScoped("opendata.publish"), session: DbSession,
               upload: Annotated[UploadFile, File()], title: Annotated[str, Form()] = "") -> Response:
        """Upload a file as a new resource (tabular files are loaded into the DataStore)."""
        reader = Reader.of(principal)
        ds = service.get_dataset(session, reader, name[:100])
        limit = opendata_settings().max_upload_bytes
        data = upload.file.read(limit + 1)
        try:
            with session.begin_nested():
                service.add_resource(session, reader, ds, ResourceFields(name=title.strip()[:200] or None,
                                                                         kind="file"),
                                     upload=(upload.filename or "upload", data), max_bytes=limit)
        except (Forbidden, NotFound):
            raise
        except DomainError as exc:
            session.refresh(ds)
            return dataset_page(request, session, reader, ds, status=422, errors=_form_errors(exc))
        return redirect(f"/opendata/dataset/{ds.name}", notice="saved")

    return r


MAP_W, MAP_H, MAP_POINTS = 480, 320, 500
CHART_W, CHART_H = 480, 200


def chart_of(preview: dict[str, Any]) -> dict[str, Any] | None:
    """Bars of the first numeric field over the preview rows (labelled by the first text field), as SVG geometry."""
    fields = preview["fields"]
    skip = set(downloads.LON_NAMES) | set(downloads.LAT_NAMES) | {"_id"}
    num = next((f["id"] for f in fields if f["type"] in ("int", "numeric") and f["id"].lower() not in skip
                and "编号" not in f["id"]), None)
    label = next((f["id"] for f in fields if f["type"] in ("text", "date")), None)
    values = [(str(r.get(label, "")) if label else str(r["_id"]), r[num]) for r in preview["records"]
              if num and isinstance(r.get(num), int | float)]
    if not values:
        return None
    top = max(v for _, v in values) or 1
    width = CHART_W / len(values)
    bars = [{"x": round(i * width + 1, 1), "w": round(max(width - 2, 1), 1),
             "h": round(max(v, 0) / top * (CHART_H - 20), 1), "label": lab, "value": v}
            for i, (lab, v) in enumerate(values)]
    for b in bars:
        b["y"] = round(CHART_H - b["h"], 1)
    return {"field": num, "bars": bars, "w": CHART_W, "h": CHART_H}


def map_of(session: Session, res: Any) -> dict[str, Any] | None:
    """Up to 500 points of a table with longitude/latitude fields, projected into an SVG box."""
    try:
        coords = downloads._coordinates(res)
    except DomainError:
        return None
    if coords[0] != "point":
        return None
    lon_f, lat_f = res.fields[coords[1]]["id"], res.fields[coords[2]]["id"]
    rows = datastore.search(session, res, fields=[lon_f, lat_f], limit=MAP_POINTS, include_total=False)["records"]
    pts = [(float(r[lon_f]), float(r[lat_f])) for r in rows
           if isinstance(r[lon_f], int | float) and isinstance(r[lat_f], int | float)]
    if not pts:
        return None
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    sx = (MAP_W - 20) / ((x1 - x0) or 1)
    sy = (MAP_H - 20) / ((y1 - y0) or 1)
    return {"points": [{"x": round(10 + (x - x0) * sx, 1), "y": round(MAP_H - 10 - (y - y0) * sy, 1)}
                       for x, y in pts], "w": MAP_W, "h": MAP_H, "n": len(pts)}


def _count(ctx: Any, dataset_id: str) -> None:
    """One more download, in its own short transaction (the page's session is read-only)."""
    with ctx.db.session() as writer:
        service.count_download(writer, dataset_id)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
