"""The plan module's public interface: the action plan as data, and which modules serve each task."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from cityplus.core import audit
from cityplus.core.audit import Actor
from cityplus.core.errors import NotFound, Unprocessable
from cityplus.core.identity import service as identity
from cityplus.core.identity.models import Organisation
from cityplus.core.modules import Module, ModuleRegistry

# Supervision (督查督办): work items, lifecycle, lights, dashboards, reminders, exports. Implemented beside this file;
# this module is the public interface other code uses.
from cityplus.modules.plan.dashboards import dashboard, trend  # noqa: F401
from cityplus.modules.plan.exports import export_xlsx, import_template, import_xlsx, progress  # noqa: F401
from cityplus.modules.plan.models import PlanArea, PlanTask, PlanTaskUnit, PlanWorkItem
from cityplus.modules.plan.reminders import ReminderRun  # noqa: F401
from cityplus.modules.plan.reminders import run_once as run_reminders  # noqa: F401
from cityplus.modules.plan.supervision import (  # noqa: F401
    CLOSED,
    LIGHTS,
    OPEN,
    STATUSES,
    Access,
    access_of,
    acknowledge,
    add_attachment,
    add_report,
    allowed_actions,
    city_today,
    close_item,
    create_item,
    create_subitem,
    decide_extension,
    extensions_of,
    get_attachment,
    get_item,
    is_office,
    latest_reports,
    light,
    list_items,
    office_org,
    report_completion,
    reports_of,
    request_extension,
    require_office,
    return_item,
    timeline,
    update_item,
    workdays_left,
)


@lru_cache(maxsize=1)
def plan_data() -> dict[str, Any]:
    """The packaged plan (areas, tasks, units) as written in the source document."""
    data: dict[str, Any] = json.loads(files("cityplus.modules.plan").joinpath("data/plan.json").read_text("utf-8"))
    return data


def load_plan(session: Session, actor: Actor) -> int:
    """Create or refresh the 12 areas and 46 tasks from the packaged data; returns rows changed."""
    data = plan_data()
    orgs = identity.organisation_by_name(session)
    missing = sorted({u for t in data["tasks"] for u in t["units"]} - set(orgs))
    if missing:
        raise Unprocessable("the plan names units that are not organisations; run `cityplus orgs load`",
                            errors=[{"field": "units", "message": ", ".join(missing)}])
    changed = 0
    areas = {a.number: a for a in session.scalars(select(PlanArea))}
    for a in data["areas"]:
        values = {"numeral": a["numeral"], "key": a["key"], "title_zh": a["title"]["zh"],
                  "title_en": a["title"]["en"], "intro_zh": a["intro"]["zh"], "intro_en": a["intro"]["en"],
                  "lead_units": list(a["lead_units"])}
        row = areas.get(a["number"])
        if row is None:
            session.add(PlanArea(number=a["number"], **values))
            changed += 1
        elif _update(row, values):
            changed += 1
    session.flush()
    tasks = {t.number: t for t in session.scalars(select(PlanTask))}
    for t in data["tasks"]:
        values = {"numeral": t["numeral"], "area_number": t["area"], "title_zh": t["title"]["zh"],
                  "title_en": t["title"]["en"], "text_zh": t["text"]["zh"], "text_en": t["text"]["en"],
                  "platforms": list(t.get("platforms", [])), "units_note": t.get("units_note")}
        units = [(i, orgs[name].code, name) for i, name in enumerate(t["units"], start=1)]
        row = tasks.get(t["number"])
        if row is None:
            row = PlanTask(number=t["number"], **values)
            row.units = [PlanTaskUnit(position=i, org_code=c, name_zh=n) for i, c, n in units]
            session.add(row)
            changed += 1
            continue
        dirty = _update(row, values)
        if [(u.position, u.org_code, u.name_zh) for u in row.units] != units:
            row.units = [PlanTaskUnit(position=i, org_code=c, name_zh=n) for i, c, n in units]
            dirty = True
        changed += int(dirty)
    session.flush()
    if changed:
        audit.append(session, actor, "plan.load", "plan", "chengdu-2015-2017", {"rows_changed": changed})
    return changed


def _update(row: Any, values: dict[str, Any]) -> bool:
    dirty = False
    for k, v in values.items():
        if getattr(row, k) != v:
            setattr(row, k, v)
            dirty = True
    return dirty


def list_areas(session: Session) -> list[PlanArea]:
    return list(session.scalars(select(PlanArea).options(selectinload(PlanArea.tasks)).order_by(PlanArea.number)))


def get_area(session: Session, number: int) -> PlanArea:
    area = session.scalar(select(PlanArea).options(selectinload(PlanArea.tasks)).where(PlanArea.number == number))
    if area is None:
        raise NotFound(f"the plan has no area {number} (areas are 1–12)")
    return area


def list_tasks(session: Session, *, area: int | None = None, unit: str | None = None,
               lead_only: bool = False) -> list[PlanTask]:
    """Tasks in plan order, optionally of one area and/or one responsible unit (org code)."""
    stmt = select(PlanTask).order_by(PlanTask.number)
    if area is not None:
        stmt = stmt.where(PlanTask.area_number == area)
    if unit is not None:
        sub = select(PlanTaskUnit.task_number).where(PlanTaskUnit.org_code == unit)
        if lead_only:
            sub = sub.where(PlanTaskUnit.position == 1)
        stmt = stmt.where(PlanTask.number.in_(sub))
    return list(session.scalars(stmt))


def get_task(session: Session, number: int) -> PlanTask:
    task = session.get(PlanTask, number)
    if task is None:
        raise NotFound(f"the plan has no task {number} (tasks are 1–46)")
    return task


@dataclass(frozen=True)
class OrgPlanRole:
    """What one organisation is responsible for in the plan."""

    org: Organisation
    leads: list[PlanTask]
    shares: list[PlanTask]
    leads_areas: list[PlanArea]


def org_role(session: Session, code: str) -> OrgPlanRole:
    org = identity.get_organisation(session, code)
    tasks = list_tasks(session, unit=code)
    leads = [t for t in tasks if t.units and t.units[0].org_code == code]
    shares = [t for t in tasks if t not in leads]
    areas = [a for a in list_areas(session) if org.name_zh in a.lead_units]
    return OrgPlanRole(org=org, leads=leads, shares=shares, leads_areas=areas)



@dataclass(frozen=True)
class CoverageRow:
    """Which installed modules serve one plan task (from module manifests)."""

    task: PlanTask
    modules: list[Module]


def module_usage(session: Session, registry: ModuleRegistry) -> dict[str, dict[str, int]]:
    """Each module's live usage figures (its manifest's `usage` callback), e.g. work items or datasets."""
    return {m.name: dict(m.usage(session)) for m in registry if m.usage is not None}


def coverage(session: Session, registry: ModuleRegistry) -> list[CoverageRow]:
    return [CoverageRow(task=t, modules=registry.modules_for_task(t.number)) for t in list_tasks(session)]


def quarterly_pdf(session: Session, year: int, quarter: int, warn_workdays: int) -> bytes:
    """The quarterly supervision report (季度报告) as PDF."""
    from cityplus.modules.plan.report_pdf import quarterly

    return quarterly(session, year, quarter, warn_workdays)


def usage(session: Session) -> dict[str, int]:
    """Live usage figures of this module for the coverage view."""
    return {
        "areas": session.scalar(select(func.count()).select_from(PlanArea)) or 0,
        "tasks": session.scalar(select(func.count()).select_from(PlanTask)) or 0,
        "work_items": session.scalar(select(func.count()).select_from(PlanWorkItem)) or 0,
        "work_items_closed": session.scalar(select(func.count()).select_from(PlanWorkItem)
                                            .where(PlanWorkItem.status == CLOSED)) or 0,
    }
