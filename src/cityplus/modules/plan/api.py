"""Plan API: areas, tasks, responsible units and module coverage (public), and supervision (api_supervision)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from cityplus.api.deps import PUBLIC_ROUTE, Ctx, DbSession, Scoped
from cityplus.core.identity import service as identity
from cityplus.core.identity.models import Organisation
from cityplus.modules.plan import service
from cityplus.modules.plan.models import PlanArea, PlanTask
from cityplus.modules.plan.schemas import (
    AreaPublic,
    CoveragePublic,
    CoverageRowPublic,
    ModuleRef,
    OrgPlanPublic,
    TaskPublic,
    TaskSummary,
    UnitRef,
)

TaskNumber = Annotated[int, Path(ge=1, le=46, description="task number 1–46")]
AreaNumber = Annotated[int, Path(ge=1, le=12, description="area number 1–12")]


def task_summary(t: PlanTask) -> TaskSummary:
    return TaskSummary(number=t.number, numeral=t.numeral, area=t.area_number,
                       title={"zh": t.title_zh, "en": t.title_en},
                       units=[UnitRef(code=u.org_code, name_zh=u.name_zh, lead=u.is_lead) for u in t.units])


def area_public(a: PlanArea, orgs: dict[str, Organisation]) -> AreaPublic:
    return AreaPublic(number=a.number, numeral=a.numeral, key=a.key, title={"zh": a.title_zh, "en": a.title_en},
                      intro={"zh": a.intro_zh, "en": a.intro_en},
                      lead_units=[UnitRef(code=orgs[n].code, name_zh=n, lead=i == 0)
                                  for i, n in enumerate(a.lead_units)],
                      tasks=[t.number for t in a.tasks])


def router() -> APIRouter:
    r = APIRouter(prefix="/plan", tags=["plan"])

    @r.get("/areas", response_model=list[AreaPublic], operation_id="list_plan_areas", dependencies=[PUBLIC_ROUTE])
    def list_plan_areas(session: DbSession) -> list[AreaPublic]:
        """The plan's 12 areas with their lead units and tasks."""
        orgs = identity.organisation_by_name(session)
        return [area_public(a, orgs) for a in service.list_areas(session)]

    @r.get("/areas/{number}", response_model=AreaPublic, operation_id="get_plan_area", dependencies=[PUBLIC_ROUTE])
    def get_plan_area(number: AreaNumber, session: DbSession) -> AreaPublic:
        """One area."""
        return area_public(service.get_area(session, number), identity.organisation_by_name(session))

    @r.get("/tasks", response_model=list[TaskSummary], operation_id="list_plan_tasks", dependencies=[PUBLIC_ROUTE])
    def list_plan_tasks(
        session: DbSession,
        area: Annotated[int | None, Query(ge=1, le=12, description="only tasks of this area")] = None,
        unit: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9-]{1,31}$",
                                          description="only tasks this organisation code is responsible for")] = None,
        lead: Annotated[bool, Query(description="with unit: only tasks it leads")] = False,
    ) -> list[TaskSummary]:
        """The 46 tasks in plan order, filterable by area and responsible unit."""
        if unit is not None:
            identity.get_organisation(session, unit)  # 404 names the unknown code
        return [task_summary(t) for t in service.list_tasks(session, area=area, unit=unit, lead_only=lead)]

    @r.get("/tasks/{number}", response_model=TaskPublic, operation_id="get_plan_task", dependencies=[PUBLIC_ROUTE])
    def get_plan_task(number: TaskNumber, session: DbSession, ctx: Ctx) -> TaskPublic:
        """One task: full text, responsible units (first is the lead), named platforms, serving modules."""
        t = service.get_task(session, number)
        return TaskPublic(**task_summary(t).model_dump(), text={"zh": t.text_zh, "en": t.text_en},
                          platforms=t.platforms, units_note=t.units_note,
                          modules=[m.name for m in ctx.registry.modules_for_task(t.number)])

    @r.get("/coverage", response_model=CoveragePublic, operation_id="get_plan_coverage",
           dependencies=[PUBLIC_ROUTE])
    def get_plan_coverage(session: DbSession, ctx: Ctx) -> CoveragePublic:
        """For each task, the installed modules that serve it (from module manifests) with their live usage."""
        usage = service.module_usage(session, ctx.registry)
        rows = [CoverageRowPublic(task=c.task.number, numeral=c.task.numeral, area=c.task.area_number,
                                  title={"zh": c.task.title_zh, "en": c.task.title_en},
                                  modules=[ModuleRef(name=m.name, title=m.title, usage=usage.get(m.name, {}))
                                           for m in c.modules])
                for c in service.coverage(session, ctx.registry)]
        return CoveragePublic(tasks=rows, covered=sum(1 for r in rows if r.modules), total=len(rows))

    @r.get("/orgs/{code}", response_model=OrgPlanPublic, operation_id="get_org_plan_role",
           dependencies=[PUBLIC_ROUTE])
    def get_org_plan_role(code: Annotated[str, Path(max_length=32)], session: DbSession) -> OrgPlanPublic:
        """The tasks an organisation leads and shares, and the areas it leads."""
        role = service.org_role(session, code)
        return OrgPlanPublic(org=role.org.code, leads=[task_summary(t) for t in role.leads],
                             shares=[task_summary(t) for t in role.shares],
                             leads_areas=[a.number for a in role.leads_areas])

    @r.post("/reload", status_code=200, operation_id="reload_plan")
    def reload_plan(principal: Scoped("plan.manage"), session: DbSession) -> dict[str, int]:
        """Refresh areas and tasks from the packaged plan data (after an upgrade; platform admin or plan office)."""
        if principal.user.role != "platform_admin":
            service.require_office(session, principal.actor)
        return {"rows_changed": service.load_plan(session, principal.actor)}
    return r
