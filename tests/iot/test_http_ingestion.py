"""HTTP southbound (/iot/d Ultralight 2.0, /iot/json): mapping to NGSI-LD, idempotency, dead letters."""

from __future__ import annotations

from typing import Any

from tests.iot.conftest import weather_group

SVC = {"fiware-service": "chengdu"}
LD = {"NGSILD-Tenant": "chengdu"}


async def _entity(client, headers, entity_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.get(f"/ngsi-ld/v1/entities/{entity_id}", headers={**headers, **LD})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_ultralight_measures_become_entity_attributes(client, operator) -> None:  # type: ignore[no-untyped-def]
    assert (await client.post("/iot/services", json={"services": [weather_group()]},
                              headers={**operator, **SVC})).status_code == 201
    r = await client.post("/iot/d", params={"k": "wx-key-1", "i": "ws-wuhou-01"}, content=b"t|23.5|h|61",
                          headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json() == {"applied": 1, "duplicates": 0, "stale": 0}
    e = await _entity(client, operator, "urn:ngsi-ld:WeatherObserved:ws-wuhou-01")
    assert e["type"] == "WeatherObserved"
    assert e["temperature"]["value"] == 23.5 and e["temperature"]["unitCode"] == "CEL"
    assert e["relativeHumidity"]["value"] == 61 and e["relativeHumidity"]["unitCode"] == "P1"
    assert e["temperature"]["observedAt"].endswith("Z")
    assert e["source"] == {"type": "Property", "value": "simulated"}
    # the unknown device was auto-provisioned and is healthy
    d = (await client.get("/iot/devices/ws-wuhou-01", headers={**operator, **SVC})).json()
    assert d["health"]["status"] == "online" and d["health"]["message_count"] == 1
    assert d["health"]["autoprovisioned"] is True and d["apikey"] == "wx-key-1"
    # GET with d= works for the simplest devices
    r = await client.get("/iot/d", params={"k": "wx-key-1", "i": "ws-wuhou-01", "d": "t|24"})
    assert r.status_code == 200, r.text
    assert (await _entity(client, operator, "urn:ngsi-ld:WeatherObserved:ws-wuhou-01"))["temperature"]["value"] == 24


async def test_timestamps_groups_duplicates_and_order(client, operator) -> None:  # type: ignore[no-untyped-def]
    await client.post("/iot/services", json={"services": [weather_group()]}, headers={**operator, **SVC})
    params = {"k": "wx-key-1", "i": "ws1"}
    body = b"2026-11-24T08:00:00Z|t|20#2026-11-24T09:00:00+08:00|t|21|h|50"
    r = await client.post("/iot/d", params=params, content=body)
    assert r.json() == {"applied": 2, "duplicates": 0, "stale": 1}  # 09:00+08:00 is before 08:00Z: t=21 is stale
    e = await _entity(client, operator, "urn:ngsi-ld:WeatherObserved:ws1")
    assert e["temperature"]["value"] == 20 and e["temperature"]["observedAt"] == "2026-11-24T08:00:00.000Z"
    assert e["relativeHumidity"]["observedAt"] == "2026-11-24T01:00:00.000Z"
    # the same measurements again (a retry): not applied twice
    r = await client.post("/iot/d", params=params, content=body)
    assert r.json() == {"applied": 0, "duplicates": 2, "stale": 0}
    # an older observation arriving late never overwrites the newer current value
    r = await client.post("/iot/d", params={**params, "t": "2026-11-24T07:00:00Z"}, content=b"t|99")
    assert r.json() == {"applied": 1, "duplicates": 0, "stale": 1}
    assert (await _entity(client, operator, "urn:ngsi-ld:WeatherObserved:ws1"))["temperature"]["value"] == 20
    r = await client.post("/iot/d", params={**params, "t": "2026-11-24T10:00:00Z"}, content=b"t|25")
    e = await _entity(client, operator, "urn:ngsi-ld:WeatherObserved:ws1")
    assert e["temperature"]["value"] == 25 and e["temperature"]["observedAt"] == "2026-11-24T10:00:00.000Z"
    r = await client.post("/iot/d", params={**params, "t": "2026-11-24T10:00:00Z"}, content=b"t|25")
    assert r.json()["duplicates"] == 1
    # timestamps identify measurements at their full precision (observedAt shows milliseconds)
    r = await client.post("/iot/d", params=params, content=b"2026-11-24T10:00:00.000001Z|t|26")
    assert r.json() == {"applied": 1, "duplicates": 0, "stale": 0}


async def test_json_measures_location_and_explicit_attrs(client, operator) -> None:  # type: ignore[no-untyped-def]
    group = {"apikey": "bus-key", "resource": "/iot/json", "entity_type": "Vehicle", "explicitAttrs": True,
             "attributes": [{"object_id": "s", "name": "speed", "type": "Number", "unitCode": "KMH"},
                            {"object_id": "lat", "name": "lat", "type": "Number"},
                            {"object_id": "lon", "name": "lon", "type": "Number"},
                            {"object_id": "door", "name": "doorOpen", "type": "Boolean"}]}
    assert (await client.post("/iot/services", json={"services": [group]},
                              headers={**operator, **SVC})).status_code == 201
    payload = {"s": "31.5", "lat": 30.657, "lon": 104.066, "door": "false", "noise": 3,
               "TimeInstant": "2026-11-24T08:00:00Z"}
    r = await client.post("/iot/json", params={"k": "bus-key", "i": "bus-17-001"}, json=payload)
    assert r.status_code == 200, r.text
    e = await _entity(client, operator, "urn:ngsi-ld:Vehicle:bus-17-001")
    assert e["speed"]["value"] == 31.5 and e["speed"]["unitCode"] == "KMH"
    assert e["doorOpen"]["value"] is False
    assert e["location"]["type"] == "GeoProperty"
    assert e["location"]["value"] == {"type": "Point", "coordinates": [104.066, 30.657]}
    assert e["location"]["observedAt"] == "2026-11-24T08:00:00.000Z"
    assert "noise" not in e and "TimeInstant" not in e  # explicitAttrs: unmapped measures dropped
    # several observations in one message (IoTA-JSON multi-measure)
    r = await client.post("/iot/json", params={"k": "bus-key", "i": "bus-17-001"},
                          json=[{"s": 40, "TimeInstant": "2026-11-24T08:01:00Z"},
                                {"s": 42, "TimeInstant": "2026-11-24T08:02:00Z"}])
    assert r.json()["applied"] == 2
    assert (await _entity(client, operator, "urn:ngsi-ld:Vehicle:bus-17-001"))["speed"]["value"] == 42


async def test_dead_letters(client, operator, reader) -> None:  # type: ignore[no-untyped-def]
    await client.post("/iot/services", json={"services": [weather_group(autoprovision=False)]},
                      headers={**operator, **SVC})
    await client.post("/iot/devices", json={"devices": [{"device_id": "ws9"}]}, headers={**operator, **SVC})
    r = await client.post("/iot/d", params={"k": "nobody", "i": "x1"}, content=b"t|1")
    assert r.status_code == 404 and r.json()["name"] == "DEVICE_GROUP_NOT_FOUND"
    assert r.json()["dead_letter"] == "unknown_apikey"
    r = await client.post("/iot/d", params={"k": "wx-key-1", "i": "stranger"}, content=b"t|1")
    assert r.status_code == 404 and r.json()["name"] == "DEVICE_NOT_FOUND"
    r = await client.post("/iot/d", params={"k": "wx-key-1", "i": "ws9"}, content=b"t|1|h")
    assert r.status_code == 400 and r.json()["name"] == "MALFORMED_PAYLOAD" and "key|value" in r.json()["detail"]
    r = await client.post("/iot/d", params={"k": "wx-key-1", "i": "ws9"}, content=b"t|warm")
    assert r.status_code == 400 and "temperature" in r.json()["detail"] and "number" in r.json()["detail"]
    r = await client.post("/iot/json", params={"k": "wx-key-1", "i": "ws9"}, content=b"{broken",
                          headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["dead_letter"] == "malformed_payload"
    r = await client.post("/iot/d", params={"k": "wx-key-1", "i": "ws9"}, content=b"x" * 70_000)
    assert r.status_code == 413

    letters = (await client.get("/iot/deadletters", headers={**reader, **SVC})).json()
    assert letters["count"] == 5
    newest = letters["deadletters"][0]
    assert newest["reason"] == "too_large" and newest["payload_bytes"] == 70_000
    assert len(newest["payload"]) == 2048 and newest["truncated"] is True
    assert [x["reason"] for x in letters["deadletters"][1:]] == ["malformed_payload"] * 3 + ["unknown_device"]
    assert letters["deadletters"][2]["payload"] == "t|warm" and letters["deadletters"][2]["transport"] == "http"
    unmatched = (await client.get("/iot/deadletters", params={"unmatched": "true"}, headers=reader)).json()
    assert [x["reason"] for x in unmatched["deadletters"]] == ["unknown_apikey"]
    filtered = (await client.get("/iot/deadletters", params={"reason": "unknown_device"},
                                 headers={**reader, **SVC})).json()
    assert filtered["count"] == 1 and filtered["deadletters"][0]["device_id"] == "stranger"
    health = (await client.get("/iot/devices/ws9", headers={**reader, **SVC})).json()["health"]
    assert health["error_count"] == 4 and health["message_count"] == 0
    metrics = (await client.get("/metrics")).text
    assert 'cityplus_iot_dead_letters_total{reason="unknown_apikey"} 1.0' in metrics
    assert 'cityplus_iot_dead_letters_total{reason="malformed_payload"} 3.0' in metrics
    # nothing of the failed messages reached the broker
    r = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:ws9", headers={**operator, **LD})
    assert r.status_code == 404


async def test_southbound_needs_apikey_and_device(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.post("/iot/d", content=b"t|1")
    assert r.status_code == 422 and "k" in r.text
    r = await client.post("/iot/d", params={"k": "a/b", "i": "x"}, content=b"t|1")
    assert r.status_code == 422
    r = await client.post("/iot/json", params={"k": "a", "i": "x"}, content=b"t|1", headers={"content-type":
                                                                                               "text/plain"})
    assert r.status_code == 415


async def test_payloads_no_database_can_store_are_refused(client, operator) -> None:  # type: ignore[no-untyped-def]
    group = {"apikey": "j-key", "resource": "/iot/json", "entity_type": "Thing"}
    await client.post("/iot/services", json={"services": [group]}, headers={**operator, **SVC})
    bad = [b'{"a": "x\\u0000y"}', b'{"a": 1e400}', b'{"a": NaN}', b"[" * 30_000 + b"]" * 30_000,
           b'{"a\\u0000": 1}']
    for body in bad:
        r = await client.post("/iot/json", params={"k": "j-key", "i": "dev"}, content=body,
                              headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["dead_letter"] == "malformed_payload", (body[:30], r.text[:300])
    r = await client.post("/iot/d", params={"k": "j-key", "i": "dev"}, content=b"t|1\x00")
    assert r.status_code == 400
    # a good message still goes through afterwards
    r = await client.post("/iot/json", params={"k": "j-key", "i": "dev"}, json={"a": 1.5, "b": {"c": [1, "x"]}})
    assert r.status_code == 200 and r.json()["applied"] == 1
