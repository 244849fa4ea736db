"""Supervision API (督查督办) under /api/v1/plan: work items, reports, extensions, dashboards, exports, imports.

Scopes: `plan.read` to read (filtered to what the caller may see), `plan.report` for a unit's acknowledgement,
reports, extensions and completion, `plan.manage` for the plan office's assignment, review and exports. The service
checks organisations (plan office, lead unit, co-unit) on top of the scopes.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, Path, Query, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session

from cityplus.api.deps import PUBLIC_ROUTE, Ctx, DbSession, Principal, Scoped
from cityplus.core.errors import Unprocessable
from cityplus.modules.plan import exports, service
from cityplus.modules.plan.models import PlanItemExtension, PlanItemReport, PlanWorkItem
from cityplus.modules.plan.schemas import (
    AttachmentPublic,
    CompletionIn,
    DecisionIn,
    EventPublic,
    ExtensionIn,
    ExtensionPublic,
    ImportResult,
    ItemCreate,
    ItemPublic,
    ItemSummary,
    ItemUpdate,
    KpiPublic,
    ReminderRunPublic,
    ReportIn,
    ReportPublic,
    ReturnIn,
    SubItemCreate,
    VersionIn,
)
from cityplus.modules.plan.settings import PlanSettings

ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, description="work item id")]
ObjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]
AsOf = Annotated[date | None, Query(description="compute lights for this date (default: today in Chengdu)")]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _day(as_of: date | None) -> date:
    if as_of is not None and not (date(2000, 1, 1) <= as_of <= date(2100, 12, 31)):
        raise Unprocessable("as_of must be between 2000-01-01 and 2100-12-31",
                            errors=[{"field": "as_of", "message": "out of range"}])
    return as_of or service.city_today()


def item_summary(item: PlanWorkItem, day: date, warn: int) -> ItemSummary:
    return ItemSummary(id=item.id, code=item.code, task=item.task_number, area=item.task.area_number,
                       parent_id=item.parent_id, title=item.title, lead_org=item.lead_org, co_orgs=item.co_orgs,
                       start_date=item.start_date, due_date=item.due_date, original_due_date=item.original_due_date,
                       status=item.status, light=service.light(item, day, warn),
                       workdays_left=service.workdays_left(item, day), public=item.public, version=item.version,
                       completed_on=item.completed_on)


def report_public(r: PlanItemReport) -> ReportPublic:
    return ReportPublic(id=r.id, kind=r.kind, org=r.org_code, author=r.author, text=r.text,
                        kpi_values=r.kpi_values, public=r.public, created_at=r.created_at,
                        attachments=[AttachmentPublic(id=a.id, filename=a.filename, content_type=a.content_type,
                                                      size=a.size, sha256=a.sha256) for a in r.attachments])


def extension_public(e: PlanItemExtension) -> ExtensionPublic:
    return ExtensionPublic(id=e.id, status=e.status, reason=e.reason, old_due_date=e.old_due_date,
                           new_due_date=e.new_due_date, requested_by=e.requested_by, org=e.org_code,
                           requested_at=e.requested_at, decided_by=e.decided_by, decided_at=e.decided_at,
                           decision_note=e.decision_note)


def item_public(session: Session, access: service.Access, item: PlanWorkItem, day: date, warn: int) -> ItemPublic:
    full = not access.public_only
    return ItemPublic(
        **item_summary(item, day, warn).model_dump(), deliverable=item.deliverable,
        kpis=[KpiPublic(id=k.id, name=k.name, unit=k.unit, baseline=k.baseline, target=k.target, current=k.current,
                        progress=k.progress) for k in item.kpis],
        reports=[report_public(r) for r in service.reports_of(session, item, access)],
        extensions=[extension_public(e) for e in service.extensions_of(session, item)] if full else [],
        timeline=[EventPublic(at=e.at, actor=e.actor, org=e.org_code, action=e.action, from_status=e.from_status,
                              to_status=e.to_status, note=e.note)
                  for e in service.timeline(session, item)] if full else [],
        can=service.allowed_actions(session, access, item))


def router() -> APIRouter:
    r = APIRouter(prefix="/plan", tags=["plan supervision"])
    settings = PlanSettings()
    warn = settings.warn_workdays

    def full(session: Session, principal: Principal, item: PlanWorkItem) -> ItemPublic:
        access = service.access_of(session, principal.actor)
        session.refresh(item)
        return item_public(session, access, item, service.city_today(), warn)

    @r.get("/items", response_model=list[ItemSummary], operation_id="list_plan_items")
    def list_plan_items(
        principal: Scoped("plan.read"), session: DbSession, as_of: AsOf = None,
        task: Annotated[int | None, Query(ge=1, le=46)] = None,
        area: Annotated[int | None, Query(ge=1, le=12)] = None,
        org: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9-]{1,31}$")] = None,
        status: Annotated[str | None, Query(pattern="^(" + "|".join(service.STATUSES) + ")$")] = None,
        light: Annotated[str | None, Query(pattern="^(" + "|".join(service.LIGHTS) + ")$")] = None,
    ) -> list[ItemSummary]:
        """Work items the caller may see (plan office: all; a unit: its own; others: public ones)."""
        day = _day(as_of)
        access = service.access_of(session, principal.actor)
        rows = [item_summary(i, day, warn)
                for i in service.list_items(session, access, task=task, area=area, org=org, status=status)]
        return [x for x in rows if light is None or x.light == light]

    @r.post("/items", response_model=ItemPublic, status_code=201, operation_id="create_plan_item")
    def create_plan_item(body: ItemCreate, principal: Scoped("plan.manage"), session: DbSession) -> ItemPublic:
        """Assign a work item under a task to a lead unit and co-units (plan office)."""
        return full(session, principal, service.create_item(session, principal.actor, body))

    @r.get("/items/{item_id}", response_model=ItemPublic, operation_id="get_plan_item")
    def get_plan_item(item_id: ItemId, principal: Scoped("plan.read"), session: DbSession,
                      as_of: AsOf = None) -> ItemPublic:
        """One work item with its KPIs, reports, extension requests and timeline."""
        access = service.access_of(session, principal.actor)
        return item_public(session, access, service.get_item(session, access, item_id), _day(as_of), warn)

    @r.patch("/items/{item_id}", response_model=ItemPublic, operation_id="update_plan_item")
    def update_plan_item(item_id: ItemId, body: ItemUpdate, principal: Scoped("plan.manage"),
                         session: DbSession) -> ItemPublic:
        """Edit a work item (plan office); send the version you saw (409 when it changed)."""
        return full(session, principal, service.update_item(session, principal.actor, item_id, body))

    @r.post("/items/{item_id}/acknowledge", response_model=ItemPublic, operation_id="acknowledge_plan_item")
    def acknowledge_plan_item(item_id: ItemId, body: VersionIn, principal: Scoped("plan.report"),
                              session: DbSession) -> ItemPublic:
        """The lead unit acknowledges (签收) the item."""
        return full(session, principal, service.acknowledge(session, principal.actor, item_id, body))

    @r.post("/items/{item_id}/subitems", response_model=ItemPublic, status_code=201,
            operation_id="create_plan_subitem")
    def create_plan_subitem(item_id: ItemId, body: SubItemCreate, principal: Scoped("plan.report"),
                            session: DbSession) -> ItemPublic:
        """The lead unit breaks its item down into a dated sub-item (分解)."""
        return full(session, principal, service.create_subitem(session, principal.actor, item_id, body))

    @r.post("/items/{item_id}/reports", response_model=ReportPublic, status_code=201,
            operation_id="report_plan_item_progress")
    def report_plan_item_progress(item_id: ItemId, body: ReportIn, principal: Scoped("plan.report"),
                                  session: DbSession) -> ReportPublic:
        """A progress report with KPI values, by the lead unit or a co-unit."""
        return report_public(service.add_report(session, principal.actor, item_id, body))

    @r.post("/items/{item_id}/completion", response_model=ItemPublic, operation_id="report_plan_item_completion")
    def report_plan_item_completion(item_id: ItemId, body: CompletionIn, principal: Scoped("plan.report"),
                                    session: DbSession) -> ItemPublic:
        """The lead unit reports completion (co-units cannot)."""
        return full(session, principal, service.report_completion(session, principal.actor, item_id, body))

    @r.post("/items/{item_id}/close", response_model=ItemPublic, operation_id="close_plan_item")
    def close_plan_item(item_id: ItemId, body: VersionIn, principal: Scoped("plan.manage"),
                        session: DbSession) -> ItemPublic:
        """The plan office accepts the completion and closes the item (销号)."""
        return full(session, principal, service.close_item(session, principal.actor, item_id, body))

    @r.post("/items/{item_id}/return", response_model=ItemPublic, operation_id="return_plan_item")
    def return_plan_item(item_id: ItemId, body: ReturnIn, principal: Scoped("plan.manage"),
                         session: DbSession) -> ItemPublic:
        """The plan office returns the completion report with its reasons."""
        return full(session, principal, service.return_item(session, principal.actor, item_id, body))

    @r.post("/items/{item_id}/extensions", response_model=ExtensionPublic, status_code=201,
            operation_id="request_plan_item_extension")
    def request_plan_item_extension(item_id: ItemId, body: ExtensionIn, principal: Scoped("plan.report"),
                                    session: DbSession) -> ExtensionPublic:
        """The lead unit asks for a later due date (the date changes only on approval)."""
        return extension_public(service.request_extension(session, principal.actor, item_id, body))

    @r.post("/extensions/{extension_id}/approve", response_model=ExtensionPublic,
            operation_id="approve_plan_extension")
    def approve_plan_extension(extension_id: ObjectId, body: DecisionIn, principal: Scoped("plan.manage"),
                               session: DbSession) -> ExtensionPublic:
        """Approve an extension request: the item's due date moves (plan office)."""
        return extension_public(service.decide_extension(session, principal.actor, extension_id, True, body.note))

    @r.post("/extensions/{extension_id}/reject", response_model=ExtensionPublic,
            operation_id="reject_plan_extension")
    def reject_plan_extension(extension_id: ObjectId, body: DecisionIn, principal: Scoped("plan.manage"),
                              session: DbSession) -> ExtensionPublic:
        """Reject an extension request (plan office)."""
        return extension_public(service.decide_extension(session, principal.actor, extension_id, False, body.note))

    @r.post("/reports/{report_id}/attachments", response_model=AttachmentPublic, status_code=201,
            operation_id="attach_plan_report_file")
    def attach_plan_report_file(report_id: ObjectId, principal: Scoped("plan.report"), session: DbSession,
                                file: Annotated[UploadFile, File(description="PDF, PNG, JPEG, DOCX or XLSX")],
                                ) -> AttachmentPublic:
        """Attach a file to one of your organisation's reports (type and size checked)."""
        data = file.file.read(settings.attachment_max_bytes + 1)
        a = service.add_attachment(session, principal.actor, report_id, file.filename or "",
                                   file.content_type or "", data, settings.attachment_max_bytes)
        return AttachmentPublic(id=a.id, filename=a.filename, content_type=a.content_type, size=a.size,
                                sha256=a.sha256)

    @r.get("/attachments/{attachment_id}", operation_id="get_plan_attachment",
           responses={200: {"content": {"application/octet-stream": {}}}})
    def get_plan_attachment(attachment_id: ObjectId, principal: Scoped("plan.read"), session: DbSession) -> Response:
        """Download a report attachment you may see."""
        access = service.access_of(session, principal.actor)
        a = service.get_attachment(session, access, attachment_id)
        return Response(a.data, media_type=a.content_type, headers={
            "Content-Disposition": exports.attachment_disposition(a.filename),
            "X-Content-Type-Options": "nosniff"})

    @r.get("/dashboard", operation_id="get_plan_dashboard")
    def get_plan_dashboard(principal: Scoped("plan.report"), session: DbSession, as_of: AsOf = None) -> dict:
        """Completion, lights, overdue, KPI progress and trend per area, task and department, for the items
        the caller may see; departments ranked by on-time rate."""
        access = service.access_of(session, principal.actor)
        return service.dashboard(session, access, _day(as_of), warn)

    @r.get("/progress", operation_id="get_plan_progress", dependencies=[PUBLIC_ROUTE])
    def get_plan_progress(session: DbSession,
                          area: Annotated[int | None, Query(ge=1, le=12)] = None) -> dict:
        """The public progress view (政务公开): public items per area and task with status, dates, KPI progress
        and the latest public report."""
        return exports.progress(session, service.city_today(), warn, area=area)

    @r.get("/export.xlsx", operation_id="export_plan_xlsx", response_class=Response,
           responses={200: {"content": {XLSX: {}}}})
    def export_plan_xlsx(principal: Scoped("plan.manage"), session: DbSession, as_of: AsOf = None) -> Response:
        """Tasks, work items and latest reports as an XLSX workbook (plan office)."""
        data = exports.export_xlsx(session, principal.actor, _day(as_of), warn)
        return Response(data, media_type=XLSX,
                        headers={"Content-Disposition": exports.attachment_disposition("plan-supervision.xlsx")})

    @r.get("/import-template.xlsx", operation_id="get_plan_import_template", response_class=Response,
           responses={200: {"content": {XLSX: {}}}})
    def get_plan_import_template(principal: Scoped("plan.manage"), session: DbSession) -> Response:
        """The XLSX template for bulk-creating work items."""
        service.require_office(session, principal.actor)
        return Response(exports.import_template(), media_type=XLSX, headers={
            "Content-Disposition": exports.attachment_disposition("plan-items-template.xlsx")})

    @r.post("/import", response_model=ImportResult, status_code=201, operation_id="import_plan_items")
    def import_plan_items(principal: Scoped("plan.manage"), session: DbSession,
                          file: Annotated[UploadFile, File(description="the filled-in import template")],
                          dry_run: Annotated[bool, Form()] = False) -> ImportResult:
        """Bulk-create work items from the XLSX template: every row is checked, nothing is created when any
        row fails (422 lists each error with row and column)."""
        data = file.file.read(exports.IMPORT_MAX_BYTES + 1)
        items = exports.import_xlsx(session, principal.actor, data, dry_run=dry_run)
        return ImportResult(created=0 if dry_run else len(items), codes=[i.code for i in items])

    @r.get("/quarterly.pdf", operation_id="get_plan_quarterly_pdf", response_class=Response,
           responses={200: {"content": {"application/pdf": {}}}})
    def get_plan_quarterly_pdf(principal: Scoped("plan.manage"), session: DbSession,
                               year: Annotated[int, Query(ge=2000, le=2100)],
                               quarter: Annotated[int, Query(ge=1, le=4)]) -> Response:
        """The quarterly report (季度报告) with charts and a table per area, as departments file it upward."""
        from cityplus.modules.plan import report_pdf

        service.require_office(session, principal.actor)
        data = report_pdf.quarterly(session, year, quarter, warn)
        return Response(data, media_type="application/pdf", headers={
            "Content-Disposition": exports.attachment_disposition(f"plan-{year}-Q{quarter}.pdf")})

    @r.post("/reminders/run", response_model=ReminderRunPublic, operation_id="run_plan_reminders")
    def run_plan_reminders(principal: Scoped("plan.manage"), session: DbSession, ctx: Ctx,
                           background: BackgroundTasks) -> ReminderRunPublic:
        """Send the reminders due now (the scheduled job does this by itself; plan office). `ran` is false when
        another process is running the job; mails go out after the commit."""
        from cityplus.core import notify
        from cityplus.modules.plan import reminders

        service.require_office(session, principal.actor)
        run, mails = reminders.collect(session, settings, ctx.settings.base_url, holder=reminders.holder_of(ctx),
                                       default_locale=ctx.settings.default_locale)
        background.add_task(reminders.send, notify.SmtpSender(ctx.settings), mails)
        return ReminderRunPublic(ran=run.ran, due_soon=run.due_soon, overdue=run.overdue, inbox=run.inbox,
                                 mails=run.mails)

    return r
