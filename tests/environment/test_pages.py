"""Portal pages: the AQI calculator form (no JavaScript needed) and the network's current AQI, zh-CN and English."""

from __future__ import annotations

from datetime import UTC, datetime

from cityplus.core.audit import Actor
from cityplus.modules.context import service as context
from cityplus.modules.environment import demo, service
from tests.web.test_accessibility import problems_of


async def test_calculator_page_in_chinese_then_english(browser) -> None:  # type: ignore[no-untyped-def]
    r = await browser.get("/environment/aqi")
    assert r.status_code == 200 and '<html lang="zh-CN">' in r.text
    assert "空气质量指数（AQI）计算器" in r.text and 'name="pm25"' in r.text
    assert problems_of(r.text) == []
    r = await browser.get("/environment/aqi", params={"edition": "2026", "period": "daily", "pm25": "75",
                                                       "pm10": "150", "so2": ""})
    assert r.status_code == 200, r.text
    assert "AQI 114" in r.text and "三级 · 轻度污染" in r.text and "aqi-level-3" in r.text
    assert problems_of(r.text) == []
    browser.cookies.set("cityplus_locale", "en")
    r = await browser.get("/environment/aqi", params={"edition": "2012", "period": "daily", "pm25": "75"})
    assert '<html lang="en">' in r.text and "AQI 100" in r.text and "Level 2 · good" in r.text
    assert "Pollutants above the standard" in r.text  # a 2012 concept


async def test_calculator_page_names_bad_fields(browser) -> None:  # type: ignore[no-untyped-def]
    r = await browser.get("/environment/aqi", params={"period": "hourly", "pm25": "-3", "no2": "abc"})
    assert r.status_code == 422
    assert "请填写大于或等于零的浓度，或留空。" in r.text
    assert 'href="#pm25"' in r.text and 'href="#no2"' in r.text and 'aria-invalid="true"' in r.text
    r = await browser.get("/environment/aqi", params={"period": "hourly"})
    assert r.status_code == 422 and "请至少填写一项污染物浓度。" in r.text
    r = await browser.get("/environment/aqi", params={"edition": "2026", "period": "daily", "o3": "100"})
    assert r.status_code == 422 and "8小时" in r.text
    assert problems_of(r.text) == []


async def test_air_quality_page_lists_city_districts_and_stations(browser, ctx) -> None:  # type: ignore[no-untyped-def]
    r = await browser.get("/environment/air")
    assert r.status_code == 200 and "暂无监测站点。" in r.text
    with ctx.db.session() as session:
        service.upsert_stations(session, context.core_context(ctx), Actor.system("test"),
                                demo.entities(datetime.now(UTC)))
    r = await browser.get("/environment/air")
    assert "金泉两河" in r.text and "灵岩寺" in r.text and "对照点" in r.text and "武侯区" in r.text
    n = len(demo.STATIONS) - 1  # the city counts its urban stations, not the control point
    assert f"{n} 个站点中 {n} 个有当前数据" in r.text
    assert problems_of(r.text) == []


async def test_station_page_tables_without_javascript_and_chart_script(browser, ctx) -> None:  # type: ignore[no-untyped-def]
    from cityplus.web import CHART_URL, find_chart

    now = datetime.now(UTC)
    with ctx.db.session() as session:
        service.upsert_stations(session, context.core_context(ctx), Actor.system("test"), demo.entities(now))
    r = await browser.get("/environment/air")
    assert 'href="/environment/air/stations/urn%3Angsi-ld%3AAirQualityObserved%3Achengdu-shilidian"' in r.text
    r = await browser.get("/environment/air/stations/urn:ngsi-ld:AirQualityObserved:chengdu-shilidian")
    assert r.status_code == 200, r.text
    assert "<h1>十里店</h1>" in r.text and "最近24小时" in r.text and "最近30天" in r.text
    assert r.text.count("<tr>") >= 24 + 30 + 2  # the figures are in the tables, no script needed
    assert 'data-station-history="/api/v1/environment/air/stations/urn%3Angsi-ld%3AAirQualityObserved%3A' \
           'chengdu-shilidian/history"' in r.text
    assert problems_of(r.text) == []
    if find_chart() is not None:  # after `npm ci`: the pinned Chart.js is served and loaded before our script
        assert f'<script src="{CHART_URL}?v=' in r.text and "environment-charts.js" in r.text
        js = await browser.get(CHART_URL)
        assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "Chart" in js.text
    browser.cookies.set("cityplus_locale", "en")
    r = await browser.get("/environment/air/stations/urn:ngsi-ld:AirQualityObserved:chengdu-shilidian")
    assert "<h1>Shilidian</h1>" in r.text and "Last 30 days" in r.text
    r = await browser.get("/environment/air/stations/urn:ngsi-ld:AirQualityObserved:nope")
    assert r.status_code == 404
