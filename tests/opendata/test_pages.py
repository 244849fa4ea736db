"""Portal pages: search with facets, dataset page (preview, quality), downloads, publisher forms with CSRF."""

from __future__ import annotations

import csv
import io
import json

from openpyxl import load_workbook

from tests.opendata.factories import CKAN, ok, package
from tests.web.helpers import csrf_of, sign_in

CSV_TEXT = "站点,经度,纬度,AQI,备注\n金牛区,104.05,30.69,85,=HYPERLINK(\"http://x\")\n锦江区,104.08,30.65,120,@SUM(1)\n"


async def _published(client, hbj) -> str:  # type: ignore[no-untyped-def]
    await ok(client, "package_create", hbj, **package())
    r = await client.post(CKAN + "resource_create", data={"package_id": "air-quality", "name": "站点日报"},
                          files={"upload": ("aqi.csv", CSV_TEXT.encode("gbk"))}, headers=hbj)
    return str(r.json()["result"]["id"])


async def test_catalogue_page_searches_with_facets_in_both_languages(client, browser, hbj) -> None:  # type: ignore[no-untyped-def]
    await _published(client, hbj)
    r = await browser.get("/opendata")
    assert r.status_code == 200
    assert "成都市空气质量实时监测数据" in r.text and "开放数据" in r.text and "绿色生态" in r.text
    r = await browser.get("/opendata", params={"q": "空气质量", "theme": "area-11"})
    assert "成都市空气质量实时监测数据" in r.text and "市环保局" in r.text
    r = await browser.get("/opendata", params={"q": "公交"})
    assert "成都市空气质量实时监测数据" not in r.text
    browser.cookies.set("cityplus_locale", "en")
    r = await browser.get("/opendata", params={"q": "air"})
    assert "Open data" in r.text and "Chengdu real-time air quality" in r.text and "Refine" in r.text


async def test_dataset_page_preview_quality_and_api_examples(client, browser, hbj) -> None:  # type: ignore[no-untyped-def]
    rid = await _published(client, hbj)
    r = await browser.get("/opendata/dataset/air-quality")
    assert r.status_code == 200
    assert "数据质量" in r.text or "质量评分" in r.text
    assert "金牛区" in r.text and "104.05" in r.text  # preview rows
    assert f"resource_id={rid}" in r.text and "ckanapi" in r.text
    assert r.text.count("<circle") == 2 and r.text.count("<rect") == 3  # map of 2 points, 2 bars (+ map frame)
    assert "图表与地图" in r.text
    await ok(client, "package_create", hbj, **package("hidden", private=True))
    assert (await browser.get("/opendata/dataset/hidden")).status_code == 404


async def test_downloads_stream_every_format_and_neutralise_formulas(client, browser, hbj) -> None:  # type: ignore[no-untyped-def]
    rid = await _published(client, hbj)
    base = f"/opendata/dataset/air-quality/resource/{rid}/download"
    original = await browser.get(base)
    assert original.status_code == 200 and original.content == CSV_TEXT.encode("gbk")
    r = await browser.get(base, params={"format": "csv"})
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["站点", "经度", "纬度", "AQI", "备注"] and rows[1][0] == "金牛区" and rows[1][3] == "85"
    r = await browser.get(base, params={"format": "json"})
    assert json.loads(r.content)[1]["AQI"] == 120
    r = await browser.get(base, params={"format": "xlsx"})
    ws = load_workbook(io.BytesIO(r.content), read_only=True).worksheets[0]
    cells = [list(row) for row in ws.iter_rows(values_only=True)]
    assert cells[1][4] == "'=HYPERLINK(\"http://x\")" and cells[2][4] == "'@SUM(1)" and cells[1][3] == 85
    r = await browser.get(base, params={"format": "geojson"})
    fc = json.loads(r.content)
    assert fc["features"][0]["geometry"] == {"type": "Point", "coordinates": [104.05, 30.69]}
    assert fc["features"][0]["properties"]["站点"] == "金牛区"
    r = await browser.get(base, params={"format": "exe"})
    assert r.status_code == 422
    assert (await ok(client, "package_show", id="air-quality"))["downloads"] == 5


async def test_publisher_creates_uploads_and_publishes_in_the_browser(client, browser, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("department_staff", org="hbj")
    assert (await browser.get("/opendata/publish")).status_code in (303, 307)
    r = await sign_in(browser, user.username, user.password, "/opendata/publish")
    assert r.status_code == 303
    page = await browser.get("/opendata/publish")
    token = csrf_of(page.text)
    form = {"name": "noise", "title_zh": "功能区噪声监测", "opening": "open", "sharing": "share", "grade": "1",
            "themes": ["area-11", "ENVI"], "keywords": "噪声，声环境", "licence": "CC-BY-4.0"}
    r = await browser.post("/opendata/publish", data=form)
    assert r.status_code == 403  # no CSRF token
    r = await browser.post("/opendata/publish", data={**form, "csrf_token": token, "name": "Bad Name"})
    assert r.status_code == 422 and "name" in r.text
    r = await browser.post("/opendata/publish", data={**form, "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/opendata/dataset/noise")
    assert (await client.get(CKAN + "package_show", params={"id": "noise"})).status_code == 404  # a draft
    r = await browser.post("/opendata/dataset/noise/resources", data={"csrf_token": token, "title": "监测点"},
                           files={"upload": ("noise.csv", "点位,等效声级\n天府广场,\"1,055\"\n".encode())})
    assert r.status_code == 303, r.text
    bad = await browser.post("/opendata/dataset/noise/resources", data={"csrf_token": token},
                             files={"upload": ("bad.csv", b"a,b\n1\n")})
    assert bad.status_code == 422
    r = await browser.post("/opendata/dataset/noise/edit", data={**form, "csrf_token": token,
                                                                  "title_zh": "功能区声环境质量监测"})
    assert r.status_code == 303
    r = await browser.post("/opendata/dataset/noise/publish", data={"csrf_token": token, "action": "publish"})
    assert r.status_code == 303
    shown = await ok(client, "package_show", id="noise")
    assert shown["title"] == "功能区声环境质量监测" and shown["tags"][0]["name"] == "噪声"
    assert len(shown["resources"]) == 1 and shown["version"] == "1"
    other = make_user("department_staff", org="jiaow")
    await browser.post("/logout", data={"csrf_token": token})
    browser.cookies.clear()
    await sign_in(browser, other.username, other.password)
    page = await browser.get("/opendata/dataset/noise")
    assert "/opendata/dataset/noise/edit" not in page.text
    r = await browser.post("/opendata/dataset/noise/edit", data={**form, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 403
