"""End to end in a real browser: sign in, switch language, browse plan → area → task → department.

Drives Debian's Chromium through Playwright against a live server with the demo city. Locally the test skips
when Chromium is not installed; in CI (CI=true) that is a failure, since `.ci/run` installs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cityplus.core.demo import DEMO_PASSWORD
from cityplus.modules.plan.service import plan_data
from tests.web.live import CHROMIUM_ARGS, LiveServer, find_chromium

pytestmark = pytest.mark.browser


def _require(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    _require(path is not None, "Chromium not found (/usr/bin/chromium or `chromium` on PATH); "
                               "install Debian's `chromium` package to run the browser tests")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require(False, "the playwright Python package is not installed (pip install -e '.[dev]')")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def live_server(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("live")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(chromium: str, live_server: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def test_sign_in_switch_language_and_browse_the_plan(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    area = plan_data()["areas"][5]  # 六、“互联网+”政务服务
    task = next(t for t in plan_data()["tasks"] if t["number"] == area["tasks"][0])

    # The home page, in Chinese by default; the skip link is the first thing the keyboard reaches.
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", level=1)).to_have_text("互联网+成都")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="跳到主要内容")).to_be_focused()

    # Sign in as the platform administrator of the demo city.
    page.get_by_role("link", name="登录", exact=True).click()
    page.get_by_label("用户名").fill("admin")
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(re.compile(r"/$"))  # back to where the sign-in started
    expect(page.get_by_text("已登录：平台管理员")).to_be_visible()

    # Switch to English: kept on the user, the same page comes back.
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Internet+ Chengdu")

    # Browse: action plan → an area → a task → its lead department.
    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Action plan").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Chengdu Internet+ action plan (2015–2017)")
    page.get_by_role("heading", name=f"6. {area['title']['en']}").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/plan/areas/6$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"6. {area['title']['en']}")
    page.get_by_role("link", name=task["title"]["en"], exact=True).click()
    expect(page).to_have_url(re.compile(rf"/plan/tasks/{task['number']}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(task["title"]["en"])
    expect(page.get_by_role("heading", name="Responsible units")).to_be_visible()
    page.screenshot(path=str(tmp_path / "task-en.png"), full_page=True)
    page.locator("ol.unit-list a").first.click()
    expect(page).to_have_url(re.compile(r"/orgs/[a-z-]+$"))
    expect(page.get_by_role("heading", name=re.compile("Tasks it leads"))).to_be_visible()
    expect(page.locator("#leads-title + .table-wrap")).to_contain_text(task["title"]["en"])

    # And back to Chinese on the department page.
    page.get_by_role("button", name="中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", name=re.compile("牵头的任务"))).to_be_visible()
    expect(page.locator("#leads-title + .table-wrap")).to_contain_text(task["title"]["zh"])
    page.screenshot(path=str(tmp_path / "department-zh.png"), full_page=True)
    assert (tmp_path / "department-zh.png").stat().st_size > 10_000


def test_audit_chain_check_and_phone_layout(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/login?next=/admin/audit")
    page.get_by_label("用户名").fill("admin")
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(re.compile(r"/admin/audit$"))
    # With htmx the result is swapped into the page; without it the link opens the result page.
    page.get_by_role("link", name="立即校验哈希链").click()
    expect(page.locator("#verify-result")).to_contain_text("哈希链完整")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the home page scrolls sideways on a phone"
    page.screenshot(path=str(tmp_path / "home-phone.png"), full_page=True)
