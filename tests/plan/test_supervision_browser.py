"""End to end in a real browser: the plan office assigns a work item, the lead unit acknowledges, reports and
reports completion, the plan office closes it; the dashboard draws its charts.

Drives Debian's Chromium through Playwright against a live server with the demo city (skips locally without
Chromium; in CI that is a failure). The demo accounts fgw.staff (市发改委, the plan office) and hbj.staff
(市环保局, the lead unit here) sign in through the portal.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from cityplus.core.demo import DEMO_PASSWORD
from cityplus.web import find_chart
from tests.web.test_browser import chromium, live_server, page  # noqa: F401 - shared browser fixtures

pytestmark = pytest.mark.browser


def _sign_in(p: Any, username: str, next_path: str) -> None:
    p.goto(f"/login?next={next_path}")
    p.get_by_label("用户名").fill(username)
    p.get_by_label("密码").fill(DEMO_PASSWORD)
    p.get_by_role("button", name="登录").click()


def test_one_item_from_assignment_to_closing(page: Any, live_server: Any, chromium: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    # The plan office assigns a work item under task 12 to 市环保局.
    _sign_in(page, "fgw.staff", "/plan/items/new")
    expect(page.get_by_role("heading", level=1)).to_have_text("交办新的工作事项")
    page.get_by_label("任务").select_option("12")
    page.get_by_label("工作事项").fill("浏览器测试：空气质量数据接入")
    page.get_by_label("牵头单位").select_option("hbj")
    page.get_by_label("完成时限").fill("2030-06-28")
    page.get_by_label("指标名称").fill("接入监测站")
    page.get_by_label("目标值").fill("50")
    page.get_by_role("button", name="交办").click()
    expect(page).to_have_url(re.compile(r"/plan/items/\d+$"))
    item_path = re.sub(r"^https?://[^/]+", "", page.url)
    expect(page.locator("#item-status")).to_have_attribute("data-status", "assigned")

    # The lead unit, in its own browser session, acknowledges, reports progress and reports completion.
    context = page.context.browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    try:
        unit = context.new_page()
        _sign_in(unit, "hbj.staff", item_path)
        expect(unit).to_have_url(re.compile(re.escape(item_path) + "$"))
        unit.locator("#do-acknowledge").click()
        expect(unit.locator("#item-status")).to_have_attribute("data-status", "acknowledged")
        unit.get_by_label("进展报告").fill("已完成 20 个监测站的数据接入。")
        unit.get_by_label("接入监测站 当前值").fill("20")
        unit.locator("#do-report").click()
        expect(unit.locator("#item-status")).to_have_attribute("data-status", "in_progress")
        expect(unit.get_by_text("已完成 20 个监测站的数据接入。", exact=True)).to_be_visible()
        unit.get_by_label("进展报告").fill("50 个监测站全部接入，申请销号。")
        unit.get_by_label("接入监测站 当前值").fill("50")
        unit.locator("#do-complete").click()
        expect(unit.locator("#item-status")).to_have_attribute("data-status", "completion_reported")
        expect(unit.locator("#do-close")).to_have_count(0)  # only the plan office closes
    finally:
        context.close()

    # The plan office closes it (销号); the timeline shows every step.
    page.goto(item_path)
    page.get_by_label("备注").fill("验收通过")
    page.locator("#do-close").click()
    expect(page.locator("#item-status")).to_have_attribute("data-status", "closed")
    expect(page.locator("#timeline li")).to_have_count(6)
    expect(page.locator("#timeline li").last).to_have_attribute("data-action", "closed")

    # The dashboard: figures in tables, charts drawn in the browser from the JSON endpoint.
    page.goto("/plan/dashboard")
    expect(page.locator("#ranking tbody tr").first).to_be_visible()
    if find_chart() is not None:  # `npm ci` installed Chart.js (make test does)
        expect(page.locator("#plan-charts")).to_have_attribute("data-drawn", "true")
