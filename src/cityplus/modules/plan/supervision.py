"""Supervision of the plan (督查督办, task 42): work items, their lifecycle, reports, extensions and warning lights.

Who may do what:
- the plan office (规划办) is the department staff of the lead unit of task 42 (市发改委, org `fgw`): it creates and
  edits items, approves or rejects extensions, closes (销号) or returns items, and sees every item;
- a unit's department staff see the items their organisation leads or shares; the lead unit acknowledges (签收),
  breaks an item down, reports progress, requests extensions and reports completion; a co-unit (配合单位) reports
  progress only;
- everyone else sees only the items the plan office marked public.

Every change bumps the item's version (SQLAlchemy's version counter): a client sends the version it saw, and a
stale one — or a concurrent writer — gets 409. Every transition is audited and written to the item's timeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from cityplus.core import audit
from cityplus.core.audit import Actor
from cityplus.core.calendar import WorkdayCalendar, china
from cityplus.core.db import utcnow
from cityplus.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from cityplus.core.identity import service as identity
from cityplus.modules.plan.models import (
    PlanItemCoUnit,
    PlanItemEvent,
    PlanItemExtension,
    PlanItemKpi,
    PlanItemReport,
    PlanReportAttachment,
    PlanTask,
    PlanTaskUnit,
    PlanWorkItem,
)
from cityplus.modules.plan.schemas import (
    CompletionIn,
    ExtensionIn,
    ItemCreate,
    ItemUpdate,
    KpiIn,
    KpiValue,
    ReportIn,
    ReturnIn,
    SubItemCreate,
    VersionIn,
)

CITY_TZ = ZoneInfo("Asia/Shanghai")
OFFICE_TASK = 42  # 协调推进机制: its lead unit is the plan office
DEPARTMENT_ROLES = ("department_staff", "department_admin")

ASSIGNED, ACKNOWLEDGED, IN_PROGRESS = "assigned", "acknowledged", "in_progress"
COMPLETION_REPORTED, CLOSED, RETURNED = "completion_reported", "closed", "returned"
STATUSES = (ASSIGNED, ACKNOWLEDGED, IN_PROGRESS, COMPLETION_REPORTED, CLOSED, RETURNED)
OPEN = (ASSIGNED, ACKNOWLEDGED, IN_PROGRESS, RETURNED)  # the unit still has to deliver
LIGHTS = ("green", "yellow", "red", "done")

# Report attachments: content types and the leading bytes their files start with.
ATTACHMENT_TYPES: dict[str, tuple[tuple[str, ...], tuple[bytes, ...]]] = {
    "application/pdf": ((".pdf",), (b"%PDF-",)),
    "image/png": ((".png",), (b"\x89PNG\r\n\x1a\n",)),
    "image/jpeg": ((".jpg", ".jpeg"), (b"\xff\xd8\xff",)),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ((".docx",), (b"PK\x03\x04",)),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ((".xlsx",), (b"PK\x03\x04",)),
}


def city_today(now: datetime | None = None) -> date:
    """The date in Chengdu (deadlines are city dates)."""
    return (now or utcnow()).astimezone(CITY_TZ).date()


def office_org(session: Session) -> str:
    """Org code of the plan office: the lead unit of task 42 (市发改委)."""
    code = session.scalar(select(PlanTaskUnit.org_code).where(PlanTaskUnit.task_number == OFFICE_TASK,
                                                              PlanTaskUnit.position == 1))
    if code is None:
        raise Conflict("the plan is not loaded; run `cityplus plan load`")
    return code


def is_office(session: Session, actor: Actor) -> bool:
    """Whether the actor is plan office staff."""
    return actor.role in DEPARTMENT_ROLES and actor.org_code is not None and actor.org_code == office_org(session)


def require_office(session: Session, actor: Actor) -> None:
    if not is_office(session, actor):
        raise Forbidden("only the plan office (department staff of the lead unit of task 42) may do this",
                        errors=[{"field": "org", "message": "not the plan office"}])


# --- warning lights ---------------------------------------------------------------------------------------------


def workdays_left(item: PlanWorkItem, today: date, cal: WorkdayCalendar | None = None) -> int | None:
    """Working days from `today` until the due date (negative when overdue); None once delivered."""
    if item.status in (CLOSED, COMPLETION_REPORTED):
        return None
    return (cal or china()).workdays_between(today, item.due_date)


def existed_on(item: PlanWorkItem, day: date) -> bool:
    """Whether the item had been assigned by the end of `day`."""
    return city_today(item.created_at) <= day


def light(item: PlanWorkItem, day: date, warn_workdays: int = 3, cal: WorkdayCalendar | None = None) -> str:
    """Warning light (预警灯) of the item on `day`: green; yellow within `warn_workdays` working days of the due
    date; red when overdue; `done` once closed.

    An item whose completion was reported waits for review: green when reported on time, red when late. For a
    past `day` the state is rebuilt from the completion and closing dates, so the dashboards can look back.
    """
    if item.closed_at is not None and city_today(item.closed_at) <= day:
        return "done"
    if item.completed_on is not None and item.completed_on <= day:
        return "green" if item.completed_on <= item.due_date else "red"
    if day > item.due_date:
        return "red"
    return "yellow" if (cal or china()).within_workdays(day, item.due_date, warn_workdays) else "green"


# --- reading ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """What the caller may see of the work items."""

    office: bool
    org: str | None  # the caller's organisation when they are department staff

    @property
    def public_only(self) -> bool:
        return not self.office and self.org is None


def access_of(session: Session, actor: Actor) -> Access:
    """The caller's view: the plan office sees all, department staff their organisation's items, others public."""
    if is_office(session, actor):
        return Access(office=True, org=actor.org_code)
    if actor.role in DEPARTMENT_ROLES and actor.org_code:
        return Access(office=False, org=actor.org_code)
    return Access(office=False, org=None)


def _visible(stmt: Any, access: Access) -> Any:
    if access.office:
        return stmt
    if access.org is None:
        return stmt.where(PlanWorkItem.public.is_(True))
    shared = select(PlanItemCoUnit.item_id).where(PlanItemCoUnit.org_code == access.org)
    return stmt.where(or_(PlanWorkItem.lead_org == access.org, PlanWorkItem.id.in_(shared)))


def list_items(session: Session, access: Access, *, task: int | None = None, area: int | None = None,
               org: str | None = None, status: str | None = None, public: bool | None = None,
               parent: int | None = None) -> list[PlanWorkItem]:
    """Work items the caller may see, in plan order, with optional filters."""
    stmt = _visible(select(PlanWorkItem), access)
    if task is not None:
        stmt = stmt.where(PlanWorkItem.task_number == task)
    if area is not None:
        stmt = stmt.where(PlanWorkItem.task_number.in_(select(PlanTask.number).where(PlanTask.area_number == area)))
    if org is not None:
        shared = select(PlanItemCoUnit.item_id).where(PlanItemCoUnit.org_code == org)
        stmt = stmt.where(or_(PlanWorkItem.lead_org == org, PlanWorkItem.id.in_(shared)))
    if status is not None:
        stmt = stmt.where(PlanWorkItem.status == status)
    if public is not None:
        stmt = stmt.where(PlanWorkItem.public.is_(public))
    if parent is not None:
        stmt = stmt.where(PlanWorkItem.parent_id == parent)
    return list(session.scalars(stmt.order_by(PlanWorkItem.task_number, PlanWorkItem.id)))


def get_item(session: Session, access: Access, item_id: int) -> PlanWorkItem:
    """One work item the caller may see (404 otherwise, so hidden items are not revealed)."""
    item = session.scalar(_visible(select(PlanWorkItem).where(PlanWorkItem.id == item_id), access))
    if item is None:
        raise NotFound(f"no work item {item_id} that you may see")
    return item


def reports_of(session: Session, item: PlanWorkItem, access: Access) -> list[PlanItemReport]:
    """The item's reports, oldest first; only public ones for the public."""
    stmt = select(PlanItemReport).where(PlanItemReport.item_id == item.id)
    if access.public_only:
        stmt = stmt.where(PlanItemReport.public.is_(True))
    return list(session.scalars(stmt.order_by(PlanItemReport.id)))


