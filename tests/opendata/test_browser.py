"""End to end in a real browser: find open data, then publish a dataset with a file as department staff.

Same set-up as tests/web/test_browser.py (Debian's Chromium through Playwright, a live server with the demo city);
skips locally without Chromium, fails in CI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cityplus.core.demo import DEMO_PASSWORD
from tests.web.test_browser import chromium, live_server, page  # noqa: F401 - the shared browser fixtures

pytestmark = pytest.mark.browser


def test_find_data_then_publish_a_dataset_with_a_file(page: Any, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    # A visitor searches the demo catalogue and opens a dataset: preview, chart, map and quality score.
    page.goto("/opendata")
    expect(page.get_by_role("heading", level=1)).to_have_text("开放数据")
    page.get_by_label("搜索数据集").fill("空气质量")
    page.get_by_role("button", name="搜索", exact=True).click()
    page.get_by_role("link", name="成都市空气质量实时监测数据").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("成都市空气质量实时监测数据")
    expect(page.get_by_text("演示数据：为演示城市生成，并非真实数据。")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("数据质量评分"))).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("预览"))).to_be_visible()
    expect(page.locator("svg.od-map circle").first).to_be_attached()

    # 市环保局 staff sign in and create a draft.
    page.goto("/login?next=/opendata/publish")
    page.get_by_label("用户名").fill("hbj.staff")
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(re.compile(r"/opendata/publish$"))
    page.get_by_label("网址名称").fill("noise-zones")
    page.get_by_label("标题（中文）").fill("功能区噪声监测点位")
    page.get_by_label("关键词").fill("噪声，声环境")
    page.get_by_label("绿色生态").check()
    page.get_by_role("button", name="创建草稿").click()
    expect(page).to_have_url(re.compile(r"/opendata/dataset/noise-zones"))
    expect(page.get_by_text("草稿：仅本部门可见。")).to_be_visible()

    # Upload a GBK-encoded CSV; it is loaded and previewed; then publish.
    data = tmp_path / "noise.csv"
    data.write_bytes("点位,经度,纬度,等效声级\n天府广场,104.066,30.657,55.2\n春熙路,104.08,30.655,58.9\n"
                     .encode("gbk"))
    page.get_by_label("资源名称").fill("监测点位")
    page.get_by_label(re.compile("文件（CSV")).set_input_files(str(data))
    page.get_by_role("button", name="上传", exact=True).click()
    expect(page.get_by_role("cell", name="春熙路")).to_be_visible()
    page.get_by_role("button", name="发布", exact=True).click()
    expect(page.get_by_text("已保存。")).to_be_visible()
    expect(page.get_by_text("草稿：仅本部门可见。")).to_have_count(0)

    # Everyone finds it now.
    page.goto("/opendata?q=噪声")
    expect(page.get_by_role("link", name="功能区噪声监测点位")).to_be_visible()
    page.screenshot(path=str(tmp_path / "opendata-search.png"), full_page=True)
