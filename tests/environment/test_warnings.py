"""Weather warning signals: issued by 市气象局 staff, validated, audited, published as WeatherAlert entities."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

URL = "/api/v1/environment/warnings"
# Roughly the central city (lon, lat), a closed ring.
CITY = {"type": "Polygon", "coordinates": [[[103.9, 30.5], [104.2, 30.5], [104.2, 30.8], [103.9, 30.8],
                                            [103.9, 30.5]]]}


def body(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    b: dict[str, Any] = {"signal": "rainstorm", "level": "red", "area_name": "中心城区", "area": CITY,
                         "valid_from": now.isoformat(), "valid_to": (now + timedelta(hours=6)).isoformat(),
                         "guidance_zh": "停止集会、停课、停业（除特殊行业外）；做好山洪、滑坡、泥石流等灾害的防御。",
                         "guidance_en": "Stop gatherings, classes and business; prepare for floods and landslides."}
    b.update(changes)
    return b


@pytest.fixture
def forecaster(make_user, token_for) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return token_for(make_user("department_staff", org="qxj"))


async def _alerts(client, headers) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = await client.get("/ngsi-ld/v1/entities", params={"type": "WeatherAlert"}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_issue_list_and_lift_a_rainstorm_red_warning(client, forecaster, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(URL, json=body(), headers=forecaster)
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["name"] == {"zh": "暴雨红色预警信号", "en": "rainstorm warning, red"} and w["severity"] == "critical"
    assert "100毫米" in w["criterion"]["zh"] and w["in_force"] and w["status"] == "issued"
    assert w["issued_by"] == "qxj" and w["area"] == CITY
    # published as a WeatherAlert entity in the context broker
    [entity] = await _alerts(client, forecaster)
    assert entity["id"] == w["id"] and entity["subCategory"]["value"] == "rainfall"
    assert entity["location"]["value"]["type"] == "Polygon" and entity["category"]["value"] == "weather"
    # public list and detail
    listed = (await client.get(URL)).json()
    assert [x["id"] for x in listed] == [w["id"]]
    assert (await client.get(f"{URL}/{w['id']}")).json()["guidance"]["en"].startswith("Stop gatherings")
    # lift it
    r = await client.post(f"{URL}/{w['id']}/lift", headers=forecaster)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "lifted" and not r.json()["in_force"]
    assert (await client.get(URL)).json() == []
    assert [x["status"] for x in (await client.get(URL, params={"all": "true"})).json()] == ["lifted"]
    assert (await client.post(f"{URL}/{w['id']}/lift", headers=forecaster)).status_code == 409
    admin = token_for(make_user("platform_admin"))
    audit = (await client.get("/api/v1/audit", headers=admin)).text
    assert "environment.warning_issued" in audit and "environment.warning_lifted" in audit
    # both events reach the journal (through the outbox relay)
    names: set[str] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(names) < 2:
        page = (await client.get("/api/v1/events", headers=admin)).json()
        items = page["items"] if isinstance(page, dict) else page
        names = {e["name"] for e in items if e["name"].startswith("environment.")
                 and w["id"] in str(e)}
        await asyncio.sleep(0.1)
    assert names == {"environment.weather_warning_issued", "environment.weather_warning_lifted"}


async def test_only_the_meteorological_bureau_issues(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    assert (await client.post(URL, json=body())).status_code == 401
    assert (await client.post(URL, json=body(), headers=token_for(make_user("citizen")))).status_code == 403
    r = await client.post(URL, json=body(), headers=token_for(make_user("department_staff", org="hbj")))
    assert r.status_code == 403 and "市气象局" in r.json()["detail"]
    assert (await client.post(URL, json=body(), headers=token_for(make_user("platform_admin")))).status_code == 201


@pytest.mark.parametrize(("changes", "field"), [
    ({"signal": "high_temperature", "level": "blue"}, "level"),  # 高温 has no blue signal
    ({"signal": "typhoon"}, "body.signal"),
    ({"area": {"type": "Point", "coordinates": [104.06, 30.66]}}, "area.type"),
    ({"area": {"type": "Polygon", "coordinates": [[[103.9, 30.5], [104.2, 30.5], [104.2, 30.8], [103.9, 30.8]]]}},
     "area.coordinates"),  # not closed
    ({"area": {"type": "Polygon", "coordinates": [[[103.9, 30.5], [104.2, 30.8], [104.2, 30.5], [103.9, 30.8],
                                                   [103.9, 30.5]]]}}, "area"),  # a bow tie: self-intersecting
    ({"area": {"type": "Polygon", "coordinates": [[[30.5, 103.9], [30.5, 104.2], [30.8, 104.2], [30.8, 103.9],
                                                   [30.5, 103.9]]]}}, "area"),  # lat, lon swapped
    ({"area": {"type": "Polygon", "coordinates": [[[103.9, "x"], [104.2, 30.5], [104.2, 30.8], [103.9, 30.5]]]}},
     "area.coordinates"),
    ({"valid_to": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}, "valid_to"),
    ({"valid_to": (datetime.now(UTC) + timedelta(hours=80)).isoformat()}, "valid_to"),
    ({"valid_from": (datetime.now(UTC) - timedelta(hours=3)).isoformat()}, "valid_from"),
    ({"valid_from": "2026-11-25T08:00:00"}, "valid_from"),  # no time zone
    ({"guidance_zh": "   "}, "body.guidance_zh"),
    ({"colour": "red"}, "body.colour"),
])
async def test_bad_warnings_are_422_and_write_nothing(client, forecaster, changes, field) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(URL, json=body(**changes), headers=forecaster)
    assert r.status_code == 422, r.text
    assert any(e["field"] == field for e in r.json()["errors"]), r.json()
    assert await _alerts(client, forecaster) == []


async def test_high_temperature_levels(client, forecaster) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(URL, json=body(signal="high_temperature", level="orange", area_name="全市"),
                          headers=forecaster)
    assert r.status_code == 201, r.text
    assert r.json()["name"]["zh"] == "高温橙色预警信号" and "37℃" in r.json()["criterion"]["zh"]
    assert (await client.get(f"{URL}/urn:ngsi-ld:WeatherAlert:nope")).status_code == 404


async def test_warnings_in_force_show_on_the_air_quality_page(client, browser, forecaster) -> None:  # type: ignore[no-untyped-def]
    from tests.web.test_accessibility import problems_of

    assert "暴雨" not in (await browser.get("/environment/air")).text
    assert (await client.post(URL, json=body(level="orange"), headers=forecaster)).status_code == 201
    r = await browser.get("/environment/air")
    assert "生效中的气象灾害预警" in r.text and "暴雨橙色预警信号" in r.text and "warning-orange" in r.text
    assert "停止集会" in r.text and problems_of(r.text) == []
    browser.cookies.set("cityplus_locale", "en")
    r = await browser.get("/environment/air")
    assert "Weather warnings in force" in r.text and "rainstorm warning, orange" in r.text
    assert "Stop gatherings" in r.text


async def test_issue_and_lift_through_the_portal_form(browser, make_user) -> None:  # type: ignore[no-untyped-def]
    from tests.web.helpers import csrf_of, sign_in
    from tests.web.test_accessibility import problems_of

    r = await browser.get("/environment/warnings/new")
    assert r.status_code == 303 and "/login" in r.headers["location"]
    staff = make_user("department_staff", org="qxj")
    await sign_in(browser, staff.username, staff.password)
    r = await browser.get("/environment/warnings/new")
    assert r.status_code == 200 and "发布气象灾害预警信号" in r.text and problems_of(r.text) == []
    form = {"csrf_token": csrf_of(r.text), "signal": "high_temperature", "level": "blue", "area_name": "全市",
            "area": '{"type": "Polygon", "coordinates": [[[103.9, 30.5], [104.2, 30.5], [104.2, 30.8], [103.9, 30.8],'
                    ' [103.9, 30.5]]]}',
            "valid_from": datetime.now(UTC).astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%dT%H:%M"),
            "valid_to": (datetime.now(UTC) + timedelta(hours=30)).astimezone(timezone(timedelta(hours=8)))
            .strftime("%Y-%m-%dT%H:%M"), "guidance_zh": "注意防暑降温。", "guidance_en": ""}
    r = await browser.post("/environment/warnings", data=form)  # 高温 has no blue level
    assert r.status_code == 422 and "高温没有蓝色预警" in r.text and problems_of(r.text) == []
    r = await browser.post("/environment/warnings", data=form | {"area": "{not json"})
    assert r.status_code == 422 and 'href="#area"' in r.text
    r = await browser.post("/environment/warnings", data=form | {"level": "yellow"})
    assert r.status_code == 303 and r.headers["location"] == "/environment/air?notice=warning_issued"
    page = await browser.get(r.headers["location"])
    assert "预警信号已发布。" in page.text and "高温黄色预警信号" in page.text and "注意防暑降温。" in page.text
    warning_id = (await browser.get(URL)).json()[0]["id"]
    r = await browser.post("/environment/warnings/lift", data={"csrf_token": csrf_of(page.text),
                                                               "warning_id": warning_id})
    assert r.status_code == 303
    assert "高温黄色预警信号" not in (await browser.get("/environment/air")).text


async def test_the_form_is_for_the_meteorological_bureau_only(browser, make_user) -> None:  # type: ignore[no-untyped-def]
    from tests.web.helpers import sign_in

    other = make_user("department_staff", org="hbj")
    await sign_in(browser, other.username, other.password)
    r = await browser.get("/environment/warnings/new")
    assert r.status_code == 403
    assert "/environment/warnings/new" not in (await browser.get("/environment/air")).text