def extensions_of(session: Session, item: PlanWorkItem) -> list[PlanItemExtension]:
    return list(session.scalars(select(PlanItemExtension).where(PlanItemExtension.item_id == item.id)
                                .order_by(PlanItemExtension.id)))


def timeline(session: Session, item: PlanWorkItem) -> list[PlanItemEvent]:
    """Every transition of the item, oldest first."""
    return list(session.scalars(select(PlanItemEvent).where(PlanItemEvent.item_id == item.id)
                                .order_by(PlanItemEvent.id)))


def latest_reports(session: Session, item_ids: Sequence[int], *, public_only: bool = False
                   ) -> dict[int, PlanItemReport]:
    """The newest report of each item."""
    if not item_ids:
        return {}
    cond = [PlanItemReport.item_id.in_(item_ids)]
    if public_only:
        cond.append(PlanItemReport.public.is_(True))
    newest = select(func.max(PlanItemReport.id)).where(*cond).group_by(PlanItemReport.item_id)
    return {r.item_id: r for r in session.scalars(select(PlanItemReport).where(PlanItemReport.id.in_(newest)))}


def allowed_actions(session: Session, access: Access, item: PlanWorkItem) -> list[str]:
    """What the caller may do with the item now (for the portal's buttons and the API's `can`)."""
    can: list[str] = []
    lead = access.org == item.lead_org
    co = access.org in item.co_orgs
    if access.office:
        can.append("edit")
        if item.status == COMPLETION_REPORTED:
            can += ["close", "return"]
        if any(e.status == "pending" for e in extensions_of(session, item)):
            can.append("decide_extension")
    if lead and item.status == ASSIGNED:
        can.append("acknowledge")
    if (lead or co) and item.status in (ACKNOWLEDGED, IN_PROGRESS, RETURNED):
        can.append("report")
    if lead and item.status in (ACKNOWLEDGED, IN_PROGRESS, RETURNED):
        can += ["complete", "extend", "break_down"]
    return can


