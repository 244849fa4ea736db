"""Device gateway pages: who may see them, the provisioning forms (CSRF, validation), the device list with its
map data, and a device's latest measurements and dead letters — in Chinese and English."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.web.helpers import csrf_of, sign_in

PAGES = ("/gateway", "/gateway/provision/group", "/gateway/provision/device")


@pytest.mark.parametrize("role, allowed", [
    ("citizen", False), ("developer", False), ("enterprise", False),
    ("department_staff", True), ("department_admin", True), ("platform_admin", True),
])
async def test_gateway_pages_by_role(browser: httpx.AsyncClient, make_user, role: str, allowed: bool) -> None:  # type: ignore[no-untyped-def]
    user = make_user(role)
    await sign_in(browser, user.username, user.password)
    for path in PAGES:
        r = await browser.get(path)
        assert r.status_code == (200 if allowed else 403), (role, path)


async def test_anonymous_visitors_are_sent_to_sign_in(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/gateway")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/gateway")


async def _operator(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("department_staff")
    await sign_in(browser, user.username, user.password)


async def test_provision_group_and_device_through_the_forms(browser: httpx.AsyncClient, make_user, client,
                                                            operator) -> None:  # type: ignore[no-untyped-def]
    await _operator(browser, make_user)
    form = await browser.get("/gateway/provision/group")
    token = csrf_of(form.text)
    group = {"service_name": "chengdu", "apikey": "aq-key", "resource": "/iot/d", "entity_type": "AirQualityObserved",
             "attributes": "pm25 pm25 Number GQ\nno2 no2 Number GQ", "expected_interval": "300",
             "autoprovision": "on"}
    # without the CSRF token: refused, nothing created
    assert (await browser.post("/gateway/provision/group", data=group)).status_code == 403
    # invalid fields: 422, the form again with each problem named, nothing created
    bad = await browser.post("/gateway/provision/group", data={**group, "csrf_token": token, "apikey": "a/b",
                                                                 "attributes": "pm25 only", "expected_interval": "x"})
    assert bad.status_code == 422
    assert "每行一个属性" in bad.text and "请输入 1 到 604800 之间的整数秒" in bad.text
    ok = await browser.post("/gateway/provision/group", data={**group, "csrf_token": token})
    assert ok.status_code == 303 and ok.headers["location"].startswith("/gateway?")
    dup = await browser.post("/gateway/provision/group", data={**group, "csrf_token": token})
    assert dup.status_code == 422 and "无法登记设备组" in dup.text
    groups = (await client.get("/iot/services", headers={**operator, "fiware-service": "chengdu"}))
    assert [g["apikey"] for g in groups.json()["services"]] == ["aq-key"]
    assert groups.json()["services"][0]["attributes"][0] == {"object_id": "pm25", "name": "pm25", "type": "Number",
                                                             "unitCode": "GQ"}

    device = {"csrf_token": token, "service_name": "chengdu", "device_id": "aq-007", "apikey": "aq-key",
              "entity_type": "AirQualityObserved", "protocol": "PDI-IoTA-UltraLight", "transport": "HTTP",
              "lat": "30.6595", "lon": "104.0657", "expected_interval": ""}
    out = await browser.post("/gateway/provision/device", data={**device, "lat": "95"})
    assert out.status_code == 422 and "纬度" in out.text
    made = await browser.post("/gateway/provision/device", data=device)
    assert made.status_code == 303
    assert made.headers["location"] == "/gateway/devices/aq-007?notice=device_created&service_name=chengdu"

    # the device reports (HTTP southbound), once well and once malformed
    assert (await client.post("/iot/d", params={"k": "aq-key", "i": "aq-007"},
                              content=b"2026-11-24T08:00:00Z|pm25|38|no2|41")).status_code == 200
    assert (await client.post("/iot/d", params={"k": "aq-key", "i": "aq-007"}, content=b"pm25|heavy")
            ).status_code == 400

    page = await browser.get(made.headers["location"])
    assert page.status_code == 200
    assert "最新测量值" in page.text and ">38.0<" in page.text and "2026-11-24T08:00:00.000Z" in page.text
    assert "死信" in page.text and "报文格式错误" in page.text and "pm25|heavy" in page.text
    listing = await browser.get("/gateway?service_name=chengdu")
    assert "aq-007" in listing.text and "在线" in listing.text
    marks = json.loads(re.search(r'id="device-map-points">(.*?)</script>', listing.text, re.S)[1])
    assert marks == [{"id": "aq-007", "lat": 30.6595, "lon": 104.0657, "status": "online", "name": "aq-007",
                      "href": "/gateway/devices/aq-007?service_name=chengdu"}]
    offline = await browser.get("/gateway?service_name=chengdu&status=offline")
    assert "aq-007" not in offline.text

    browser.cookies.set("cityplus_locale", "en")
    english = await browser.get(made.headers["location"])
    assert "Latest measurements" in english.text and "Malformed payload" in english.text


async def test_unknown_device_page_is_404(browser: httpx.AsyncClient, make_user) -> None:  # type: ignore[no-untyped-def]
    await _operator(browser, make_user)
    assert (await browser.get("/gateway/devices/nope")).status_code == 404
    assert (await browser.get("/gateway?service_name=bad%20name")).status_code == 422
