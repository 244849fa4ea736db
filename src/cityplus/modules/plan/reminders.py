"""Reminders (催办): before a due date and, once overdue, every week, to the responsible unit's staff.

The job runs in every server process on a timer; a run takes the lease `plan-reminders` (cityplus.core.lease), so
runs never overlap, and gives it back when its transaction commits. Each reminder is recorded in plan_reminders
under a unique key (item, kind, due date or overdue week), so with any number of processes — and across restarts —
a reminder is sent once; a run that finds a reminder recorded skips it. The inbox messages
and the record commit together; e-mail goes out after the commit (at most once: a relay failure is logged, not
retried, and the inbox still holds the message).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import date, datetime

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cityplus.core import lease, notify
from cityplus.core.calendar import china
from cityplus.core.context import AppContext
from cityplus.core.db import Database, utcnow
from cityplus.core.identity.models import Organisation, User
from cityplus.modules.plan.models import PlanReminder, PlanWorkItem
from cityplus.modules.plan.settings import PlanSettings
from cityplus.modules.plan.supervision import DEPARTMENT_ROLES, OPEN, city_today, office_org

log = structlog.get_logger("cityplus.plan")

LEASE = "plan-reminders"

SUBJECT = {
    "due_soon": {"zh_CN": "【到期提醒】{code} {title} 将于 {due} 到期",
                 "en": "[Reminder] {code} {title} is due on {due}"},
    "overdue": {"zh_CN": "【逾期催办】{code} {title} 已逾期 {days} 天",
                "en": "[Overdue] {code} {title} is {days} days overdue"},
}
BODY = {
    "due_soon": {"zh_CN": "工作事项 {code}（任务 {task}）“{title}”将于 {due} 到期，剩余 {left} 个工作日。"
                          "请按时报送进展或完成情况：{link}",
                 "en": "Work item {code} (task {task}) \"{title}\" is due on {due}, {left} working days from now. "
                       "Please report progress or completion in time: {link}"},
    "overdue": {"zh_CN": "工作事项 {code}（任务 {task}）“{title}”已于 {due} 到期，至今逾期 {days} 天。"
                         "请尽快报送完成情况或申请延期：{link}",
                "en": "Work item {code} (task {task}) \"{title}\" was due on {due} and is {days} days overdue. "
                      "Please report completion or request an extension: {link}"},
}


@dataclass(frozen=True)
class ReminderRun:
    """What one run of the job did."""

    ran: bool  # False: another process holds the lease
    due_soon: int = 0
    overdue: int = 0
    inbox: int = 0
    mails: int = 0


def _due(item: PlanWorkItem, today: date, remind_workdays: int) -> tuple[str, str] | None:
    """(kind, key) of the reminder the item needs today, if any."""
    if today > item.due_date:
        week = (today - item.due_date).days // 7  # chase once a week
        return "overdue", f"{item.due_date.isoformat()}/w{week}"
    if china().within_workdays(today, item.due_date, remind_workdays):
        return "due_soon", item.due_date.isoformat()
    return None


def _recipients(session: Session, org_codes: list[str]) -> list[User]:
    stmt = (select(User).join(Organisation, User.org_id == Organisation.id)
            .where(Organisation.code.in_(org_codes), User.role.in_(DEPARTMENT_ROLES), User.is_active.is_(True))
            .order_by(User.id))
    return list(session.scalars(stmt).unique())


def collect(session: Session, settings: PlanSettings, base_url: str, *, holder: str, now: datetime | None = None,
            default_locale: str = "zh_CN") -> tuple[ReminderRun, list[notify.Mail]]:
    """Record the reminders due now and put them in the recipients' inboxes, if this holder gets the lease;
    returns the counts and the mails to send once the transaction has committed."""
    now = now or utcnow()
    if not lease.acquire(session, LEASE, holder, settings.reminder_lease_seconds):
        return ReminderRun(ran=False), []
    today = city_today(now)
    counts = {"due_soon": 0, "overdue": 0}
    inbox = 0
    mails: list[notify.Mail] = []
    office = office_org(session)
    items = session.scalars(select(PlanWorkItem).where(PlanWorkItem.status.in_(OPEN))
                            .order_by(PlanWorkItem.id)).all()
    for item in items:
        due = _due(item, today, settings.remind_workdays)
        if due is None:
            continue
        kind, key = due
        orgs = [item.lead_org] + ([office] if kind == "overdue" and office != item.lead_org else [])
        users = _recipients(session, orgs)
        try:
            with session.begin_nested():
                session.add(PlanReminder(item_id=item.id, kind=kind, key=key, sent_at=now,
                                         recipients=len(users), mails=sum(1 for u in users if u.email)))
        except IntegrityError:
            continue  # already sent
        counts[kind] += 1
        values = {"code": item.code, "task": item.task_number, "title": item.title,
                  "due": item.due_date.isoformat(), "days": (today - item.due_date).days,
                  "left": china().workdays_between(today, item.due_date),
                  "link": f"{base_url}/plan/items/{item.id}"}
        for user in users:
            loc = user.locale if user.locale in ("zh_CN", "en") else default_locale
            subject = SUBJECT[kind][loc].format(**values)
            body = BODY[kind][loc].format(**values)
            notify.post(session, user.id, f"plan.{kind}", subject, body, link=f"/plan/items/{item.id}")
            inbox += 1
            if user.email:
                mails.append(notify.Mail(user.email, subject, body))
    lease.release(session, LEASE, holder)  # commits with the records: the next run, anywhere, sees them
    log.info("plan_reminders_recorded", due_soon=counts["due_soon"], overdue=counts["overdue"], inbox=inbox)
    return ReminderRun(ran=True, due_soon=counts["due_soon"], overdue=counts["overdue"], inbox=inbox,
                       mails=len(mails)), mails


def send(sender: notify.SmtpSender, mails: list[notify.Mail]) -> int:
    """Send the reminder mails (after the commit); a relay failure is logged, the inbox messages stand."""
    if not mails:
        return 0
    try:
        return sender.send(mails)
    except OSError as exc:  # smtplib errors are OSErrors
        log.error("plan_reminder_mail_failed", error=str(exc)[:300], mails=len(mails))
        return 0


def run_once(db: Database, sender: notify.SmtpSender, settings: PlanSettings, base_url: str, *,
             holder: str, now: datetime | None = None, default_locale: str = "zh_CN") -> ReminderRun:
    """One run of the job: record and post the reminders due now in one transaction, then mail them."""
    with db.session() as session:
        run, mails = collect(session, settings, base_url, holder=holder, now=now, default_locale=default_locale)
    sent = send(sender, mails)
    return ReminderRun(ran=run.ran, due_soon=run.due_soon, overdue=run.overdue, inbox=run.inbox, mails=sent)


def holder_of(ctx: AppContext) -> str:
    """This process's lease holder id for the reminder job (shared with its timer)."""
    rt = ctx.module_state.get("plan.reminders")
    if rt is None:
        rt = ReminderRuntime(holder=lease.holder_id())
        ctx.module_state["plan.reminders"] = rt
    return rt.holder  # type: ignore[no-any-return]