# --- changing ---------------------------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return now.astimezone(UTC) if now is not None else utcnow()


def _check_orgs(session: Session, codes: Iterable[str], field: str) -> None:
    known = {o.code for o in identity.list_organisations(session)}
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise Unprocessable(f"unknown organisation {', '.join(unknown)}",
                            errors=[{"field": field, "message": f"unknown organisation {c}"} for c in unknown])


def _event(session: Session, item: PlanWorkItem, actor: Actor, action: str, at: datetime, *,
           from_status: str | None = None, note: str | None = None, change: dict[str, Any] | None = None) -> None:
    session.add(PlanItemEvent(item_id=item.id, at=at, actor=actor.username, org_code=actor.org_code, action=action,
                              from_status=from_status, to_status=item.status, note=note or None))
    audit.append(session, actor, f"plan.item_{action}", "plan_work_item", item.code,
                 {"status": item.status, "from": from_status, **(change or {})})


def _flush(session: Session, item: PlanWorkItem) -> None:
    """Write the item; a concurrent writer that got there first means 409."""
    try:
        session.flush()
    except StaleDataError:
        raise Conflict(f"work item {item.code} was changed by someone else; reload it and try again",
                       errors=[{"field": "version", "message": "stale"}]) from None


def _expect(item: PlanWorkItem, version: int) -> None:
    if item.version != version:
        raise Conflict(f"work item {item.code} is at version {item.version}, not {version}; reload it",
                       errors=[{"field": "version", "message": f"current version is {item.version}"}])


