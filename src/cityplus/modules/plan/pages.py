"""Plan pages: the action plan, one area, one task, coverage, and the supervision (督查督办) pages: work items,
one item with its actions, the dashboard and the public progress page."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from cityplus.api.deps import Ctx, DbSession, Principal
from cityplus.core.errors import DomainError, NotFound
from cityplus.core.identity import service as identity
from cityplus.modules.plan import service
from cityplus.modules.plan.schemas import (
    CompletionIn,
    ExtensionIn,
    ItemCreate,
    ItemUpdate,
    ReportIn,
    ReturnIn,
    SubItemCreate,
    VersionIn,
)
from cityplus.modules.plan.settings import PlanSettings
from cityplus.web.i18n import N_
from cityplus.web.pages import services_by_area
from cityplus.web.render import Msg, PageScoped, PublicPage, redirect, render

AREAS = 12
TASKS = 46


def router() -> APIRouter:
    """The plan module's portal pages (public, like its API)."""
    r = APIRouter(prefix="/plan", include_in_schema=False)

    @r.get("", response_class=HTMLResponse)
    def plan(request: Request, _: PublicPage, session: DbSession) -> HTMLResponse:
        """The 12 areas of the action plan with their 46 tasks."""
        return render(request, "plan/index.html", {"areas": service.list_areas(session),
                                                   "orgs": identity.organisation_by_name(session)})

    @r.get("/areas/{number:int}", response_class=HTMLResponse)
    def area(number: int, request: Request, _: PublicPage, session: DbSession, ctx: Ctx) -> HTMLResponse:
        """One area: its aim, lead units, tasks and the platform's services under it."""
        a = service.get_area(session, number)
        return render(request, "plan/area.html", {
            "area": a, "orgs": identity.organisation_by_name(session),
            "services": services_by_area(ctx.registry).get(number, []),
            "prev": number - 1 if number > 1 else None, "next": number + 1 if number < AREAS else None})

    @r.get("/tasks/{number:int}", response_class=HTMLResponse)
    def task(number: int, request: Request, principal: PublicPage, session: DbSession, ctx: Ctx) -> HTMLResponse:
        """One task: full text, responsible units (the first leads), named platforms, serving modules."""
        t = service.get_task(session, number)
        by_code = {o.code: o for o in identity.list_organisations(session)}
        access = service.access_of(session, principal.actor) if principal else service.Access(office=False, org=None)
        today = service.city_today()
        items = [i for i in service.list_items(session, access, task=number) if i.parent_id is None]
        return render(request, "plan/task.html", {
            "task": t, "area": service.get_area(session, t.area_number), "orgs": by_code,
            "modules": ctx.registry.modules_for_task(t.number), "usage": service.module_usage(session, ctx.registry),
            "items": items, "lights_of": {i.id: service.light(i, today, PlanSettings().warn_workdays) for i in items},
            "prev": number - 1 if number > 1 else None, "next": number + 1 if number < TASKS else None})

    @r.get("/coverage", response_class=HTMLResponse)
    def coverage(request: Request, _: PublicPage, session: DbSession, ctx: Ctx) -> HTMLResponse:
        """For each of the 46 tasks, the installed modules serving it (from the module manifests)."""
        rows = service.coverage(session, ctx.registry)
        return render(request, "plan/coverage.html", {
            "rows": rows, "covered": sum(1 for row in rows if row.modules), "total": len(rows),
            "modules": list(ctx.registry), "usage": service.module_usage(session, ctx.registry)})

    supervision_pages(r)
    return r


