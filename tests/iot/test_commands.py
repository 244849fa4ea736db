"""Commands kept for HTTP polling; the device's reply sets the status (MQTT commands: test_mqtt.py)."""

from __future__ import annotations

SVC = {"fiware-service": "chengdu"}
LD = {"NGSILD-Tenant": "chengdu"}

LAMP_GROUP = {"apikey": "lamp-key", "resource": "/iot/d", "entity_type": "Streetlight",
              "attributes": [{"object_id": "l", "name": "illuminanceLevel", "type": "Number"}],
              "commands": [{"name": "switch", "type": "command"}]}


async def test_http_polling_commands(client, operator, reader) -> None:  # type: ignore[no-untyped-def]
    # no MQTT broker configured: commands wait for the device to poll
    await client.post("/iot/services", json={"services": [LAMP_GROUP]}, headers={**operator, **SVC})
    await client.post("/iot/devices", json={"devices": [{"device_id": "lamp-7", "protocol": "PDI-IoTA-UltraLight"}]},
                      headers={**operator, **SVC})
    r = await client.post("/iot/devices/lamp-7/commands/switch", json={"value": "on"}, headers={**operator, **SVC})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "PENDING" and r.json()["transport"] == "http"
    e = (await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:lamp-7", headers={**operator, **LD})).json()
    assert e["switch"]["value"] == "on" and e["switch_status"]["value"] == "PENDING"

    r = await client.get("/iot/d", params={"k": "lamp-key", "i": "lamp-7", "getCmd": "1"})
    assert r.status_code == 200 and r.text == "lamp-7@switch|on"
    assert (await client.get("/iot/d", params={"k": "lamp-key", "i": "lamp-7", "getCmd": "1"})).text == ""
    listed = (await client.get("/iot/devices/lamp-7/commands", headers={**reader, **SVC})).json()
    assert listed["commands"][0]["status"] == "DELIVERED"

    r = await client.post("/iot/d/commands", params={"k": "lamp-key", "i": "lamp-7"},
                          content=b"lamp-7@switch|ERROR: lamp broken")
    assert r.status_code == 200, r.text
    e = (await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:lamp-7", headers={**operator, **LD})).json()
    assert e["switch_status"]["value"] == "ERROR" and e["switch_info"]["value"] == "ERROR: lamp broken"
    # a reply to no open command is a dead letter; an unprovisioned command is refused
    r = await client.post("/iot/d/commands", params={"k": "lamp-key", "i": "lamp-7"}, content=b"lamp-7@switch|OK")
    assert r.status_code == 404 and r.json()["name"] == "COMMAND_NOT_FOUND"
    r = await client.post("/iot/devices/lamp-7/commands/explode", json={"value": 1}, headers={**operator, **SVC})
    assert r.status_code == 404 and r.json()["name"] == "COMMAND_NOT_FOUND"
    r = await client.post("/iot/devices/lamp-7/commands/switch", json={"val": 1}, headers={**operator, **SVC})
    assert r.status_code == 400
    letters = (await client.get("/iot/deadletters", headers={**reader, **SVC})).json()
    assert [x["reason"] for x in letters["deadletters"]] == ["unknown_command"]