def _expect_status(item: PlanWorkItem, allowed: Iterable[str], what: str) -> None:
    allowed = tuple(allowed)
    if item.status not in allowed:
        raise Conflict(f"cannot {what} work item {item.code} while it is {item.status}",
                       errors=[{"field": "status", "message": f"is {item.status}; needs {' or '.join(allowed)}"}])


def _kpis(specs: Sequence[KpiIn]) -> list[PlanItemKpi]:
    return [PlanItemKpi(position=i, name=k.name, unit=k.unit, baseline=k.baseline, target=k.target)
            for i, k in enumerate(specs, start=1)]


def _next_code(session: Session, task: int, parent: PlanWorkItem | None) -> str:
    if parent is None:
        stmt = select(PlanWorkItem.code).where(PlanWorkItem.task_number == task, PlanWorkItem.parent_id.is_(None))
        prefix = f"{task}."
    else:
        stmt = select(PlanWorkItem.code).where(PlanWorkItem.parent_id == parent.id)
        prefix = f"{parent.code}."
    used = [int(c.rsplit(".", 1)[1]) for c in session.scalars(stmt)]
    return f"{prefix}{max(used, default=0) + 1}"


def create_item(session: Session, actor: Actor, data: ItemCreate, *, now: datetime | None = None,
                _checked: bool = False) -> PlanWorkItem:
    """Assign a new work item under a task (plan office); it starts `assigned`."""
    if not _checked:
        require_office(session, actor)
        _check_orgs(session, [data.lead_org], "lead_org")
        _check_orgs(session, data.co_orgs, "co_orgs")
    at = _now(now)
    if session.get(PlanTask, data.task) is None:
        raise Unprocessable(f"the plan has no task {data.task}", errors=[{"field": "task", "message": "unknown"}])
    item = PlanWorkItem(code=_next_code(session, data.task, None), task_number=data.task, title=data.title,
                        deliverable=data.deliverable, lead_org=data.lead_org, start_date=data.start_date,
                        due_date=data.due_date, original_due_date=data.due_date, status=ASSIGNED,
                        public=data.public, created_by=actor.username, created_at=at, updated_at=at)
    item.co_units = [PlanItemCoUnit(org_code=c, position=i) for i, c in enumerate(data.co_orgs, start=1)]
    item.kpis = _kpis(data.kpis)
    session.add(item)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("another work item was numbered at the same time; try again") from None
    _event(session, item, actor, "assigned", at, change={"task": data.task, "lead": data.lead_org,
                                                         "co": data.co_orgs, "due": data.due_date})
    return item


def create_subitem(session: Session, actor: Actor, item_id: int, data: SubItemCreate, *,
                   now: datetime | None = None) -> PlanWorkItem:
    """The lead unit breaks its item down (分解): a sub-item it leads itself, acknowledged at once."""
    access = access_of(session, actor)
    parent = get_item(session, access, item_id)
    if access.org != parent.lead_org:
        raise Forbidden("only the lead unit breaks an item down")
    _expect_status(parent, (ACKNOWLEDGED, IN_PROGRESS, RETURNED), "break down")
    if data.due_date > parent.due_date:
        raise Unprocessable("a sub-item cannot be due after its item",
                            errors=[{"field": "due_date", "message": f"after {parent.due_date.isoformat()}"}])
    at = _now(now)
    item = PlanWorkItem(code=_next_code(session, parent.task_number, parent), task_number=parent.task_number,
                        parent_id=parent.id, title=data.title, deliverable=data.deliverable, lead_org=parent.lead_org,
                        due_date=data.due_date, original_due_date=data.due_date, status=ACKNOWLEDGED,
                        public=False, created_by=actor.username, created_at=at, updated_at=at)
    session.add(item)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("another sub-item was numbered at the same time; try again") from None
    _event(session, item, actor, "assigned", at, change={"parent": parent.code, "due": data.due_date})
    return item