def _problem(exc: Exception) -> str:
    """What went wrong, for the page (the API's English wording, like the error pages' detail)."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
    return str(getattr(exc, "detail", exc))


def _status(exc: Exception) -> int:
    return exc.status if isinstance(exc, DomainError) else 422


def _kpi_values(kpi: list[str], kpi_value: list[str]) -> list[dict[str, Any]]:
    return [{"kpi": k, "value": v.strip()} for k, v in zip(kpi, kpi_value, strict=False) if v.strip()]


def supervision_pages(r: APIRouter) -> None:
    """Work items, one item and its actions, dashboard, public progress."""
    warn = PlanSettings().warn_workdays

    def item_page(request: Request, session: Session, principal: Principal, item_id: int, *,
                  error: str | None = None, status: int = 200) -> HTMLResponse:
        access = service.access_of(session, principal.actor)
        item = service.get_item(session, access, item_id)
        today = service.city_today()
        return render(request, "plan/item.html", {
            "item": item, "light": service.light(item, today, warn), "left": service.workdays_left(item, today),
            "orgs": {o.code: o for o in identity.list_organisations(session)},
            "reports": service.reports_of(session, item, access),
            "extensions": service.extensions_of(session, item) if not access.public_only else [],
            "events": service.timeline(session, item) if not access.public_only else [],
            "can": service.allowed_actions(session, access, item), "error": error,
            "subitems": service.list_items(session, access, parent=item.id),
            "parent": service.get_item(session, access, item.parent_id) if item.parent_id else None},
            status=status)

    def act(request: Request, session: Session, principal: Principal, item_id: int, do: Any) -> Response:
        """Run one action; back to the item page, or the page again with the problem."""
        try:
            with session.begin_nested():
                do()
        except (DomainError, ValidationError) as exc:
            if isinstance(exc, DomainError) and exc.status in (401, 404):
                raise
            return item_page(request, session, principal, item_id, error=_problem(exc), status=_status(exc))
        return redirect(f"/plan/items/{item_id}")

    @r.get("/items", response_class=HTMLResponse)
    def items(request: Request, principal: PageScoped("plan.read"), session: DbSession,
              light: str = "", status: str = "") -> HTMLResponse:
        """The work items the viewer may see, with their lights."""
        access = service.access_of(session, principal.actor)
        today = service.city_today()
        rows = service.list_items(session, access, status=status if status in service.STATUSES else None)
        lights = {i.id: service.light(i, today, warn) for i in rows}
        if light in service.LIGHTS:
            rows = [i for i in rows if lights[i.id] == light]
        return render(request, "plan/items.html", {
            "items": rows, "lights_of": lights, "lights": service.LIGHTS, "statuses": service.STATUSES,
            "light": light, "status": status, "office": access.office,
            "quarter": (today.year, (today.month - 1) // 3 + 1),
            "orgs": {o.code: o for o in identity.list_organisations(session)}})

    def new_page(request: Request, session: Session, form: dict[str, Any], errors: dict[str, Msg],
                 status: int = 200) -> HTMLResponse:
        return render(request, "plan/item_new.html", {
            "form": form, "errors": errors, "tasks": service.list_tasks(session),
            "org_list": identity.list_organisations(session)}, status=status)

    blank = {"task": "21", "title": "", "deliverable": "", "lead_org": "", "co_orgs": "", "start_date": "",
             "due_date": "", "public": False, "kpi_name": "", "kpi_unit": "", "kpi_baseline": "", "kpi_target": ""}

    @r.get("/items/new", response_class=HTMLResponse)
    def new_item(request: Request, principal: PageScoped("plan.manage"), session: DbSession) -> HTMLResponse:
        """The form to assign a work item (plan office)."""
        service.require_office(session, principal.actor)
        return new_page(request, session, dict(blank), {})

    @r.post("/items/new")
    def create_item(request: Request, principal: PageScoped("plan.manage"), session: DbSession,
                    task: Annotated[str, Form()] = "", title: Annotated[str, Form()] = "",
                    deliverable: Annotated[str, Form()] = "", lead_org: Annotated[str, Form()] = "",
                    co_orgs: Annotated[str, Form()] = "", start_date: Annotated[str, Form()] = "",
                    due_date: Annotated[str, Form()] = "", public: Annotated[str, Form()] = "",
                    kpi_name: Annotated[str, Form()] = "", kpi_unit: Annotated[str, Form()] = "",
                    kpi_baseline: Annotated[str, Form()] = "", kpi_target: Annotated[str, Form()] = "") -> Response:
        """Assign a work item (plan office)."""
        service.require_office(session, principal.actor)
        form = {"task": task, "title": title, "deliverable": deliverable, "lead_org": lead_org, "co_orgs": co_orgs,
                "start_date": start_date, "due_date": due_date, "public": bool(public), "kpi_name": kpi_name,
                "kpi_unit": kpi_unit, "kpi_baseline": kpi_baseline, "kpi_target": kpi_target}
        data: dict[str, Any] = {
            "task": task, "title": title, "deliverable": deliverable, "lead_org": lead_org,
            "co_orgs": [c.strip() for c in co_orgs.replace("，", ",").split(",") if c.strip()],
            "start_date": start_date or None, "due_date": due_date or None, "public": bool(public),
            "kpis": [{"name": kpi_name, "unit": kpi_unit, "baseline": kpi_baseline or 0, "target": kpi_target}]
            if kpi_name.strip() else []}
        errors: dict[str, Msg] = {}
        try:
            body = ItemCreate.model_validate(data)
            with session.begin_nested():
                item = service.create_item(session, principal.actor, body)
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                loc = e["loc"]
                field = ("kpi_" + str(loc[-1])) if loc and loc[0] == "kpis" else (str(loc[0]) if loc else "title")
                if field not in blank:
                    field = "due_date"
                errors.setdefault(field, Msg(N_("Check this value: %(problem)s"), {"problem": e["msg"]}))
        except DomainError as exc:
            field = exc.errors[0]["field"] if exc.errors and exc.errors[0].get("field") in blank else "title"
            errors[field] = Msg(N_("Check this value: %(problem)s"), {"problem": exc.detail})
        if errors:
            return new_page(request, session, form, errors, status=422)
        return redirect(f"/plan/items/{item.id}")

    @r.get("/items/{item_id:int}", response_class=HTMLResponse)
    def item(item_id: int, request: Request, principal: PageScoped("plan.read"), session: DbSession
             ) -> HTMLResponse:
        """One work item: facts, KPIs, the viewer's actions, extension requests, reports, timeline."""
        return item_page(request, session, principal, item_id)

    @r.post("/items/{item_id:int}/acknowledge")
    def acknowledge(item_id: int, request: Request, principal: PageScoped("plan.report"), session: DbSession,
                    version: Annotated[int, Form()] = 0) -> Response:
        """The lead unit acknowledges (签收)."""
        return act(request, session, principal, item_id, lambda: service.acknowledge(
            session, principal.actor, item_id, VersionIn(version=version)))

    @r.post("/items/{item_id:int}/report")
    def report(item_id: int, request: Request, principal: PageScoped("plan.report"), session: DbSession,
               text: Annotated[str, Form()] = "", public: Annotated[str, Form()] = "",
               kpi: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
               kpi_value: Annotated[list[str], Form()] = [],  # noqa: B006
               file: Annotated[UploadFile | None, File()] = None) -> Response:
        """A progress report, optionally with one attachment."""
        max_bytes = PlanSettings().attachment_max_bytes

        def do() -> None:
            rep = service.add_report(session, principal.actor, item_id, ReportIn.model_validate(
                {"text": text, "public": bool(public), "kpi_values": _kpi_values(kpi, kpi_value)}))
            if file is not None and file.filename:
                session.flush()
                service.add_attachment(session, principal.actor, rep.id, file.filename, file.content_type or "",
                                       file.file.read(max_bytes + 1), max_bytes)

        return act(request, session, principal, item_id, do)

    @r.post("/items/{item_id:int}/subitems")
    def break_down(item_id: int, request: Request, principal: PageScoped("plan.report"), session: DbSession,
                   title: Annotated[str, Form()] = "", due_date: Annotated[str, Form()] = "") -> Response:
        """The lead unit breaks its item down into a sub-item."""
        return act(request, session, principal, item_id, lambda: service.create_subitem(
            session, principal.actor, item_id, SubItemCreate.model_validate(
                {"title": title, "due_date": due_date or None})))

    @r.post("/items/{item_id:int}/edit")
    def edit(item_id: int, request: Request, principal: PageScoped("plan.manage"), session: DbSession,
             version: Annotated[int, Form()] = 0, title: Annotated[str, Form()] = "",
             deliverable: Annotated[str, Form()] = "", public: Annotated[str, Form()] = "") -> Response:
        """The plan office edits the item's title, deliverable and publication."""
        return act(request, session, principal, item_id, lambda: service.update_item(
            session, principal.actor, item_id, ItemUpdate.model_validate(
                {"version": version, "title": title, "deliverable": deliverable, "public": bool(public)})))

    @r.post("/items/{item_id:int}/complete")
    def complete(item_id: int, request: Request, principal: PageScoped("plan.report"), session: DbSession,
                 version: Annotated[int, Form()] = 0, text: Annotated[str, Form()] = "",
                 public: Annotated[str, Form()] = "",
                 kpi: Annotated[list[str], Form()] = [],  # noqa: B006
                 kpi_value: Annotated[list[str], Form()] = []) -> Response:  # noqa: B006
        """The lead unit reports completion."""
        return act(request, session, principal, item_id, lambda: service.report_completion(
            session, principal.actor, item_id, CompletionIn.model_validate(
                {"version": version, "text": text, "public": bool(public),
                 "kpi_values": _kpi_values(kpi, kpi_value)})))

    @r.post("/items/{item_id:int}/extend")
    def extend(item_id: int, request: Request, principal: PageScoped("plan.report"), session: DbSession,
               version: Annotated[int, Form()] = 0, reason: Annotated[str, Form()] = "",
               new_due_date: Annotated[str, Form()] = "") -> Response:
        """The lead unit requests an extension."""
        return act(request, session, principal, item_id, lambda: service.request_extension(
            session, principal.actor, item_id, ExtensionIn.model_validate(
                {"version": version, "reason": reason, "new_due_date": new_due_date or None})))

    @r.post("/items/{item_id:int}/close")
    def close(item_id: int, request: Request, principal: PageScoped("plan.manage"), session: DbSession,
              version: Annotated[int, Form()] = 0, note: Annotated[str, Form()] = "") -> Response:
        """The plan office closes the item (销号)."""
        return act(request, session, principal, item_id, lambda: service.close_item(
            session, principal.actor, item_id, VersionIn.model_validate({"version": version, "note": note})))

    @r.post("/items/{item_id:int}/return")
    def return_(item_id: int, request: Request, principal: PageScoped("plan.manage"), session: DbSession,
                version: Annotated[int, Form()] = 0, reason: Annotated[str, Form()] = "") -> Response:
        """The plan office returns the item with its reasons."""
        return act(request, session, principal, item_id, lambda: service.return_item(
            session, principal.actor, item_id, ReturnIn.model_validate({"version": version, "reason": reason})))

    @r.post("/extensions/{extension_id:int}/{decision:str}")
    def decide(extension_id: int, decision: str, request: Request, principal: PageScoped("plan.manage"),
               session: DbSession) -> Response:
        """The plan office approves or rejects an extension request."""
        if decision not in ("approve", "reject"):
            raise NotFound(f"no decision {decision!r}")
        with session.begin_nested():
            ext = service.decide_extension(session, principal.actor, extension_id, decision == "approve")
        return redirect(f"/plan/items/{ext.item_id}")

    @r.get("/import", response_class=HTMLResponse)
    def import_form(request: Request, principal: PageScoped("plan.manage"), session: DbSession) -> HTMLResponse:
        """Bulk-create work items from the XLSX template (plan office)."""
        service.require_office(session, principal.actor)
        return render(request, "plan/import.html", {"errors": [], "created": None})

    @r.post("/import", response_class=HTMLResponse)
    def import_upload(request: Request, principal: PageScoped("plan.manage"), session: DbSession,
                      file: Annotated[UploadFile | None, File()] = None) -> HTMLResponse:
        """Check every row; create all the items, or none and list each error with row and column."""
        from cityplus.modules.plan import exports

        service.require_office(session, principal.actor)
        data = file.file.read(exports.IMPORT_MAX_BYTES + 1) if file is not None else b""
        try:
            with session.begin_nested():
                created = service.import_xlsx(session, principal.actor, data)
        except DomainError as exc:
            errors = exc.errors or [{"field": "file", "message": exc.detail}]
            return render(request, "plan/import.html", {"errors": errors, "created": None}, status=exc.status)
        return render(request, "plan/import.html", {"errors": [], "created": created})

    @r.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request, principal: PageScoped("plan.report"), session: DbSession, ctx: Ctx,
                  as_of: str = "") -> HTMLResponse:
        """The supervision dashboard: figures in tables, charts drawn from the dashboard JSON."""
        try:
            day = date.fromisoformat(as_of) if as_of else service.city_today()
        except ValueError:
            day = service.city_today()
        access = service.access_of(session, principal.actor)
        usage = service.module_usage(session, ctx.registry)
        return render(request, "plan/dashboard.html", {
            "board": service.dashboard(session, access, day, warn), "usage": usage,
            "modules_for": ctx.registry.modules_for_task})

    @r.get("/progress", response_class=HTMLResponse)
    def progress(request: Request, _: PublicPage, session: DbSession, area: str = "") -> HTMLResponse:
        """Public progress (政务公开): what the plan office published, per area and task."""
        number = int(area) if area.isdigit() and 1 <= int(area) <= AREAS else None
        from cityplus.modules.plan import exports

        return render(request, "plan/progress.html", {
            "progress": exports.progress(session, service.city_today(), warn, area=number),
            "areas": service.list_areas(session), "area": number})
