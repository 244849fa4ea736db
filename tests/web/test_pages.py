"""Public portal pages: home, language, plan, area, task, departments, coverage, errors and headers."""

from __future__ import annotations

import re

import httpx
from markupsafe import escape

from cityplus.modules.plan.service import plan_data
from tests.web.helpers import form_token, sign_in


def _section(html: str, start_id: str, end_id: str | None = None) -> str:
    start = html.index(f'id="{start_id}"')
    end = html.index(f'id="{end_id}"', start) if end_id else len(html)
    return html[start:end]


async def switch_language(client: httpx.AsyncClient, locale: str, back_to: str = "/") -> httpx.Response:
    token = await form_token(client, back_to)
    return await client.post("/locale", data={"csrf_token": token, "locale": locale, "next": back_to})


async def test_home_is_chinese_by_default_with_the_12_areas(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in r.text
    assert "行动计划" in r.text
    areas = plan_data()["areas"]
    assert len(areas) == 12
    for area in areas:
        assert area["title"]["zh"] in r.text
        assert f'href="/plan/areas/{area["number"]}"' in r.text
    # The plan module's services appear under area 12, as its manifest says.
    assert 'href="/plan/coverage"' in _section(r.text, "areas-title")
    # Anonymous forms get a double-submit CSRF cookie.
    assert any(c.startswith("cityplus_csrf=") for c in r.headers.get_list("set-cookie"))


async def test_language_switch_to_english_and_back(browser: httpx.AsyncClient) -> None:
    r = await switch_language(browser, "en", "/plan")
    assert r.status_code == 303
    assert r.headers["location"] == "/plan"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("cityplus_locale="))
    assert "cityplus_locale=en" in cookie and "samesite=lax" in cookie.lower()
    home = await browser.get("/")
    assert '<html lang="en">' in home.text
    assert "Action plan" in home.text
    for area in plan_data()["areas"]:
        assert area["title"]["en"] in home.text
    assert "行动计划" not in home.text  # no Chinese UI text left (the language switch names itself: 中文)
    r = await switch_language(browser, "zh_CN")
    assert '<html lang="zh-CN">' in (await browser.get("/")).text


async def test_language_switch_refuses_open_redirect_and_unknown_locales(browser: httpx.AsyncClient) -> None:
    token = await form_token(browser, "/")
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)"):
        r = await browser.post("/locale", data={"csrf_token": token, "locale": "en", "next": target})
        assert r.status_code == 303
        assert r.headers["location"] == "/"
    r = await browser.post("/locale", data={"csrf_token": token, "locale": "fr", "next": "/orgs"})
    assert r.headers["location"] == "/orgs"
    assert not any(c.startswith("cityplus_locale=fr") for c in r.headers.get_list("set-cookie"))


async def test_language_is_kept_on_the_signed_in_user(app, browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("citizen")
    await sign_in(browser, user.username, user.password)
    r = await switch_language(browser, "en", "/profile")
    assert r.status_code == 303
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": "text/html"}) as other_browser:
        await sign_in(other_browser, user.username, user.password)
        page = await other_browser.get("/profile")
        assert '<html lang="en">' in page.text  # from the user's record, not this browser's cookie
        assert "My account" in page.text


async def test_plan_page_lists_the_areas_and_46_tasks(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/plan")
    assert r.status_code == 200
    tasks = set(re.findall(r'href="/plan/tasks/(\d+)"', r.text))
    assert tasks == {str(n) for n in range(1, 47)}
    assert "“互联网+”政务服务" in r.text


async def test_area_page(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/plan/areas/6")
    assert r.status_code == 200
    area = plan_data()["areas"][5]
    assert area["title"]["zh"] in r.text and area["intro"]["zh"] in r.text
    for n in area["tasks"]:
        assert f'href="/plan/tasks/{n}"' in r.text
    assert 'rel="prev"' in r.text and 'rel="next"' in r.text


async def test_task_page_shows_text_units_platforms_and_modules(browser: httpx.AsyncClient) -> None:
    task = next(t for t in plan_data()["tasks"] if t["number"] == 42)
    r = await browser.get("/plan/tasks/42")
    assert r.status_code == 200
    assert task["text"]["zh"] in r.text
    units = _section(r.text, "units-title", "platforms-title")
    assert 'href="/orgs/fgw"' in units and "牵头" in units
    assert "平台支撑情况" in r.text and "<code class=\"tag\">plan</code>" in r.text


async def test_task_46_shows_the_units_note(browser: httpx.AsyncClient) -> None:
    task = next(t for t in plan_data()["tasks"] if t["number"] == 46)
    r = await browser.get("/plan/tasks/46")
    assert r.status_code == 200
    assert task["units_note"]["zh"] in r.text
    assert task["platforms"][0]["zh"] in r.text
    await switch_language(browser, "en", "/plan/tasks/46")
    en = await browser.get("/plan/tasks/46")
    assert escape(task["units_note"]["en"]) in en.text and escape(task["text"]["en"]) in en.text
    assert task["text"]["zh"] in en.text  # the Chinese original, folded away


async def test_unknown_task_is_a_404_page(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/plan/tasks/47")
    assert r.status_code == 404
    assert "页面不存在" in r.text and '<html lang="zh-CN">' in r.text
    r = await browser.get("/no/such/page")
    assert r.status_code == 404 and "页面不存在" in r.text


async def test_department_page_lists_led_and_shared_tasks(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/orgs/fgw")
    assert r.status_code == 200
    assert "市发改委" in r.text and "成都市发展和改革委员会" in r.text
    led = _section(r.text, "leads-title", "shares-title")
    shared = _section(r.text, "shares-title")
    assert 'href="/plan/tasks/42"' in led
    assert 'href="/plan/tasks/42"' not in shared
    data = plan_data()["tasks"]
    for t in data:
        if "市发改委" in t["units"][1:]:
            assert f'href="/plan/tasks/{t["number"]}"' in shared
    assert 'href="/plan/areas/12"' in _section(r.text, "areas-title", "leads-title")


async def test_organisations_page_groups_by_kind(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/orgs")
    assert r.status_code == 200
    for heading in ("市级委员会", "市级局", "区（市）县"):
        assert heading in r.text
    assert 'href="/orgs/fgw"' in r.text
    assert (await browser.get("/orgs/nope")).status_code == 404


async def test_coverage_page_has_46_rows(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/plan/coverage")
    assert r.status_code == 200
    rows = re.findall(r'<tr class="(covered|uncovered)">', r.text)
    assert len(rows) == 46
    covered = rows.count("covered")
    assert covered >= 1  # the plan module serves task 42
    assert f"46 项任务中已有 {covered} 项得到支撑" in r.text


async def test_pages_send_security_headers(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "unsafe-inline" not in csp
    assert "<script>" not in r.text and " style=" not in r.text  # nothing inline, so the policy holds


async def test_static_assets_and_htmx(browser: httpx.AsyncClient) -> None:
    from cityplus.web import HTMX_URL, find_htmx

    home = (await browser.get("/")).text
    css = re.search(r'href="(/static/cityplus\.css\?v=\w+)"', home)
    assert css and (await browser.get(css.group(1))).status_code == 200
    if find_htmx() is None:  # `npm ci` not run: pages work without it and do not reference it
        assert HTMX_URL not in home
        return
    assert f'src="{HTMX_URL}?v=' in home
    r = await browser.get(HTMX_URL)
    assert r.status_code == 200 and "htmx" in r.text[:2000]
    assert r.headers["content-type"].startswith("text/javascript")


async def test_api_paths_still_answer_problem_json(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/api/v1/orgs/no-such-org")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
