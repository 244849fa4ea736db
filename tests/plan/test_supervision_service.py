"""Supervision through the service: warning lights on the working-day calendar, dashboards, reminders (inbox and
mail to a real SMTP server, sent once with several processes), audit chain."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest

from cityplus.core import audit, notify
from cityplus.core.audit import Actor
from cityplus.core.config import load_settings
from cityplus.modules.plan import service
from cityplus.modules.plan.schemas import CompletionIn, ItemCreate, VersionIn
from cityplus.modules.plan.settings import PlanSettings
from tests.core.test_notify import smtp_server  # noqa: F401 - the aiosmtpd fixture


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 2, 0, tzinfo=UTC)  # 10:00 in Chengdu


OFFICE = Actor("office", org_code="fgw", role="department_staff")
LEAD = Actor("lead", org_code="jxw", role="department_staff")


def _item(ctx, due: date, created: datetime, **over) -> int:  # type: ignore[no-untyped-def]
    data = ItemCreate(task=21, title="数据开放平台", lead_org="jxw", due_date=due, **over)
    with ctx.db.session() as s:
        return service.create_item(s, OFFICE, data, now=created).id


def test_light_across_the_national_day_holiday(ctx) -> None:  # type: ignore[no-untyped-def]
    """Due Saturday 8 October 2016, a make-up working day after the 1–7 October holiday."""
    iid = _item(ctx, date(2016, 10, 8), _at(2016, 9, 1))
    with ctx.db.session() as s:
        item = service.get_item(s, service.Access(office=True, org="fgw"), iid)
        # 27 September (Tue): 28, 29, 30 Sep and 8 Oct are four working days ahead → green
        assert service.light(item, date(2016, 9, 27), 3) == "green"
        # 28 September: nine calendar days, five weekdays, but only three working days (29, 30 Sep, 8 Oct)
        assert service.workdays_left(item, date(2016, 9, 28)) == 3
        assert service.light(item, date(2016, 9, 28), 3) == "yellow"
        assert service.light(item, date(2016, 10, 8), 3) == "yellow"  # due today
        assert service.light(item, date(2016, 10, 9), 3) == "red"
        assert service.light(item, date(2016, 9, 28), 2) == "green"  # N is configurable


def test_lights_follow_completion_and_closing(ctx) -> None:  # type: ignore[no-untyped-def]
    iid = _item(ctx, date(2016, 6, 30), _at(2016, 1, 4))
    with ctx.db.session() as s:
        service.acknowledge(s, LEAD, iid, VersionIn(version=1), now=_at(2016, 1, 5))
    with ctx.db.session() as s:
        service.report_completion(s, LEAD, iid, CompletionIn(version=2, text="done"), now=_at(2016, 7, 4))
    with ctx.db.session() as s:
        service.close_item(s, OFFICE, iid, VersionIn(version=3), now=_at(2016, 7, 8))
    with ctx.db.session() as s:
        item = service.get_item(s, service.Access(office=True, org="fgw"), iid)
        assert service.light(item, date(2016, 6, 1), 3) == "green"
        assert service.light(item, date(2016, 7, 1), 3) == "red"
        assert service.light(item, date(2016, 7, 5), 3) == "red"  # completion reported late, not yet closed
        assert service.light(item, date(2016, 7, 8), 3) == "done"
        assert item.completed_on == date(2016, 7, 4)
        assert audit.verify(s).ok
        entries, _total = audit.query(s, object_type="plan_work_item", object_id=item.code)
        assert [e.action for e in reversed(entries)] == [
            "plan.item_assigned", "plan.item_acknowledged", "plan.item_completion_reported", "plan.item_closed"]
        assert {e.actor for e in entries} == {"office", "lead"}


def test_dashboard_counts_rates_ranking_and_trend(ctx) -> None:  # type: ignore[no-untyped-def]
    on_time = _item(ctx, date(2016, 6, 30), _at(2016, 1, 4), kpis=[{"name": "数据集", "target": 100}])
    _item(ctx, date(2016, 3, 31), _at(2016, 1, 4))  # never delivered: overdue from April
    other = ItemCreate(task=12, title="监测网络", lead_org="hbj", due_date=date(2016, 12, 30))
    with ctx.db.session() as s:
        service.create_item(s, OFFICE, other, now=_at(2016, 2, 1))
    with ctx.db.session() as s:
        service.acknowledge(s, LEAD, on_time, VersionIn(version=1), now=_at(2016, 1, 5))
        item = service.get_item(s, service.Access(office=True, org="fgw"), on_time)
        kpi = item.kpis[0].id
    with ctx.db.session() as s:
        service.report_completion(s, LEAD, on_time, CompletionIn(version=2, text="done",
                                                                  kpi_values=[{"kpi": kpi, "value": 80}]),
                                  now=_at(2016, 6, 20))
    with ctx.db.session() as s:
        service.close_item(s, OFFICE, on_time, VersionIn(version=3), now=_at(2016, 6, 24))
    with ctx.db.session() as s:
        board = service.dashboard(s, service.Access(office=True, org="fgw"), date(2016, 7, 15), 3)
        t = board["totals"]
        assert (t["total"], t["closed"], t["overdue"]) == (3, 1, 1)
        assert t["lights"] == {"green": 1, "yellow": 0, "red": 1, "done": 1}
        assert t["completion_rate"] == pytest.approx(1 / 3, abs=1e-4)
        assert t["on_time_rate"] == 0.5 and t["kpi_progress"] == 0.8
        assert [a["area"] for a in board["areas"]] == [3, 6]
        assert [d["org"] for d in board["departments"]] == ["jxw", "hbj"]
        assert board["departments"][0]["on_time_rate"] == 0.5 and board["departments"][1]["on_time_rate"] is None
        trend = {p["month"]: p for p in board["trend"]}
        assert trend["2016-01"]["total"] == 2 and trend["2016-02"]["total"] == 3
        assert trend["2016-04"]["overdue"] == 1 and trend["2016-06"]["closed"] == 1
        assert list(trend)[-1] == "2016-07"
        # a unit's dashboard counts its own items only
        mine = service.dashboard(s, service.Access(office=False, org="hbj"), date(2016, 7, 15), 3)
        assert mine["totals"]["total"] == 1


def test_reminders_go_to_inbox_and_mail_once(ctx, make_user, smtp_server) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    handler, port = smtp_server
    lead_user = make_user("department_staff", org="jxw")
    office_user = make_user("department_staff", org="fgw")
    make_user("department_staff", org="kjj")  # an unrelated unit hears nothing
    from cityplus.core.identity import service as identity

    with ctx.db.session() as s:
        for uid, mail in ((lead_user.user_id, "lead@jxw.example"), (office_user.user_id, "office@fgw.example")):
            identity.get_user(s, uid).email = mail
    soon = _item(ctx, date(2016, 10, 8), _at(2016, 9, 1))
    overdue = _item(ctx, date(2016, 9, 20), _at(2016, 9, 1))
    _item(ctx, date(2016, 12, 30), _at(2016, 9, 1))  # far off: no reminder
    settings = load_settings(database_url=ctx.settings.database_url, var_dir=ctx.settings.var_dir,
                             smtp_host="127.0.0.1", smtp_port=port)
    sender = notify.SmtpSender(settings)
    plan_settings = PlanSettings(remind_workdays=3, reminder_lease_seconds=60)
    now = _at(2016, 9, 28)

    # Two "processes" run the job at the same moment: the runs take turns on the lease, and only the first
    # sends; the second finds every reminder recorded (or the lease taken) and sends nothing.
    results: list[service.ReminderRun] = []

    def run(holder: str) -> None:
        results.append(service.run_reminders(ctx.db, sender, plan_settings, "http://city.example", holder=holder,
                                             now=now))

    threads = [threading.Thread(target=run, args=(f"proc-{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = max(results, key=lambda r: r.inbox)
    other = min(results, key=lambda r: r.inbox)
    assert sent.ran and (sent.due_soon, sent.overdue) == (1, 1)
    assert (other.due_soon, other.overdue, other.inbox, other.mails) == (0, 0, 0, 0)
    # due soon → the lead unit; overdue → the lead unit and the plan office
    assert sent.inbox == 3 and sent.mails == 3
    recipients = sorted(rcpt for _f, rcpts, _m in handler.messages for rcpt in rcpts)
    assert recipients == ["lead@jxw.example", "lead@jxw.example", "office@fgw.example"]
    subjects = [m["Subject"] for _f, _r, m in handler.messages]
    assert any("到期提醒" in x and "2016-10-08" in x for x in subjects)
    assert any("逾期催办" in x and "8 天" in x for x in subjects)
    with ctx.db.session() as s:
        inbox = notify.inbox(s, lead_user.user_id)
        assert {m.link for m in inbox} == {f"/plan/items/{soon}", f"/plan/items/{overdue}"}

    # Another run the same day: nothing new is sent.
    holder = "proc-2"
    again = service.run_reminders(ctx.db, sender, plan_settings, "http://city.example", holder=holder, now=now)
    assert again.ran and (again.due_soon, again.overdue, again.inbox) == (0, 0, 0)
    assert len(handler.messages) == 3
    # A week later the overdue item is chased again; the due-soon one is now overdue too.
    later = service.run_reminders(ctx.db, sender, plan_settings, "http://city.example", holder=holder,
                                  now=_at(2016, 10, 10))
    assert (later.due_soon, later.overdue) == (0, 2)



def test_a_held_lease_stops_a_run(ctx) -> None:  # type: ignore[no-untyped-def]
    from cityplus.core import lease
    from cityplus.modules.plan.reminders import LEASE

    _item(ctx, date(2016, 9, 20), _at(2016, 9, 1))
    with ctx.db.session() as s:
        assert lease.acquire(s, LEASE, "someone-else", ttl=60)
    sender = notify.SmtpSender(load_settings(var_dir=ctx.settings.var_dir))
    run = service.run_reminders(ctx.db, sender, PlanSettings(), "http://x.example", holder="me", now=_at(2016, 9, 28))
    assert not run.ran and run.inbox == 0


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_edits_of_one_item_conflict(ctx) -> None:  # type: ignore[no-untyped-def]
    """Two editors load version 1 at the same time; the second to write gets 409, not a lost update.

    (PostgreSQL only: on SQLite every write transaction holds the database lock from its first statement, so two
    editors cannot interleave; there the version the client sends is what detects the stale edit.)
    """
    from cityplus.core.errors import Conflict
    from cityplus.modules.plan.schemas import ItemUpdate

    iid = _item(ctx, date(2016, 10, 8), _at(2016, 9, 1))
    office = service.Access(office=True, org="fgw")
    first, second = ctx.db.sessionmaker(), ctx.db.sessionmaker()
    try:
        first.begin()
        second.begin()
        assert service.get_item(first, office, iid).version == 1
        assert service.get_item(second, office, iid).version == 1
        service.update_item(first, OFFICE, iid, ItemUpdate(version=1, title="第一位编辑"))
        first.commit()
        with pytest.raises(Conflict) as info:
            service.update_item(second, OFFICE, iid, ItemUpdate(version=1, title="第二位编辑"))
        assert info.value.errors[0]["field"] == "version"
        second.rollback()
    finally:
        first.close()
        second.close()
    with ctx.db.session() as s:
        item = service.get_item(s, office, iid)
        assert (item.title, item.version) == ("第一位编辑", 2)