@dataclass
class ReminderRuntime:
    """The reminder timer of one process."""

    holder: str
    task: asyncio.Task[None] | None = None


async def _loop(ctx: AppContext, rt: ReminderRuntime, settings: PlanSettings) -> None:
    sender = notify.SmtpSender(ctx.settings)
    await asyncio.sleep(min(60.0, settings.reminder_seconds))  # let start-up (and short-lived test apps) finish
    while True:
        try:
            await asyncio.to_thread(run_once, ctx.db, sender, settings, ctx.settings.base_url, holder=rt.holder,
                                    default_locale=ctx.settings.default_locale)
        except Exception as exc:  # the timer must survive a bad run; the next one retries
            log.error("plan_reminders_failed", error=str(exc)[:300])
        await asyncio.sleep(settings.reminder_seconds)


async def start(ctx: AppContext) -> None:
    """Start the reminder timer (unless CITYPLUS_PLAN_REMINDER_SECONDS is 0)."""
    settings = PlanSettings()
    holder_of(ctx)
    rt: ReminderRuntime = ctx.module_state["plan.reminders"]
    if settings.reminder_seconds <= 0 or rt.task is not None:
        return
    rt.task = asyncio.create_task(_loop(ctx, rt, settings), name="cityplus-plan-reminders")


async def stop(ctx: AppContext) -> None:
    """Stop the timer and give the lease up."""
    rt = ctx.module_state.pop("plan.reminders", None)
    if rt is None or rt.task is None:
        return
    rt.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await rt.task
    try:
        with ctx.db.session() as session:
            lease.release(session, LEASE, rt.holder)
    except Exception as exc:  # the lease then simply expires
        log.warning("plan_reminder_lease_release_failed", error=str(exc)[:200])
