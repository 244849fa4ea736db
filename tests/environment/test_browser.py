"""End to end in a real browser: the AQI calculator form and the air-quality page of the demo city.

Skips locally without Chromium; in CI (CI=true) that is a failure (see tests/web/test_browser.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.test_browser import chromium, live_server, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def test_calculator_form_and_air_quality_page(page: Any) -> None:  # noqa: F811 - the fixture
    from playwright.sync_api import expect

    page.goto("/environment/aqi")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", level=1)).to_have_text("空气质量指数（AQI）计算器")
    page.get_by_label("HJ 633 版本").select_option("2026")
    page.get_by_label("报告类型").select_option("daily")
    page.get_by_label("细颗粒物 PM₂.₅（µg/m³）").fill("75")
    page.get_by_label("颗粒物 PM₁₀（µg/m³）").fill("150")
    page.get_by_role("button", name="计算").click()
    expect(page).to_have_url(re.compile(r"/environment/aqi\?.*pm25=75"))
    result = page.locator(".aqi-result")
    expect(result).to_contain_text("AQI 114")
    expect(result).to_contain_text("三级 · 轻度污染")
    # a bad value is named next to its field, and the form keeps what was typed
    page.get_by_label("二氧化氮 NO₂（µg/m³）").fill("-5")
    page.get_by_role("button", name="计算").click()
    expect(page.get_by_role("alert")).to_contain_text("请填写大于或等于零的浓度，或留空。")
    expect(page.get_by_label("细颗粒物 PM₂.₅（µg/m³）")).to_have_value("75")

    page.goto("/environment/air")
    expect(page.get_by_role("heading", level=1)).to_have_text("成都实时空气质量")
    expect(page.get_by_role("region", name="监测站点")).to_contain_text("金泉两河")


def test_station_page_draws_its_charts(page: Any) -> None:  # noqa: F811 - the fixture
    from playwright.sync_api import expect

    from cityplus.web import find_chart

    page.goto("/environment/air")
    page.get_by_role("region", name="监测站点").get_by_role("link", name="金泉两河").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("金泉两河")
    expect(page.get_by_role("region", name="最近24小时")).to_be_visible()
    if find_chart() is not None:  # Chart.js installed (npm ci): both charts drawn from the JSON endpoint
        expect(page.locator("[data-charts-drawn=true]")).to_have_count(1)
        expect(page.locator("#chart-hourly")).to_be_visible()
        expect(page.locator("#chart-daily")).to_be_visible()
