"""The demo city's supervision data tells a story: items in every area, most closed, some late, with reports."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from cityplus.core import audit, demo
from cityplus.core.audit import Actor
from cityplus.modules.plan import service
from cityplus.modules.plan.models import PlanItemExtension, PlanItemReport, PlanWorkItem


def test_demo_work_items(ctx) -> None:  # type: ignore[no-untyped-def]
    demo.load(ctx, Actor.system("test"))
    with ctx.db.session() as s:
        office = service.Access(office=True, org="fgw")
        items = service.list_items(s, office)
        assert {i.task.area_number for i in items} == set(range(1, 13))
        assert all(date(2015, 1, 1) <= i.due_date <= date(2017, 12, 31) for i in items)
        board = service.dashboard(s, office, date(2017, 12, 31), 3)
        t = board["totals"]
        assert t["closed"] > t["total"] / 2 and t["overdue"] > 0
        assert 0 < t["on_time_rate"] < 1
        assert s.scalar(select(func.count()).select_from(PlanItemReport)) > len(items)
        assert s.scalar(select(func.count()).select_from(PlanItemExtension)
                        .where(PlanItemExtension.status == "approved")) > 0
        mid = service.dashboard(s, office, date(2016, 9, 28), 3)["totals"]["lights"]
        assert mid["green"] > 0 and mid["red"] > 0 and mid["done"] > 0  # mid-plan, all three kinds of item
        assert audit.verify(s).ok
        count = s.scalar(select(func.count()).select_from(PlanWorkItem))
    demo.load(ctx, Actor.system("test"))  # idempotent
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(PlanWorkItem)) == count
