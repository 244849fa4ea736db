"""Per-device rate limits: a runaway device is refused (429) without swamping the database."""

from __future__ import annotations

import pytest

from tests.iot.conftest import weather_group

SVC = {"fiware-service": "chengdu"}


@pytest.fixture
def settings(settings, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CITYPLUS_IOT_DEVICE_RATE", "0.5")
    monkeypatch.setenv("CITYPLUS_IOT_DEVICE_BURST", "3")
    return settings


async def test_runaway_device_is_refused(client, operator) -> None:  # type: ignore[no-untyped-def]
    await client.post("/iot/services", json={"services": [weather_group()]}, headers={**operator, **SVC})
    answers = [await client.post("/iot/d", params={"k": "wx-key-1", "i": "runaway"}, content=f"t|{n}".encode())
               for n in range(6)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429, 429]
    refused = answers[3]
    assert refused.headers["retry-after"] == "1" and refused.json()["name"] == "TOO_MANY_REQUESTS"
    # another device is not affected
    assert (await client.post("/iot/d", params={"k": "wx-key-1", "i": "calm"}, content=b"t|1")).status_code == 200
    letters = (await client.get("/iot/deadletters", headers={**operator, **SVC})).json()
    assert [x["reason"] for x in letters["deadletters"]] == ["rate_limited"]  # one a minute, not one per message
    assert (await client.get("/iot/devices/runaway", headers={**operator, **SVC})).json()["health"][
        "message_count"] == 3
    assert 'cityplus_iot_rate_limited_total{transport="http"} 3.0' in (await client.get("/metrics")).text
