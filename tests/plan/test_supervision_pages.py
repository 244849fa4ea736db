"""Supervision in the portal (no JavaScript): assign, acknowledge, report, complete, close through the forms;
dashboard and public progress pages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.web.helpers import csrf_of, sign_in

HTML = {"Accept": "text/html,application/xhtml+xml"}


@asynccontextmanager
async def portal(app, username: str, password: str) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=HTML) as c:
        r = await sign_in(c, username, password)
        assert r.status_code == 303, r.text[:300]
        yield c


def _version(html: str) -> str:
    found = re.search(r'name="version" value="(\d+)"', html)
    assert found, "the page has no action form"
    return found.group(1)


async def test_one_item_from_assignment_to_closing_in_the_portal(app, make_user) -> None:  # type: ignore[no-untyped-def]
    office = make_user("department_staff", org="fgw")
    lead = make_user("department_staff", org="jxw")
    async with portal(app, office.username, office.password) as o, portal(app, lead.username, lead.password) as u:
        page = await o.get("/plan/items/new")
        assert page.status_code == 200
        form = {"csrf_token": csrf_of(page.text), "task": "21", "title": "开放数据平台上线", "lead_org": "jxw",
                "co_orgs": "hbj", "start_date": "2016-01-04", "due_date": "2016-10-08", "public": "1",
                "kpi_name": "开放数据集", "kpi_unit": "个", "kpi_baseline": "0", "kpi_target": "100"}
        bad = await o.post("/plan/items/new", data={**form, "due_date": "2015-01-01"})
        assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text
        r = await o.post("/plan/items/new", data=form)
        assert r.status_code == 303, r.text[:500]
        url = r.headers["location"]
        assert re.fullmatch(r"/plan/items/\d+", url)

        page = await u.get(url)
        assert 'data-status="assigned"' in page.text and "do-acknowledge" in page.text
        r = await u.post(f"{url}/acknowledge", data={"csrf_token": csrf_of(page.text), "version": _version(page.text)})
        assert r.status_code == 303
        page = await u.get(url)
        kpi = re.search(r'name="kpi" value="(\d+)"', page.text)
        assert kpi
        r = await u.post(f"{url}/report", data={"csrf_token": csrf_of(page.text), "version": _version(page.text),
                                                "text": "数据梳理完成", "kpi": kpi.group(1), "kpi_value": "60"})
        assert r.status_code == 303
        page = await u.get(url)
        assert 'data-status="in_progress"' in page.text and "数据梳理完成" in page.text
        stale = await u.post(f"{url}/complete", data={"csrf_token": csrf_of(page.text), "version": "1",
                                                      "text": "x"})
        assert stale.status_code == 409 and "version" in stale.text
        r = await u.post(f"{url}/complete", data={"csrf_token": csrf_of(page.text), "version": _version(page.text),
                                                  "text": "平台已上线", "public": "1", "kpi": kpi.group(1),
                                                  "kpi_value": "100"})
        assert r.status_code == 303
        assert "do-close" not in (await u.get(url)).text  # the unit cannot close

        page = await o.get(url)
        assert 'data-status="completion_reported"' in page.text
        r = await o.post(f"{url}/close", data={"csrf_token": csrf_of(page.text), "version": _version(page.text),
                                               "note": "同意销号"})
        assert r.status_code == 303
        page = await o.get(url)
        assert 'data-status="closed"' in page.text
        assert page.text.count("<li data-action=") == 6

        listing = await u.get("/plan/items")
        assert "开放数据平台上线" in listing.text
        board = await o.get("/plan/dashboard")
        assert board.status_code == 200 and 'id="ranking"' in board.text and "dashboard-json" in board.text

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=HTML) as anon:
        public = await anon.get("/plan/progress")
        assert public.status_code == 200 and "开放数据平台上线" in public.text and "平台已上线" in public.text
        r = await anon.get("/plan/items")
        assert r.status_code == 303 and "/login" in r.headers["location"]


async def test_units_cannot_open_the_assignment_form(app, ctx, make_user) -> None:  # type: ignore[no-untyped-def]
    from cityplus.core import notify

    lead = make_user("department_staff", org="jxw")
    with ctx.db.session() as s:
        mid = notify.post(s, lead.user_id, "plan.overdue", "逾期催办", "请尽快报送", link="/plan/items").id
    async with portal(app, lead.username, lead.password) as u:
        inbox = await u.get("/inbox")
        assert inbox.status_code == 200 and "逾期催办" in inbox.text
        r = await u.post(f"/inbox/{mid}/read", data={"csrf_token": csrf_of(inbox.text)})
        assert r.status_code == 303 and r.headers["location"] == "/plan/items"
        assert (await u.get("/plan/items/new")).status_code == 403
        assert (await u.get("/plan/items/999999")).status_code == 404


async def test_import_attach_break_down_and_edit_in_the_portal(app, make_user) -> None:  # type: ignore[no-untyped-def]
    from tests.plan.test_exports import _workbook

    office = make_user("department_staff", org="fgw")
    lead = make_user("department_staff", org="jxw")
    row = [21, "开放数据平台上线", "", "市经信委", "", "2016-01-04", "2016-10-08", "是", "", "", "", ""]
    async with portal(app, office.username, office.password) as o, portal(app, lead.username, lead.password) as u:
        page = await o.get("/plan/import")
        bad = await o.post("/plan/import", data={"csrf_token": csrf_of(page.text)},
                           files={"file": ("x.xlsx", _workbook([row, [*row[:3], "市不存在局", *row[4:]]]), "x")})
        assert bad.status_code == 422 and 'id="import-errors"' in bad.text
        assert "<td>3</td><td>D</td>" in bad.text
        r = await o.post("/plan/import", data={"csrf_token": csrf_of(page.text)},
                         files={"file": ("x.xlsx", _workbook([row]), "x")})
        assert r.status_code == 200 and 'id="import-result"' in r.text
        url = re.search(r'href="(/plan/items/\d+)">21\.1<', r.text).group(1)  # type: ignore[union-attr]

        page = await o.get(url)
        r = await o.post(f"{url}/edit", data={"csrf_token": csrf_of(page.text), "version": _version(page.text),
                                              "title": "开放数据平台正式上线", "deliverable": "上线公告"})
        assert r.status_code == 303
        assert "开放数据平台正式上线" in (await o.get(url)).text

        page = await u.get(url)
        await u.post(f"{url}/acknowledge", data={"csrf_token": csrf_of(page.text), "version": _version(page.text)})
        page = await u.get(url)
        r = await u.post(f"{url}/subitems", data={"csrf_token": csrf_of(page.text), "title": "需求调研",
                                                  "due_date": "2016-03-31"})
        assert r.status_code == 303
        page = await u.get(url)
        assert "21.1.1 需求调研" in page.text
        pdf = b"%PDF-1.4\n%report\n"
        r = await u.post(f"{url}/report", data={"csrf_token": csrf_of(page.text), "text": "见附件"},
                         files={"file": ("进展.pdf", pdf, "application/pdf")})
        assert r.status_code == 303
        page = await u.get(url)
        link = re.search(r'href="(/api/v1/plan/attachments/\d+)">进展.pdf<', page.text)
        assert link and (await u.get(link.group(1))).content == pdf
        r = await u.post(f"{url}/report", data={"csrf_token": csrf_of(page.text), "text": "坏附件"},
                         files={"file": ("x.pdf", b"MZ", "application/pdf")})
        assert r.status_code == 422 and "坏附件" not in (await u.get(url)).text  # report and file: all or nothing


async def test_supervision_pages_are_well_formed(app, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    """One h1, ordered headings, labelled controls, valid references (the portal's accessibility checks)."""
    from tests.plan.conftest import Party, create
    from tests.web.test_accessibility import problems_of

    office = make_user("department_staff", org="fgw")
    lead = make_user("department_staff", org="jxw")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        item = await create(api, Party(office.username, "fgw", token_for(office)))
        await api.post(f"/api/v1/plan/items/{item['id']}/acknowledge", json={"version": 1},
                       headers=token_for(lead))
    problems: list[str] = []
    for user in (office, lead):
        async with portal(app, user.username, user.password) as c:
            for path in ("/plan/items", f"/plan/items/{item['id']}", "/plan/dashboard", "/plan/progress",
                         "/plan/tasks/21", "/inbox", *(("/plan/items/new", "/plan/import") if user is office else ())):
                r = await c.get(path)
                assert r.status_code == 200, (path, r.status_code)
                problems += [f"{user.username} {path}: {p}" for p in problems_of(r.text)]
            if user is office:
                page = await c.get("/plan/items/new")
                r = await c.post("/plan/items/new", data={"csrf_token": csrf_of(page.text), "title": ""})
                assert r.status_code == 422
                problems += [f"new item with errors: {p}" for p in problems_of(r.text)]
    assert not problems, "\n".join(problems)
