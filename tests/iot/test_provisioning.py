"""Provisioning API (/iot/services, /iot/devices) with FIWARE IoT Agent payloads, per tenant, audited."""

from __future__ import annotations

from sqlalchemy import select

from cityplus.core.audit import AuditEntry
from tests.iot.conftest import weather_group

SVC = {"fiware-service": "chengdu", "fiware-servicepath": "/"}


async def test_service_group_crud(client, operator, reader, ctx) -> None:  # type: ignore[no-untyped-def]
    r = await client.post("/iot/services", json={"services": [weather_group()]}, headers={**operator, **SVC})
    assert r.status_code == 201, r.text
    r = await client.get("/iot/services", headers={**reader, **SVC})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 1
    group = body["services"][0]
    assert group["apikey"] == "wx-key-1" and group["resource"] == "/iot/d" and group["entity_type"] == "WeatherObserved"
    assert group["attributes"][0] == {"object_id": "t", "name": "temperature", "type": "Number",
                                      "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}}
    assert group["cbroker"] == "http://orion:1026" and group["autoprovision"] is True

    # another tenant sees nothing; NGSILD-Tenant names the same tenant as fiware-service
    r = await client.get("/iot/services", headers={**reader, "fiware-service": "other"})
    assert r.json()["count"] == 0
    r = await client.get("/iot/services", headers={**reader, "NGSILD-Tenant": "chengdu"})
    assert r.json()["count"] == 1

    r = await client.put("/iot/services", params={"resource": "/iot/d", "apikey": "wx-key-1"},
                         json={"entity_type": "WeatherStation", "autoprovision": False}, headers={**operator, **SVC})
    assert r.status_code == 204, r.text
    group = (await client.get("/iot/services", headers={**reader, **SVC})).json()["services"][0]
    assert group["entity_type"] == "WeatherStation" and group["autoprovision"] is False
    assert len(group["attributes"]) == 2  # untouched

    r = await client.delete("/iot/services", params={"resource": "/iot/d", "apikey": "wx-key-1"},
                            headers={**operator, **SVC})
    assert r.status_code == 204
    assert (await client.get("/iot/services", headers={**reader, **SVC})).json()["count"] == 0

    with ctx.db.session() as s:
        actions = [a for (a,) in s.execute(select(AuditEntry.action).where(AuditEntry.action.like("iot.%"))
                                           .order_by(AuditEntry.seq))]
    assert actions == ["iot.group_create", "iot.group_update", "iot.group_delete"]


async def test_duplicate_group_is_409_across_tenants(client, operator) -> None:  # type: ignore[no-untyped-def]
    assert (await client.post("/iot/services", json={"services": [weather_group()]},
                              headers={**operator, **SVC})).status_code == 201
    r = await client.post("/iot/services", json={"services": [weather_group()]},
                          headers={**operator, "fiware-service": "other"})
    assert r.status_code == 409
    body = r.json()
    assert body["name"] == "DUPLICATE_GROUP" and body["status"] == 409 and "wx-key-1" in body["detail"]


async def test_invalid_payloads_are_400_naming_the_field(client, operator, ctx) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ({"services": [{"apikey": "k", "resource": "/iot/d", "colour": "red"}]}, "colour"),
        ({"services": [{"resource": "/iot/d"}]}, "apikey"),
        ({"services": [{"apikey": "a/b", "resource": "/iot/d"}]}, "apikey"),
        ({"services": [{"apikey": "k", "resource": "/iot/d", "attributes": [{"object_id": "t"}]}]}, "name"),
        ({"services": [{"apikey": "k", "resource": "/iot/d", "attributes": [
            {"object_id": "t", "name": "id", "type": "Number"}]}]}, "reserved"),
        ({"services": []}, "services"),
        ({"devices": []}, "services"),
        ([1, 2], "services"),
    ]
    for body, word in cases:
        r = await client.post("/iot/services", json=body, headers={**operator, **SVC})
        assert r.status_code == 400, (body, r.text)
        problem = r.json()
        assert problem["name"] == "WRONG_SYNTAX" and word in problem["detail"], (body, problem)
    r = await client.post("/iot/services", content=b"{not json", headers={**operator, **SVC,
                                                                            "content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = await client.post("/iot/services", content=b"x", headers={**operator, **SVC, "content-type": "text/plain"})
    assert r.status_code == 415
    r = await client.post("/iot/services", json={"services": [weather_group(attributes=[
        {"object_id": "t", "name": "t2", "type": "Number", "expression": "t*2"}])]}, headers={**operator, **SVC})
    assert r.status_code == 422 and "expression" in r.json()["detail"]
    r = await client.get("/iot/services", headers={**operator, "fiware-service": "bad tenant!"})
    assert r.status_code == 400
    # nothing was written by any of them
    with ctx.db.session() as s:
        assert s.scalar(select(AuditEntry.seq).where(AuditEntry.action.like("iot.%"))) is None


async def test_all_or_nothing(client, operator, reader) -> None:  # type: ignore[no-untyped-def]
    body = {"services": [weather_group("a1"), weather_group("a2", attributes=[{"name": "x"}])]}
    assert (await client.post("/iot/services", json=body, headers={**operator, **SVC})).status_code == 400
    assert (await client.get("/iot/services", headers={**reader, **SVC})).json()["count"] == 0
    body = {"devices": [{"device_id": "d1"}, {"device_id": "d1"}]}
    assert (await client.post("/iot/devices", json=body, headers={**operator, **SVC})).status_code == 409
    assert (await client.get("/iot/devices", headers={**reader, **SVC})).json()["count"] == 0


async def test_device_crud_with_fiware_payload(client, operator, reader) -> None:  # type: ignore[no-untyped-def]
    await client.post("/iot/services", json={"services": [weather_group()]}, headers={**operator, **SVC})
    device = {"device_id": "ws001", "entity_name": "urn:ngsi-ld:WeatherObserved:ws001",
              "entity_type": "WeatherObserved", "protocol": "PDI-IoTA-UltraLight", "transport": "MQTT",
              "timezone": "Asia/Shanghai",
              "attributes": [{"object_id": "p", "name": "atmosphericPressure", "type": "Number"}],
              "static_attributes": [{"name": "location", "type": "geo:point", "value": "30.66, 104.06"}],
              "commands": [{"name": "reset", "type": "command"}]}
    r = await client.post("/iot/devices", json={"devices": [device]}, headers={**operator, **SVC})
    assert r.status_code == 201, r.text
    r = await client.get("/iot/devices/ws001", headers={**reader, **SVC})
    assert r.status_code == 200
    got = r.json()
    assert got["entity_name"] == "urn:ngsi-ld:WeatherObserved:ws001" and got["apikey"] == "wx-key-1"
    assert got["protocol"] == "PDI-IoTA-UltraLight" and got["transport"] == "MQTT"
    assert got["timezone"] == "Asia/Shanghai"
    assert got["health"] == {"status": "unknown", "last_seen": None, "message_count": 0, "error_count": 0,
                             "messages_per_hour": None, "offline_at": None, "autoprovisioned": False}
    # a device put back as read (with its read-only health) is accepted
    got["attributes"].append({"object_id": "w", "name": "windSpeed", "type": "Number"})
    r = await client.put("/iot/devices/ws001", json=got, headers={**operator, **SVC})
    assert r.status_code == 204, r.text
    assert len((await client.get("/iot/devices/ws001", headers={**reader, **SVC})).json()["attributes"]) == 2
    # without entity_name: urn:ngsi-ld:<type>:<device_id>
    await client.post("/iot/devices", json={"devices": [{"device_id": "ws002"}]}, headers={**operator, **SVC})
    got = (await client.get("/iot/devices/ws002", headers={**reader, **SVC})).json()
    assert got["entity_name"] == "urn:ngsi-ld:WeatherObserved:ws002" and got["apikey"] == "wx-key-1"
    listing = (await client.get("/iot/devices", headers={**reader, **SVC})).json()
    assert listing["count"] == 2 and [d["device_id"] for d in listing["devices"]] == ["ws001", "ws002"]
    r = await client.post("/iot/devices", json={"devices": [{"device_id": "ws001"}]}, headers={**operator, **SVC})
    assert r.status_code == 409 and r.json()["name"] == "DUPLICATE_DEVICE_ID"
    assert (await client.delete("/iot/devices/ws001", headers={**operator, **SVC})).status_code == 204
    r = await client.get("/iot/devices/ws001", headers={**reader, **SVC})
    assert r.status_code == 404 and r.json()["name"] == "DEVICE_NOT_FOUND"


async def test_scopes(client, reader, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    r = await client.post("/iot/services", json={"services": [weather_group()]})
    assert r.status_code == 401
    r = await client.post("/iot/services", json={"services": [weather_group()]}, headers=reader)
    assert r.status_code == 403 and "iot.manage" in r.json()["detail"]
    for role in ("citizen", "enterprise", "developer"):  # apikeys let anyone send measurements: staff only
        r = await client.get("/iot/services", headers=token_for(make_user(role)))
        assert r.status_code == 403, role
    assert (await client.get("/iot/about")).status_code == 200
