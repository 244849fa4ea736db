"""Dashboards of the supervision (督查督办看板): completion, lights, overdue, KPI progress, trend, unit ranking.

Figures count top-level work items (a unit's own sub-items are its breakdown, not the plan office's targets) and
are computed for one day (`as_of`), rebuilt from each item's completion and closing dates, so the plan office can
look back at any date of the plan period.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cityplus.core.calendar import china
from cityplus.core.identity import service as identity
from cityplus.modules.plan.models import PlanArea, PlanTask, PlanWorkItem
from cityplus.modules.plan.supervision import LIGHTS, Access, city_today, existed_on, light, list_items


@dataclass
class Tally:
    """Counts of one group of items."""

    total: int = 0
    closed: int = 0
    overdue: int = 0
    due: int = 0  # due by the day, or delivered
    on_time: int = 0  # delivered (completion reported) by the due date
    lights: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LIGHTS, 0))
    kpi_progress: list[float] = field(default_factory=list)

    def add(self, item: PlanWorkItem, day: date, warn: int) -> None:
        lamp = light(item, day, warn, china())
        self.total += 1
        self.lights[lamp] += 1
        self.closed += lamp == "done"
        delivered = item.completed_on is not None and item.completed_on <= day
        self.overdue += lamp == "red" and not delivered
        if delivered or item.due_date <= day:
            self.due += 1
            if delivered and item.completed_on is not None and item.completed_on <= item.due_date:
                self.on_time += 1
        self.kpi_progress += [k.progress for k in item.kpis if k.progress is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total, "closed": self.closed, "overdue": self.overdue,
            "completion_rate": round(self.closed / self.total, 4) if self.total else None,
            "on_time_rate": round(self.on_time / self.due, 4) if self.due else None,
            "due": self.due, "on_time": self.on_time, "lights": dict(self.lights),
            "kpi_progress": round(sum(self.kpi_progress) / len(self.kpi_progress), 4) if self.kpi_progress else None,
        }


def _month_ends(start: date, end: date) -> list[date]:
    out = []
    year, month = start.year, start.month
    while True:
        nxt = date(year + (month == 12), month % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        out.append(min(last, end))
        if last >= end:
            return out
        year, month = nxt.year, nxt.month


def trend(items: Iterable[PlanWorkItem], as_of: date, warn: int) -> list[dict[str, Any]]:
    """Month by month up to `as_of`: items assigned, closed, overdue and the completion rate."""
    items = list(items)
    if not items:
        return []
    first = min(city_today(i.created_at) for i in items)
    points = []
    for day in _month_ends(first, as_of):
        t = Tally()
        for i in items:
            if existed_on(i, day):
                t.add(i, day, warn)
        points.append({"month": day.strftime("%Y-%m"), "total": t.total, "closed": t.closed,
                       "overdue": t.overdue,
                       "completion_rate": round(t.closed / t.total, 4) if t.total else None})
    return points


def dashboard(session: Session, access: Access, as_of: date, warn: int) -> dict[str, Any]:
    """Everything the dashboard page draws, for the items the caller may see."""
    items = [i for i in list_items(session, access) if i.parent_id is None and existed_on(i, as_of)]
    tasks = {t.number: t for t in session.query(PlanTask)}
    areas = {a.number: a for a in session.query(PlanArea)}
    orgs = {o.code: o for o in identity.list_organisations(session)}
    total = Tally()
    by_area: dict[int, Tally] = defaultdict(Tally)
    by_task: dict[int, Tally] = defaultdict(Tally)
    by_org: dict[str, Tally] = defaultdict(Tally)
    for i in items:
        for tally in (total, by_area[tasks[i.task_number].area_number], by_task[i.task_number], by_org[i.lead_org]):
            tally.add(i, as_of, warn)
    ranking = sorted(
        ({"org": code, "name_zh": orgs[code].name_zh if code in orgs else code,
          "name_en": orgs[code].name_en if code in orgs else code, **t.as_dict()} for code, t in by_org.items()),
        key=lambda r: (-(r["on_time_rate"] if r["on_time_rate"] is not None else -1), -r["due"], r["org"]))
    return {
        "as_of": as_of.isoformat(),
        "warn_workdays": warn,
        "totals": total.as_dict(),
        "areas": [{"area": n, "numeral": areas[n].numeral, "title": {"zh": areas[n].title_zh,
                                                                       "en": areas[n].title_en},
                   **by_area[n].as_dict()} for n in sorted(by_area)],
        "tasks": [{"task": n, "numeral": tasks[n].numeral, "area": tasks[n].area_number,
                   "title": {"zh": tasks[n].title_zh, "en": tasks[n].title_en}, **by_task[n].as_dict()}
                  for n in sorted(by_task)],
        "departments": ranking,
        "trend": trend(items, as_of, warn),
    }