def update_item(session: Session, actor: Actor, item_id: int, data: ItemUpdate, *,
                now: datetime | None = None) -> PlanWorkItem:
    """Edit a work item (plan office). The due date changes only through an approved extension."""
    require_office(session, actor)
    item = get_item(session, Access(office=True, org=actor.org_code), item_id)
    _expect(item, data.version)
    changed: dict[str, Any] = {}
    for name in ("title", "deliverable", "public"):
        value = getattr(data, name)
        if value is not None and getattr(item, name) != value:
            setattr(item, name, value)
            changed[name] = value
    if data.co_orgs is not None and data.co_orgs != item.co_orgs:
        if item.lead_org in data.co_orgs:
            raise Unprocessable("the lead unit cannot also be a co-unit",
                                errors=[{"field": "co_orgs", "message": item.lead_org}])
        _check_orgs(session, data.co_orgs, "co_orgs")
        item.co_units = [PlanItemCoUnit(org_code=c, position=i) for i, c in enumerate(data.co_orgs, start=1)]
        changed["co_orgs"] = data.co_orgs
    if data.kpis is not None:
        item.kpis = _kpis(data.kpis)
        changed["kpis"] = [k.model_dump() for k in data.kpis]
    if not changed:
        return item
    item.updated_at = _now(now)
    _flush(session, item)
    _event(session, item, actor, "updated", item.updated_at, from_status=item.status, change=changed)
    return item


def _transition(session: Session, actor: Actor, item: PlanWorkItem, to: str, action: str, at: datetime, *,
                note: str | None = None, change: dict[str, Any] | None = None) -> None:
    before = item.status
    item.status = to
    item.updated_at = at
    _flush(session, item)
    _event(session, item, actor, action, at, from_status=before, note=note, change=change)


def acknowledge(session: Session, actor: Actor, item_id: int, data: VersionIn, *,
                now: datetime | None = None) -> PlanWorkItem:
    """The lead unit acknowledges (签收) an assigned item."""
    access = access_of(session, actor)
    item = get_item(session, access, item_id)
    if access.org != item.lead_org:
        raise Forbidden("only the lead unit acknowledges an item")
    _expect(item, data.version)
    _expect_status(item, (ASSIGNED,), "acknowledge")
    _transition(session, actor, item, ACKNOWLEDGED, "acknowledged", _now(now), note=data.note)
    return item


def _apply_kpi_values(item: PlanWorkItem, values: Sequence[KpiValue]) -> list[dict[str, Any]]:
    by_id = {k.id: k for k in item.kpis}
    unknown = [v.kpi for v in values if v.kpi not in by_id]
    if unknown:
        raise Unprocessable("the report names KPIs this item does not have",
                            errors=[{"field": "kpi_values", "message": f"unknown KPI {k}"} for k in unknown])
    if len({v.kpi for v in values}) != len(values):
        raise Unprocessable("a KPI is given twice", errors=[{"field": "kpi_values", "message": "repeated KPI"}])
    for v in values:
        by_id[v.kpi].current = v.value
    return [{"kpi": v.kpi, "value": v.value} for v in values]


def _add_report(session: Session, actor: Actor, item: PlanWorkItem, kind: str, data: ReportIn,
                at: datetime) -> PlanItemReport:
    values = _apply_kpi_values(item, data.kpi_values)
    report = PlanItemReport(item_id=item.id, kind=kind, org_code=actor.org_code or "", author=actor.username,
                            text=data.text, kpi_values=values, public=data.public, created_at=at)
    session.add(report)
    return report


