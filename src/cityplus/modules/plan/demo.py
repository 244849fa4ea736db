"""Demo data of the plan module: the plan itself, and supervision work items for every area across 2015–2017.

The items are made through the service with historical timestamps, so their timelines, reports, lights and the
dashboards' trend tell the story of the plan period: most items closed, some late, a few still open (overdue),
one extension approved and one returned report.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cityplus.core.audit import Actor
from cityplus.core.context import AppContext
from cityplus.modules.plan import service
from cityplus.modules.plan.models import PlanWorkItem
from cityplus.modules.plan.schemas import (
    CompletionIn,
    ExtensionIn,
    ItemCreate,
    ReportIn,
    ReturnIn,
    VersionIn,
)

MILESTONES = (
    ("制定实施方案", "实施方案印发", None),
    ("建成并上线运行", "平台上线运行", ("接入部门", "个", 0, 20)),
    ("完成年度推广应用", "年度推广总结报告", ("服务人次", "万人次", 0, 100)),
)


def _at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour - 8, 0, tzinfo=UTC)  # Chengdu local hour


def _unit(org: str) -> Actor:
    return Actor(username=f"{org}.staff", org_code=org, role="department_staff")


def load(session: Session, ctx: AppContext) -> None:
    service.load_plan(session, Actor.system("demo"))
    if session.scalar(select(func.count()).select_from(PlanWorkItem)):
        return  # the demo's items are there already
    load_work_items(session)


def load_work_items(session: Session, seed: int = 2015) -> int:
    """Two or three milestones under every task, with a realistic history; returns how many were made."""
    rng = random.Random(seed)
    office = Actor(username="fgw.staff", org_code=service.office_org(session), role="department_staff")
    made = 0
    for task in service.list_tasks(session):
        if not task.units:
            continue
        lead = task.units[0].org_code
        co = [u.org_code for u in task.units[1:3] if u.org_code != lead]
        start = date(2015, 8, 1) + timedelta(days=rng.randrange(0, 120))
        for n, (title, deliverable, kpi) in enumerate(MILESTONES[: 2 + (task.number % 2)]):
            due = start + timedelta(days=120 + n * 240 + rng.randrange(0, 60))
            if due > date(2017, 12, 29):
                due = date(2017, 12, 29)
            kpis = [{"name": kpi[0], "unit": kpi[1], "baseline": kpi[2], "target": kpi[3]}] if kpi else []
            item = service.create_item(session, office, ItemCreate(
                task=task.number, title=f"{task.title_zh}：{title}", deliverable=deliverable, lead_org=lead,
                co_orgs=co, start_date=start, due_date=due, public=n != 1 or task.number % 3 == 0, kpis=kpis),
                now=_at(start))
            _history(session, rng, office, item, start, due)
            made += 1
    return made


def _history(session: Session, rng: random.Random, office: Actor, item: PlanWorkItem, start: date,
             due: date) -> None:
    """Acknowledge, report, maybe extend, complete (on time or late), and close or return — or stay open."""
    unit = _unit(item.lead_org)
    service.acknowledge(session, unit, item.id, VersionIn(version=item.version), now=_at(start + timedelta(days=3)))
    kpi = item.kpis[0] if item.kpis else None
    day = start + timedelta(days=30)
    while day < min(due, date(2017, 12, 1)):
        values = [{"kpi": kpi.id, "value": round(kpi.target * min(1.0, (day - start).days / (due - start).days), 1)}] \
            if kpi else []
        reporter = unit if not item.co_orgs or rng.random() < 0.7 else _unit(item.co_orgs[0])
        service.add_report(session, reporter, item.id, ReportIn(
            text=f"按计划推进，已完成阶段工作（{day.isoformat()}）。", kpi_values=values, public=rng.random() < 0.5),
            now=_at(day, 15))
        day += timedelta(days=rng.randrange(45, 90))
    fate = rng.random()
    if fate < 0.12 and due < date(2017, 6, 30):  # asks for more time, approved
        ext = service.request_extension(session, unit, item.id, ExtensionIn(
            version=item.version, reason="需与省级平台对接，申请延期。", new_due_date=due + timedelta(days=60)),
            now=_at(due - timedelta(days=10)))
        service.decide_extension(session, office, ext.id, True, "同意延期", now=_at(due - timedelta(days=7)))
        due = due + timedelta(days=60)
    if due > date(2017, 11, 30) or fate > 0.9:
        return  # still open: overdue by now
    done = due + timedelta(days=rng.randrange(-25, 6) if fate < 0.75 else rng.randrange(10, 60))
    values = [{"kpi": kpi.id, "value": kpi.target}] if kpi else []
    service.report_completion(session, unit, item.id, CompletionIn(
        version=item.version, text="已完成全部工作，材料齐全，申请销号。", kpi_values=values, public=True),
        now=_at(done, 16))
    if rng.random() < 0.1:
        service.return_item(session, office, item.id, ReturnIn(version=item.version, reason="验收材料不全，请补充。"),
                            now=_at(done + timedelta(days=5)))
        done = done + timedelta(days=12)
        service.report_completion(session, unit, item.id, CompletionIn(
            version=item.version, text="已补充验收材料。", kpi_values=[]), now=_at(done, 16))
    service.close_item(session, office, item.id, VersionIn(version=item.version, note="同意销号"),
                       now=_at(done + timedelta(days=rng.randrange(3, 15))))
