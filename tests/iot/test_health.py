"""Device health: last seen, counts, rate; offline after N missed intervals with an event, online again after."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.iot.conftest import weather_group

SVC = {"fiware-service": "chengdu"}


@pytest.fixture
def settings(settings, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CITYPLUS_IOT_OFFLINE_AFTER", "2")
    monkeypatch.setenv("CITYPLUS_IOT_HEALTH_CHECK_SECONDS", "0.1")
    return settings


async def _events(client, headers, name: str) -> list[dict]:  # type: ignore[no-untyped-def]
    r = await client.get("/api/v1/events", params={"name": name}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["items"] if isinstance(body, dict) else body  # type: ignore[no-any-return]


async def test_offline_after_missed_intervals_and_back(client, operator, make_user, token_for
                                                       ) -> None:  # type: ignore[no-untyped-def]
    admin = token_for(make_user("platform_admin"))
    await client.post("/iot/services", json={"services": [weather_group(expected_interval=1)]},
                      headers={**operator, **SVC})
    await client.post("/iot/devices", json={"devices": [{"device_id": "slow", "expected_interval": 5}]},
                      headers={**operator, **SVC})
    for _ in range(3):
        assert (await client.post("/iot/d", params={"k": "wx-key-1", "i": "ws-1"}, content=b"t|20")).status_code == 200
    assert (await client.post("/iot/d", params={"k": "wx-key-1", "i": "slow"}, content=b"t|20")).status_code == 200
    health = (await client.get("/iot/devices/ws-1", headers={**operator, **SVC})).json()["health"]
    assert health["status"] == "online" and health["message_count"] == 3 and health["last_seen"]
    assert health["messages_per_hour"] is not None and health["offline_at"] is not None
    # silent for 2 × 1 s: offline (the slow device, expected every 5 s, is not)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = (await client.get("/iot/devices/ws-1", headers={**operator, **SVC})).json()["health"]
        if health["status"] == "offline":
            break
        await asyncio.sleep(0.1)
    assert health["status"] == "offline" and health["offline_at"] is None
    assert (await client.get("/iot/devices/slow", headers={**operator, **SVC})).json()["health"]["status"] == "online"
    listed = (await client.get("/iot/devices", params={"status": "offline"}, headers={**operator, **SVC})).json()
    assert [d["device_id"] for d in listed["devices"]] == ["ws-1"]
    offline = []
    for _ in range(50):
        offline = await _events(client, admin, "iot.device_offline")
        if offline:
            break
        await asyncio.sleep(0.1)
    assert len(offline) == 1
    payload = offline[0]["payload"]
    assert payload["device_id"] == "ws-1" and payload["tenant"] == "chengdu" and payload["silent_seconds"] >= 2
    assert payload["entity_id"] == "urn:ngsi-ld:WeatherObserved:ws-1"
    # heard from again: online, with an event
    assert (await client.post("/iot/d", params={"k": "wx-key-1", "i": "ws-1"}, content=b"t|21")).status_code == 200
    assert (await client.get("/iot/devices/ws-1", headers={**operator, **SVC})).json()["health"]["status"] == "online"
    online = []
    for _ in range(50):
        online = await _events(client, admin, "iot.device_online")
        if online:
            break
        await asyncio.sleep(0.1)
    assert online and online[0]["payload"]["device_id"] == "ws-1"
