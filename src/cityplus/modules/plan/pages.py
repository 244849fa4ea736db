"""Plan pages: the action plan, one area, one task and which modules serve each task (coverage)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cityplus.api.deps import Ctx, DbSession
from cityplus.core.identity import service as identity
from cityplus.modules.plan import service
from cityplus.web.pages import services_by_area
from cityplus.web.render import PublicPage, render

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
    def task(number: int, request: Request, _: PublicPage, session: DbSession, ctx: Ctx) -> HTMLResponse:
        """One task: full text, responsible units (the first leads), named platforms, serving modules."""
        t = service.get_task(session, number)
        by_code = {o.code: o for o in identity.list_organisations(session)}
        return render(request, "plan/task.html", {
            "task": t, "area": service.get_area(session, t.area_number), "orgs": by_code,
            "modules": ctx.registry.modules_for_task(t.number),
            "prev": number - 1 if number > 1 else None, "next": number + 1 if number < TASKS else None})

    @r.get("/coverage", response_class=HTMLResponse)
    def coverage(request: Request, _: PublicPage, session: DbSession, ctx: Ctx) -> HTMLResponse:
        """For each of the 46 tasks, the installed modules serving it (from the module manifests)."""
        rows = service.coverage(session, ctx.registry)
        return render(request, "plan/coverage.html", {
            "rows": rows, "covered": sum(1 for row in rows if row.modules), "total": len(rows),
            "modules": list(ctx.registry)})

    return r
