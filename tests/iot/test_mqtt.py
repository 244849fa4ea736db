"""MQTT southbound against the real Mosquitto: both payload formats, single attributes, dead letters, commands, and
no loss while the gateway is away (persistent session, QoS 1)."""

from __future__ import annotations

import asyncio
import os
import queue
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import need
from tests.iot.conftest import weather_group
from tests.servers import reachable

MQTT_URL = os.environ.get("CITYPLUS_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
SVC = {"fiware-service": "chengdu"}
LD = {"NGSILD-Tenant": "chengdu"}


@pytest.fixture
def settings(settings, monkeypatch):  # type: ignore[no-untyped-def]
    """The app connects to the real broker, with a client id (session) of its own per test."""
    need(reachable("127.0.0.1", 1883), "no MQTT broker on 127.0.0.1:1883")
    settings.mqtt_url = MQTT_URL
    monkeypatch.setenv("CITYPLUS_IOT_MQTT_CLIENT_ID", f"cityplus-iot-test-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("CITYPLUS_IOT_MQTT_SESSION_EXPIRY", "120")
    return settings


@pytest.fixture
def apikey() -> str:
    return f"k{uuid.uuid4().hex[:12]}"


def publish(messages: list[tuple[str, bytes | str]]) -> None:
    """Publish with QoS 1 and wait until the broker has acknowledged every message."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-device-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


async def gateway_ready(ctx: Any) -> None:
    from cityplus.modules.iot.runtime import runtime

    gw = runtime(ctx).mqtt
    assert gw is not None, "the MQTT gateway did not start"
    assert await asyncio.to_thread(gw.subscribed.wait, 10), "the MQTT gateway did not subscribe"


async def eventually(client, path: str, headers: dict[str, str], check, timeout: float = 10) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = await client.get(path, headers=headers)
        last = r
        if r.status_code == 200 and check(r.json()):
            return r.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path}: condition not met; last answer {last.status_code if last else None}: "
                         f"{last.text[:500] if last else ''}")


async def test_both_formats_and_single_attributes(client, ctx, operator, apikey) -> None:  # type: ignore[no-untyped-def]
    await gateway_ready(ctx)
    group = weather_group(apikey, resource="/iot/mqtt")
    assert (await client.post("/iot/services", json={"services": [group]}, headers={**operator, **SVC})
            ).status_code == 201
    publish([(f"/ul/{apikey}/ws-ul/attrs", "2026-11-24T08:00:00Z|t|18.5|h|70"),
             (f"/json/{apikey}/ws-json/attrs", '{"t": 19.5, "h": 71, "TimeInstant": "2026-11-24T08:00:00Z"}'),
             (f"/{apikey}/ws-plain/attrs", '{"t": 20.5}'),
             (f"/{apikey}/ws-plain-ul/attrs", "t|21.5"),
             (f"/{apikey}/ws-single/attrs/t", "22.5")])
    base = "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:"
    headers = {**operator, **LD}
    e = await eventually(client, base + "ws-ul", headers, lambda e: "temperature" in e)
    assert e["temperature"]["value"] == 18.5 and e["temperature"]["observedAt"] == "2026-11-24T08:00:00.000Z"
    assert e["temperature"]["unitCode"] == "CEL" and e["relativeHumidity"]["value"] == 70
    e = await eventually(client, base + "ws-json", headers, lambda e: "temperature" in e)
    assert e["temperature"]["value"] == 19.5 and e["relativeHumidity"]["value"] == 71
    for device, value in (("ws-plain", 20.5), ("ws-plain-ul", 21.5), ("ws-single", 22.5)):
        e = await eventually(client, base + device, headers, lambda e: "temperature" in e)
        assert e["temperature"]["value"] == value, device
    d = (await client.get("/iot/devices/ws-ul", headers={**operator, **SVC})).json()
    assert d["health"]["status"] == "online" and d["health"]["message_count"] == 1
    metrics = (await client.get("/metrics")).text
    assert 'cityplus_iot_measurements_total{transport="mqtt"} 5.0' in metrics


async def test_mqtt_dead_letters(client, ctx, operator, apikey) -> None:  # type: ignore[no-untyped-def]
    await gateway_ready(ctx)
    await client.post("/iot/services", json={"services": [weather_group(apikey)]}, headers={**operator, **SVC})
    publish([(f"/ul/{apikey}/ws1/attrs", "t|1|h"), (f"/json/{apikey}/ws1/attrs", "[]"),
             (f"/json/{apikey}-unknown/ws1/attrs", '{"t": 1}')])
    letters = await eventually(client, "/iot/deadletters", {**operator, **SVC}, lambda b: b["count"] == 2)
    assert {x["reason"] for x in letters["deadletters"]} == {"malformed_payload"}
    assert all(x["transport"] == "mqtt" and x["channel"].endswith("/ws1/attrs") for x in letters["deadletters"])
    unmatched = await eventually(client, "/iot/deadletters?unmatched=true", operator, lambda b: b["count"] >= 1)
    assert unmatched["deadletters"][0]["reason"] == "unknown_apikey"


async def test_no_message_lost_while_the_gateway_is_away(ctx, operator, apikey) -> None:  # type: ignore[no-untyped-def]
    """Messages published while the gateway is stopped are queued by the broker (persistent session, QoS 1) and
    applied once it is back; a redelivered measurement (same device and timestamp) is not applied twice."""
    import httpx

    from cityplus.api.app import create_app

    async def run_app(action):  # type: ignore[no-untyped-def]
        app = create_app(ctx=ctx) if not hasattr(run_app, "app") else run_app.app
        run_app.app = app
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                await gateway_ready(ctx)
                return await action(c)

    async def provision(c):  # type: ignore[no-untyped-def]
        r = await c.post("/iot/services", json={"services": [weather_group(apikey)]}, headers={**operator, **SVC})
        assert r.status_code == 201

    await run_app(provision)
    # the gateway is away: devices keep publishing
    publish([(f"/ul/{apikey}/ws-away/attrs", f"2026-11-24T08:{m:02d}:00Z|t|{m}") for m in range(30)]
            + [(f"/ul/{apikey}/ws-away/attrs", "2026-11-24T08:29:00Z|t|29")])  # a duplicate

    async def check(c):  # type: ignore[no-untyped-def]
        d = await eventually(c, "/iot/devices/ws-away", {**operator, **SVC},
                             lambda d: d["health"]["message_count"] == 31)
        e = await eventually(c, "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:ws-away", {**operator, **LD},
                             lambda e: e["temperature"]["value"] == 29)
        assert e["temperature"]["observedAt"] == "2026-11-24T08:29:00.000Z"
        return d

    await run_app(check)
    metrics = await run_app(lambda c: c.get("/metrics"))
    assert 'cityplus_iot_duplicates_total{transport="mqtt"} 1.0' in metrics.text


async def test_mqtt_commands(client, ctx, operator) -> None:  # type: ignore[no-untyped-def]
    await gateway_ready(ctx)
    apikey = f"k{uuid.uuid4().hex[:12]}"
    group = {"apikey": apikey, "resource": "/iot/json", "entity_type": "Streetlight",
             "commands": [{"name": "switch", "type": "command"}]}
    await client.post("/iot/services", json={"services": [group]}, headers={**operator, **SVC})
    await client.post("/iot/devices", json={"devices": [{"device_id": "lamp-1", "transport": "MQTT"}]},
                      headers={**operator, **SVC})
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lamp-{uuid.uuid4().hex[:8]}")
    device.on_message = lambda c, u, m: received.put((m.topic, m.payload))
    device.connect("127.0.0.1", 1883)
    device.loop_start()
    try:
        device.subscribe(f"/{apikey}/lamp-1/cmd", qos=1)
        await asyncio.sleep(0.3)
        r = await client.post("/iot/devices/lamp-1/commands/switch", json={"value": "on"},
                              headers={**operator, **SVC})
        assert r.status_code == 202 and r.json()["transport"] == "mqtt"
        topic, payload = received.get(timeout=10)
        assert topic == f"/{apikey}/lamp-1/cmd" and payload == b'{"switch": "on"}'
    finally:
        device.disconnect()
        device.loop_stop()
    publish([(f"/json/{apikey}/lamp-1/cmdexe", '{"switch": "switched on"}')])
    e = await eventually(client, "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:lamp-1", {**operator, **LD},
                         lambda e: e.get("switch_status", {}).get("value") == "OK")
    assert e["switch_info"]["value"] == "switched on"
    listed = (await client.get("/iot/devices/lamp-1/commands", headers={**operator, **SVC})).json()
    assert listed["commands"][0]["status"] == "OK" and listed["commands"][0]["info"] == "switched on"


async def test_simulator_over_mqtt(client, ctx, operator) -> None:  # type: ignore[no-untyped-def]
    from cityplus.core.audit import Actor
    from cityplus.modules.iot.fleet import fleet
    from cityplus.modules.iot.simulate import MqttSender, provision, run

    await gateway_ready(ctx)
    devices = fleet(seed=11)
    with ctx.db.session() as s:
        provision(s, Actor.system("test"), "chengdu", devices)
    report = await asyncio.to_thread(run, devices, MqttSender(MQTT_URL), rate=1000, messages=len(devices), seed=11)
    assert report.results == {"published": len(devices)}
    online = await eventually(client, "/iot/devices?status=online&limit=100", {**operator, **SVC},
                              lambda b: b["count"] == len(devices))
    assert all(d["health"]["message_count"] == 1 for d in online["devices"])


async def test_one_gateway_connection_among_processes(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two applications on one database (two workers): one holds the lease and connects, the other takes over
    when it stops — the persistent session is never fought over."""
    from cityplus.api.app import build_context, create_app
    from cityplus.modules.iot.runtime import runtime

    monkeypatch.setenv("CITYPLUS_IOT_MQTT_LEASE_SECONDS", "1")
    other = build_context(ctx.settings)
    first, second = create_app(ctx=ctx), create_app(ctx=other)
    try:
        async with first.router.lifespan_context(first):
            async with second.router.lifespan_context(second):
                await gateway_ready(ctx)
                await asyncio.sleep(1)  # a few lease rounds
                assert runtime(ctx).mqtt is not None and runtime(other).mqtt is None
            assert runtime(ctx).mqtt is not None  # the other stopped: nothing changes for the holder
            async with second.router.lifespan_context(second):
                await asyncio.sleep(0.5)
                assert runtime(other).mqtt is None
        # the holder stopped and released the lease: the other takes it (at start, or within a lease round)
        async with second.router.lifespan_context(second):
            await gateway_ready(other)
    finally:
        other.db.dispose()


async def test_bad_messages_never_wedge_the_queue(client, ctx, operator, apikey) -> None:  # type: ignore[no-untyped-def]
    await gateway_ready(ctx)
    await client.post("/iot/services", json={"services": [weather_group(apikey)]}, headers={**operator, **SVC})
    publish([(f"/json/{apikey}/ws1/attrs", b'{"t": "\\u0000"}'), (f"/json/{apikey}/ws1/attrs", b'{"t": 1e999}'),
             (f"/ul/{apikey}/ws1/attrs", b"\xff\xfe"), (f"/ul/{apikey}/ws1/attrs", "t|30")])
    e = await eventually(client, "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:ws1", {**operator, **LD},
                         lambda e: e.get("temperature", {}).get("value") == 30)
    assert e["temperature"]["value"] == 30
    letters = (await client.get("/iot/deadletters", headers={**operator, **SVC})).json()
    assert letters["count"] == 3 and {x["reason"] for x in letters["deadletters"]} == {"malformed_payload"}


@pytest.fixture
def batch_window(monkeypatch):  # type: ignore[no-untyped-def]
    """A long flush window, so that a burst lands in one micro-batch (set before the app starts)."""
    monkeypatch.setenv("CITYPLUS_IOT_BATCH_MS", "1500")


async def test_one_micro_batch_keeps_the_per_message_rules(batch_window, client, ctx, operator, apikey) -> None:  # type: ignore[no-untyped-def]
    """Messages applied together in one transaction keep every per-message rule: a duplicate in the same batch is
    applied once, an older observation does not overwrite a newer one, a malformed message becomes a dead letter
    alone, and device health counts each message."""
    await gateway_ready(ctx)
    group = weather_group(apikey, resource="/iot/mqtt")
    assert (await client.post("/iot/services", json={"services": [group]}, headers={**operator, **SVC})
            ).status_code == 201
    topic = f"/ul/{apikey}/%s/attrs"
    publish([
        (topic % "b1", "2026-11-24T09:00:00Z|t|20"),
        (topic % "b1", "2026-11-24T09:00:00Z|t|20"),  # the same measurement again: applied once
        (topic % "b1", "2026-11-24T08:00:00Z|t|10|h|55"),  # older: t is stale, h is new
        (topic % "b1", "t|warm"),  # malformed: a dead letter, the others are unaffected
        (topic % "b2", "2026-11-24T08:30:00Z|t|5"),
        (f"/ul/{apikey}-nobody/b3/attrs", "t|1"),  # unknown apikey
    ])
    base = "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:"
    e = await eventually(client, base + "b2", {**operator, **LD}, lambda e: "temperature" in e)
    assert e["temperature"]["value"] == 5
    e = (await client.get(base + "b1", headers={**operator, **LD})).json()
    assert e["temperature"]["value"] == 20 and e["temperature"]["observedAt"] == "2026-11-24T09:00:00.000Z"
    assert e["relativeHumidity"]["value"] == 55
    d = (await client.get("/iot/devices/b1", headers={**operator, **SVC})).json()["health"]
    assert d["message_count"] == 3 and d["error_count"] == 1 and d["status"] == "online"
    letters = (await client.get("/iot/deadletters", headers={**operator, **SVC})).json()
    assert [x["reason"] for x in letters["deadletters"]] == ["malformed_payload"]
    assert letters["deadletters"][0]["payload"] == "t|warm"
    unmatched = (await client.get("/iot/deadletters?unmatched=true", headers=operator)).json()
    assert [x["reason"] for x in unmatched["deadletters"]] == ["unknown_apikey"]
    metrics = (await client.get("/metrics")).text
    assert 'cityplus_iot_duplicates_total{transport="mqtt"} 1.0' in metrics
    assert 'cityplus_iot_measurements_total{transport="mqtt"} 3.0' in metrics