def add_report(session: Session, actor: Actor, item_id: int, data: ReportIn, *,
               now: datetime | None = None) -> PlanItemReport:
    """A progress report (进展报告) by the lead unit or a co-unit; the first one starts the work."""
    access = access_of(session, actor)
    item = get_item(session, access, item_id)
    if access.org is None or (access.org != item.lead_org and access.org not in item.co_orgs):
        raise Forbidden("only the item's lead unit and co-units report on it")
    _expect_status(item, (ACKNOWLEDGED, IN_PROGRESS, RETURNED), "report on")
    at = _now(now)
    report = _add_report(session, actor, item, "progress", data, at)
    if item.status != IN_PROGRESS:
        _transition(session, actor, item, IN_PROGRESS, "started", at)
    else:
        item.updated_at = at
        _flush(session, item)
    session.flush()
    audit.append(session, actor, "plan.item_reported", "plan_work_item", item.code,
                 {"report": report.id, "kpi_values": report.kpi_values})
    session.add(PlanItemEvent(item_id=item.id, at=at, actor=actor.username, org_code=actor.org_code,
                              action="reported", from_status=item.status, to_status=item.status,
                              note=data.text[:200]))
    return report


def report_completion(session: Session, actor: Actor, item_id: int, data: CompletionIn, *,
                      now: datetime | None = None) -> PlanWorkItem:
    """The lead unit reports the item complete (完成报告); the plan office then closes or returns it."""
    access = access_of(session, actor)
    item = get_item(session, access, item_id)
    if access.org != item.lead_org:
        raise Forbidden("only the lead unit reports completion; co-units report progress",
                        errors=[{"field": "org", "message": "not the lead unit"}])
    _expect(item, data.version)
    _expect_status(item, (ACKNOWLEDGED, IN_PROGRESS, RETURNED), "report completion of")
    at = _now(now)
    report = _add_report(session, actor, item, "completion", data, at)
    item.completed_on = city_today(at)
    _transition(session, actor, item, COMPLETION_REPORTED, "completion_reported", at, note=data.text[:200],
                change={"report_kpis": report.kpi_values})
    return item


def close_item(session: Session, actor: Actor, item_id: int, data: VersionIn, *,
               now: datetime | None = None) -> PlanWorkItem:
    """The plan office accepts the completion report and closes the item (销号)."""
    require_office(session, actor)
    item = get_item(session, Access(office=True, org=actor.org_code), item_id)
    _expect(item, data.version)
    _expect_status(item, (COMPLETION_REPORTED,), "close")
    at = _now(now)
    item.closed_at = at
    _transition(session, actor, item, CLOSED, "closed", at, note=data.note)
    return item


def return_item(session: Session, actor: Actor, item_id: int, data: ReturnIn, *,
                now: datetime | None = None) -> PlanWorkItem:
    """The plan office returns a completion report with its reasons (退回); the unit works on."""
    require_office(session, actor)
    item = get_item(session, Access(office=True, org=actor.org_code), item_id)
    _expect(item, data.version)
    _expect_status(item, (COMPLETION_REPORTED,), "return")
    item.completed_on = None
    _transition(session, actor, item, RETURNED, "returned", _now(now), note=data.reason)
    return item


def request_extension(session: Session, actor: Actor, item_id: int, data: ExtensionIn, *,
                      now: datetime | None = None) -> PlanItemExtension:
    """The lead unit asks for a later due date (延期申请); nothing changes until the plan office decides."""
    access = access_of(session, actor)
    item = get_item(session, access, item_id)
    if access.org != item.lead_org:
        raise Forbidden("only the lead unit requests an extension")
    _expect(item, data.version)
    _expect_status(item, OPEN, "request an extension of")
    if data.new_due_date <= item.due_date:
        raise Unprocessable("the new due date must be after the current one",
                            errors=[{"field": "new_due_date", "message": f"not after {item.due_date.isoformat()}"}])
    if any(e.status == "pending" for e in extensions_of(session, item)):
        raise Conflict("an extension request of this item is already waiting for a decision")
    at = _now(now)
    ext = PlanItemExtension(item_id=item.id, status="pending", reason=data.reason, old_due_date=item.due_date,
                            new_due_date=data.new_due_date, requested_by=actor.username, org_code=access.org,
                            requested_at=at)
    session.add(ext)
    item.updated_at = at
    _flush(session, item)
    _event(session, item, actor, "extension_requested", at, from_status=item.status, note=data.reason,
           change={"new_due": data.new_due_date})
    return ext


def decide_extension(session: Session, actor: Actor, extension_id: int, approve: bool, note: str = "", *,
                     now: datetime | None = None) -> PlanItemExtension:
    """The plan office approves (the due date moves, the old one stays in the history) or rejects."""
    require_office(session, actor)
    ext = session.get(PlanItemExtension, extension_id)
    if ext is None:
        raise NotFound(f"no extension request {extension_id}")
    if ext.status != "pending":
        raise Conflict(f"extension request {extension_id} was already {ext.status}")
    item = get_item(session, Access(office=True, org=actor.org_code), ext.item_id)
    at = _now(now)
    ext.status = "approved" if approve else "rejected"
    ext.decided_by, ext.decided_at, ext.decision_note = actor.username, at, note or None
    if approve:
        item.due_date = ext.new_due_date
    item.updated_at = at
    _flush(session, item)
    _event(session, item, actor, "extension_approved" if approve else "extension_rejected", at,
           from_status=item.status, note=note, change={"extension": ext.id, "due": item.due_date})
    return ext


def add_attachment(session: Session, actor: Actor, report_id: int, filename: str, content_type: str,
                   data: bytes, max_bytes: int, *, now: datetime | None = None) -> PlanReportAttachment:
    """Attach a file to one of the caller's organisation's reports (type and size checked)."""
    report = session.get(PlanItemReport, report_id)
    access = access_of(session, actor)
    if report is None:
        raise NotFound(f"no report {report_id}")
    get_item(session, access, report.item_id)  # 404 when the item is not the caller's
    if access.org != report.org_code:
        raise Forbidden("only the reporting unit attaches files to its report")
    name = (filename or "").strip().replace("\\", "/").rsplit("/", 1)[-1][:200]
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype not in ATTACHMENT_TYPES:
        raise Unprocessable(f"attachments may be {', '.join(sorted(ATTACHMENT_TYPES))}",
                            errors=[{"field": "file", "message": f"type {ctype or 'missing'} not accepted"}])
    suffixes, magics = ATTACHMENT_TYPES[ctype]
    if not name or not name.lower().endswith(suffixes):
        raise Unprocessable(f"a {ctype} file name ends with {' or '.join(suffixes)}",
                            errors=[{"field": "file", "message": "file name does not match its type"}])
    if not data:
        raise Unprocessable("the file is empty", errors=[{"field": "file", "message": "empty"}])
    if len(data) > max_bytes:
        raise Unprocessable(f"attachments may be at most {max_bytes} bytes",
                            errors=[{"field": "file", "message": f"{len(data)} bytes"}])
    if not data.startswith(magics):
        raise Unprocessable(f"the file's content is not {ctype}",
                            errors=[{"field": "file", "message": "content does not match the type"}])
    att = PlanReportAttachment(report_id=report.id, filename=name, content_type=ctype, size=len(data),
                               sha256=hashlib.sha256(data).hexdigest(), data=data, created_at=_now(now))
    session.add(att)
    session.flush()
    audit.append(session, actor, "plan.report_attachment_added", "plan_item_report", report.id,
                 {"attachment": att.id, "sha256": att.sha256, "size": att.size})
    return att


def get_attachment(session: Session, access: Access, attachment_id: int) -> PlanReportAttachment:
    """An attachment of a report the caller may see."""
    att = session.get(PlanReportAttachment, attachment_id)
    if att is None:
        raise NotFound(f"no attachment {attachment_id}")
    report = session.get(PlanItemReport, att.report_id)
    assert report is not None
    get_item(session, access, report.item_id)
    if access.public_only and not report.public:
        raise NotFound(f"no attachment {attachment_id}")
    return att
