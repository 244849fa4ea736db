"""NGSI-LD subscriptions: CRUD and validation, and notifications delivered to real local HTTP and MQTT receivers.

The receivers are real servers on 127.0.0.1 (a threaded HTTP server; the local Mosquitto), the notifier is the
one the application runs, and the outbox is in the test's database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cityplus.modules.context.runtime import runtime
from tests.conftest import need
from tests.servers import reachable

E = "https://uri.etsi.org/ngsi-ld/errors/"
JS = {"Content-Type": "application/json"}
SUBS = "/ngsi-ld/v1/subscriptions"
ENTITIES = "/ngsi-ld/v1/entities"


class Receiver:
    """A real HTTP notification receiver: records every POST; can answer with an error or hang."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 204
        self.delay = 0.0
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                if status < 300:
                    with receiver.cond:
                        receiver.received.append({"headers": dict(self.headers), "body": json.loads(body),
                                                  "at": time.monotonic()})
                        receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    async def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cond:
                if len(self.received) >= n:
                    return list(self.received)
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {n} notifications, got {len(self.received)}: {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def writer(make_user, token_for):  # type: ignore[no-untyped-def]
    return token_for(make_user("department_staff", org="hbj"))


@pytest.fixture
def fast(app, ctx):  # type: ignore[no-untyped-def]
    """Quick retries and polling, so failure handling is testable in seconds."""
    rt = runtime(ctx)
    rt.settings = rt.settings.model_copy(update={"notify_backoff": 0.1, "notify_poll": 0.05,
                                                 "notify_max_attempts": 5, "notify_timeout": 1.0})
    return rt


def station(n: int = 1, pm25: float = 30, **extra: object) -> dict[str, object]:
    return {"id": f"urn:ngsi-ld:AirQualityObserved:cd-{n:03d}", "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": pm25, "unitCode": "GQ"},
            "district": {"type": "Property", "value": "武侯区"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [104.06, 30.65]}},
            **extra}


def sub(uri: str, **extra: Any) -> dict[str, Any]:
    notification = {"endpoint": {"uri": uri, "accept": "application/json"}, **extra.pop("notification", {})}
    return {"type": "Subscription", "entities": [{"type": "AirQualityObserved"}], "notification": notification,
            **extra}


async def post(client, headers, url, body, **kw):  # type: ignore[no-untyped-def]
    return await client.post(url, headers={**headers, **JS, **kw.pop("extra", {})}, content=json.dumps(body), **kw)


async def patch_pm25(client, headers, n: int, value: float):  # type: ignore[no-untyped-def]
    r = await client.patch(f"{ENTITIES}/urn:ngsi-ld:AirQualityObserved:cd-{n:03d}/attrs", headers={**headers, **JS},
                           content=json.dumps({"pm25": {"type": "Property", "value": value}}))
    assert r.status_code == 204, r.text


# --- CRUD and validation ---------------------------------------------------------------------------------


async def test_create_read_list_update_delete(client, writer, receiver) -> None:  # type: ignore[no-untyped-def]
    r = await post(client, writer, SUBS, sub(receiver.url, id="urn:ngsi-ld:Subscription:s1",
                                             watchedAttributes=["pm25"], q="pm25>50", throttling=2,
                                             subscriptionName="PM2.5 超标"))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"{SUBS}/urn:ngsi-ld:Subscription:s1"
    doc = (await client.get(f"{SUBS}/urn:ngsi-ld:Subscription:s1", headers=writer)).json()
    assert doc["status"] == "active" and "isActive" not in doc  # given: shown; not given: active by default
    assert doc["entities"] == [{"type": "AirQualityObserved"}] and doc["watchedAttributes"] == ["pm25"]
    assert doc["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert doc["q"] == "pm25>50" and doc["throttling"] == 2 and doc["subscriptionName"] == "PM2.5 超标"
    assert "timesSent" not in doc["notification"] and doc["notification"]["format"] == "normalized"
    r = await post(client, writer, SUBS, sub(receiver.url, id="urn:ngsi-ld:Subscription:s1"))
    assert r.status_code == 409 and r.json()["type"] == E + "AlreadyExists"
    r = await post(client, writer, SUBS, sub(receiver.url))
    assert r.status_code == 201
    r = await client.get(SUBS, params={"count": "true", "limit": 1}, headers=writer)
    assert r.status_code == 200 and len(r.json()) == 1 and r.headers["ngsild-results-count"] == "2"
    r = await client.patch(f"{SUBS}/urn:ngsi-ld:Subscription:s1", headers={**writer, **JS},
                           content=json.dumps({"isActive": False, "q": "pm25>75"}))
    assert r.status_code == 204, r.text
    doc = (await client.get(f"{SUBS}/urn:ngsi-ld:Subscription:s1", headers=writer)).json()
    assert doc["status"] == "paused" and doc["q"] == "pm25>75"
    r = await client.patch(f"{SUBS}/urn:ngsi-ld:Subscription:s1", headers={**writer, **JS},
                           content=json.dumps({"timeInterval": 5}))
    assert r.status_code == 400  # periodic and watchedAttributes do not go together: nothing changed
    assert (await client.delete(f"{SUBS}/urn:ngsi-ld:Subscription:s1", headers=writer)).status_code == 204
    r = await client.get(f"{SUBS}/urn:ngsi-ld:Subscription:s1", headers=writer)
    assert r.status_code == 404 and r.json()["type"] == E + "ResourceNotFound"
    assert (await client.get(f"{SUBS}/not-a-uri", headers=writer)).status_code == 400


@pytest.mark.parametrize(("change", "fragment"), [
    ({"q": "pm25>>3"}, "invalid q"),
    ({"geoQ": {"geometry": "Point", "coordinates": [1], "georel": "near;maxDistance==10"}}, "geoQ"),
    ({"notification": {"endpoint": {"uri": "/relative"}}}, "absolute"),
    ({"notification": {"endpoint": {"uri": "ftp://example.org/x"}}}, "absolute"),
    ({"notification": {"format": "xml", "endpoint": {"uri": "http://127.0.0.1:1/n"}}}, "format"),
    ({"throttling": -1}, "throttling"),
    ({"timeInterval": 5, "watchedAttributes": ["pm25"]}, "timeInterval"),
    ({"timeInterval": 5, "throttling": 2}, "timeInterval"),
    ({"entities": []}, "entities"),
    ({"entities": [{"id": "urn:x:1"}]}, "type"),
    ({"entities": [{"type": "T", "idPattern": "(("}]}, "idPattern"),
    ({"notificationTrigger": ["entityExploded"]}, "notificationTrigger"),
    ({"expiresAt": "tomorrow"}, "expiresAt"),
    ({"colour": "red"}, "colour"),
    ({"type": "Subscriptions"}, "type"),
    ({"notification": {"format": "keyValues", "showChanges": True, "endpoint": {"uri": "http://127.0.0.1:1/n"}}},
     "showChanges"),
    ({"datasetId": ["not a uri"]}, "datasetId"),
])
async def test_invalid_subscriptions_are_400(client, writer, change, fragment) -> None:  # type: ignore[no-untyped-def]
    body = {**sub("http://127.0.0.1:1/notify"), **change}
    r = await post(client, writer, SUBS, body)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == E + "BadRequestData" and fragment in r.json()["detail"]
    assert (await client.get(SUBS, headers=writer)).json() == []


async def test_subscriptions_need_write_scope_and_stay_in_their_tenant(client, writer, make_user, token_for,
                                                                        receiver) -> None:  # type: ignore[no-untyped-def]
    reader = token_for(make_user("citizen"))
    assert (await post(client, reader, SUBS, sub(receiver.url))).status_code == 403
    assert (await client.post(SUBS, headers=JS, content=json.dumps(sub(receiver.url)))).status_code == 401
    r = await post(client, writer, SUBS, sub(receiver.url), extra={"NGSILD-Tenant": "jinjiang"})
    assert r.status_code == 201 and r.headers["ngsild-tenant"] == "jinjiang"
    assert (await client.get(SUBS, headers=writer)).json() == []
    assert len((await client.get(SUBS, headers={**writer, "NGSILD-Tenant": "jinjiang"})).json()) == 1
    # A change in the default tenant does not notify the other tenant's subscription.
    await post(client, writer, ENTITIES, station(1))
    await asyncio.sleep(0.5)
    assert receiver.received == []


# --- delivery ------------------------------------------------------------------------------------------------


async def test_notification_on_matching_update(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    await post(client, writer, ENTITIES, station(1, pm25=31))
    r = await post(client, writer, SUBS, sub(receiver.url, id="urn:ngsi-ld:Subscription:pm",
                                             watchedAttributes=["pm25"], q="pm25>50",
                                             notification={"attributes": ["pm25", "district"]}))
    assert r.status_code == 201
    await patch_pm25(client, writer, 1, 40)  # q does not hold: nothing
    await patch_pm25(client, writer, 1, 88)
    got = await receiver.wait(1)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1
    body, headers = got[0]["body"], got[0]["headers"]
    assert body["type"] == "Notification" and body["subscriptionId"] == "urn:ngsi-ld:Subscription:pm"
    assert body["id"].startswith("urn:ngsi-ld:Notification:") and body["notifiedAt"].endswith("Z")
    assert body["data"] == [{"id": "urn:ngsi-ld:AirQualityObserved:cd-001", "type": "AirQualityObserved",
                             "pm25": {"type": "Property", "value": 88},  # PATCH /attrs replaces the attribute
                             "district": {"type": "Property", "value": "武侯区"}}]
    assert headers["Content-Type"] == "application/json" and "ngsi-ld-core-context" in headers["Link"]
    doc = (await client.get(f"{SUBS}/urn:ngsi-ld:Subscription:pm", headers=writer)).json()
    assert doc["notification"]["timesSent"] == 1 and doc["notification"]["status"] == "ok"
    assert "lastSuccess" in doc["notification"]
    # A change to another attribute is not watched.
    r = await client.patch(f"{ENTITIES}/urn:ngsi-ld:AirQualityObserved:cd-001/attrs", headers={**writer, **JS},
                           content=json.dumps({"district": {"type": "Property", "value": "锦江区"}}))
    assert r.status_code == 204
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1


async def test_formats_triggers_and_show_changes(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    await post(client, writer, SUBS, sub(receiver.url, notificationTrigger=["entityCreated", "entityDeleted"],
                                         notification={"format": "keyValues",
                                                       "endpoint": {"uri": receiver.url,
                                                                    "accept": "application/ld+json",
                                                                    "receiverInfo": [{"key": "X-City",
                                                                                      "value": "chengdu"}]}}))
    await post(client, writer, SUBS, sub(receiver.url, notificationTrigger=["attributeUpdated"],
                                         notification={"showChanges": True}))
    await post(client, writer, ENTITIES, station(2, pm25=10))
    created = (await receiver.wait(1))[0]
    assert created["headers"]["Content-Type"] == "application/ld+json" and created["headers"]["X-City"] == "chengdu"
    assert created["body"]["@context"] and created["body"]["data"][0]["pm25"] == 10
    await patch_pm25(client, writer, 2, 20)
    changed = (await receiver.wait(2))[1]["body"]["data"][0]
    assert changed["pm25"]["value"] == 20 and changed["pm25"]["previousValue"] == 10
    assert (await client.delete(f"{ENTITIES}/urn:ngsi-ld:AirQualityObserved:cd-002", headers=writer)).status_code \
        == 204
    deleted = (await receiver.wait(3))[2]["body"]["data"][0]
    assert deleted["id"] == "urn:ngsi-ld:AirQualityObserved:cd-002" and "deletedAt" in deleted


async def test_batch_changes_notify_each_entity(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    await post(client, writer, SUBS, sub(receiver.url, notificationTrigger=["entityCreated"]))
    r = await post(client, writer, "/ngsi-ld/v1/entityOperations/upsert", [station(n) for n in range(1, 6)])
    assert r.status_code == 201, r.text
    got = await receiver.wait(5)
    assert sorted(g["body"]["data"][0]["id"] for g in got) == [f"urn:ngsi-ld:AirQualityObserved:cd-{n:03d}"
                                                               for n in range(1, 6)]


async def test_failing_receiver_is_retried_and_recovers(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    receiver.status = 500
    await post(client, writer, SUBS, sub(receiver.url, id="urn:ngsi-ld:Subscription:f"))
    await post(client, writer, ENTITIES, station(3))
    deadline = time.monotonic() + 10
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = (await client.get(f"{SUBS}/urn:ngsi-ld:Subscription:f", headers=writer)).json()
        if doc["status"] == "failed":
            break
        await asyncio.sleep(0.1)
    assert doc["status"] == "failed" and doc["notification"]["timesFailed"] >= 3, doc
    assert "lastFailure" in doc["notification"] and doc["notification"]["status"] == "failed"
    receiver.status = 204  # back within the retry window: the notification arrives, once
    got = await receiver.wait(1)
    assert got[0]["body"]["data"][0]["id"] == "urn:ngsi-ld:AirQualityObserved:cd-003"
    await asyncio.sleep(0.3)
    doc = (await client.get(f"{SUBS}/urn:ngsi-ld:Subscription:f", headers=writer)).json()
    # timesSent counts attempts: the failed ones and the one that got through.
    assert doc["status"] == "active" and len(receiver.received) == 1
    assert doc["notification"]["timesSent"] == doc["notification"]["timesFailed"] + 1


async def test_slow_receiver_does_not_slow_writes(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    receiver.delay = 0.8
    await post(client, writer, SUBS, sub(receiver.url))
    await post(client, writer, ENTITIES, station(4))
    started = time.monotonic()
    for v in range(5):
        await patch_pm25(client, writer, 4, 50 + v)
    assert time.monotonic() - started < 0.8 * 2  # five writes took less than two deliveries
    got = await receiver.wait(6, timeout=15)
    assert [g["body"]["data"][0]["pm25"]["value"] for g in got] == [30, 50, 51, 52, 53, 54]  # in order


async def test_throttling_coalesces_to_latest_state(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    await post(client, writer, SUBS, sub(receiver.url, throttling=1))
    await post(client, writer, ENTITIES, station(5, pm25=1))
    first = await receiver.wait(1)
    for v in (2, 3, 4):
        await patch_pm25(client, writer, 5, v)
    got = await receiver.wait(2, timeout=5)
    await asyncio.sleep(1.3)
    assert len(receiver.received) == 2
    assert got[1]["body"]["data"][0]["pm25"]["value"] == 4
    assert got[1]["at"] - first[0]["at"] >= 0.9


async def test_periodic_subscription(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    await post(client, writer, ENTITIES, station(6, pm25=66))
    await post(client, writer, ENTITIES, station(7, pm25=7))
    r = await post(client, writer, SUBS, sub(receiver.url, timeInterval=1, q="pm25>50"))
    assert r.status_code == 201, r.text
    got = await receiver.wait(2, timeout=6)
    for g in got[:2]:
        assert [e["id"] for e in g["body"]["data"]] == ["urn:ngsi-ld:AirQualityObserved:cd-006"]


async def test_expired_and_paused_subscriptions_do_not_notify(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    r = await post(client, writer, SUBS, sub(receiver.url, expiresAt="2020-01-01T00:00:00Z"))
    assert r.status_code == 400 and "future" in r.json()["detail"]
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    assert (await post(client, writer, SUBS, sub(receiver.url, expiresAt=soon))).status_code == 201
    await post(client, writer, SUBS, sub(receiver.url, isActive=False))
    await asyncio.sleep(1.2)
    docs = (await client.get(SUBS, headers=writer)).json()
    assert sorted(d["status"] for d in docs) == ["expired", "paused"]
    await post(client, writer, ENTITIES, station(8))
    await asyncio.sleep(0.5)
    assert receiver.received == []


async def test_mqtt_endpoint(client, writer, fast) -> None:  # type: ignore[no-untyped-def]
    need(reachable("127.0.0.1", 1883), "Mosquitto is not reachable on 127.0.0.1:1883")
    import uuid

    import paho.mqtt.client as mqtt

    topic = f"cityplus-test/{uuid.uuid4().hex}"
    messages: list[dict[str, Any]] = []
    ready = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_connect = lambda c, *_a: (c.subscribe(topic, qos=1), ready.set())
    listener.on_message = lambda _c, _u, m: messages.append(json.loads(m.payload))
    listener.connect("127.0.0.1", 1883)
    listener.loop_start()
    try:
        assert ready.wait(5)
        await asyncio.sleep(0.2)
        r = await post(client, writer, SUBS, sub(f"mqtt://127.0.0.1:1883/{topic}", notification={
            "endpoint": {"uri": f"mqtt://127.0.0.1:1883/{topic}", "accept": "application/json",
                         "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
                         "receiverInfo": [{"key": "X-Ref", "value": "r1"}]}}))
        assert r.status_code == 201, r.text
        await post(client, writer, ENTITIES, station(9, pm25=99))
        deadline = time.monotonic() + 10
        while not messages and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert messages, "no MQTT notification"
        msg = messages[0]
        assert msg["metadata"]["Content-Type"] == "application/json" and msg["metadata"]["X-Ref"] == "r1"
        assert msg["body"]["type"] == "Notification"
        assert msg["body"]["data"][0]["pm25"]["value"] == 99
    finally:
        listener.loop_stop()
        listener.disconnect()


async def test_outbox_survives_a_restart(ctx, receiver) -> None:  # type: ignore[no-untyped-def]
    """A change committed while no notifier runs (the server was killed after the write) is delivered later."""
    import httpx

    from cityplus.api.app import create_app
    from cityplus.modules.context import jsonld, service, subscriptions

    with ctx.db.session() as session:
        t = service.tenant(session, None, create=True)
        active = service.core_context(ctx)
        spec = subscriptions.parse(sub(receiver.url, id="urn:ngsi-ld:Subscription:r"), active)
        subscriptions.create(session, t.id, spec, None)
    with ctx.db.session() as session:  # the write, with no server (and no notifier) running
        service.upsert_entity(session, None, service.expand_compact(station(10), active), replace=True)
    assert jsonld.CORE_CONTEXT_URL
    await asyncio.sleep(0.3)
    assert receiver.received == []
    application = create_app(ctx=ctx)  # the restarted server
    async with application.router.lifespan_context(application), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t"):
        got = await receiver.wait(1)
    assert got[0]["body"]["data"][0]["id"] == "urn:ngsi-ld:AirQualityObserved:cd-010"


async def test_many_subscriptions_are_matched_through_the_index(ctx, receiver) -> None:  # type: ignore[no-untyped-def]
    """5,000 subscriptions on other entities: a change is tested only against those of its id and type."""
    from cityplus.modules.context import service, subscriptions
    from cityplus.modules.context.changefeed import Change
    from cityplus.modules.context.models import ContextNotification

    active = service.core_context(ctx)
    with ctx.db.session() as session:
        t = service.tenant(session, None, create=True)
        for i in range(5000):
            body = {"type": "Subscription", "entities": [{"type": "AirQualityObserved",
                                                           "id": f"urn:ngsi-ld:AirQualityObserved:other-{i}"}],
                    "notification": {"endpoint": {"uri": receiver.url}}}
            subscriptions.create(session, t.id, subscriptions.parse(body, active), None)
        mine = sub(receiver.url, entities=[{"type": "AirQualityObserved",
                                            "id": "urn:ngsi-ld:AirQualityObserved:cd-011"}])
        subscriptions.create(session, t.id, subscriptions.parse(mine, active), None)
    with ctx.db.session() as session:
        service.upsert_entity(session, None, service.expand_compact(station(11), active), replace=True)
        idx = subscriptions._index(session, t.id)
        assert len(list(idx.candidates(Change("updated", "urn:ngsi-ld:AirQualityObserved:cd-011",
                                                            [service.expand_compact(station(11), active)["type"][0]],
                                                            None, {}, {}, set())))) == 1
        assert session.query(ContextNotification).count() == 1


async def test_other_modules_can_listen_to_changes(ctx) -> None:  # type: ignore[no-untyped-def]
    """changefeed.listen: a module sees every write's changes inside the write's transaction."""
    from cityplus.modules.context import changefeed, service

    seen: list[tuple[str, str, set[str]]] = []

    def listener(_session, _tenant_id, changes) -> None:  # type: ignore[no-untyped-def]
        seen.extend((c.kind, c.entity_id, set(c.changed)) for c in changes)

    changefeed.listen(listener)
    try:
        active = service.core_context(ctx)
        with ctx.db.session() as session:
            service.upsert_entity(session, None, service.expand_compact(station(12), active), replace=True)
        with ctx.db.session() as session:
            service.update_attrs(session, None, "urn:ngsi-ld:AirQualityObserved:cd-012",
                                 service.expand_compact({"pm25": {"type": "Property", "value": 1}}, active,
                                                        require_id=False, require_type=False))
        with ctx.db.session() as session:
            service.delete_entity(session, None, "urn:ngsi-ld:AirQualityObserved:cd-012")
    finally:
        changefeed.unlisten(listener)
    pm25 = service.core_context(ctx).expand_term("pm25")
    assert [(k, e) for k, e, _ in seen] == [("created", "urn:ngsi-ld:AirQualityObserved:cd-012"),
                                           ("updated", "urn:ngsi-ld:AirQualityObserved:cd-012"),
                                           ("deleted", "urn:ngsi-ld:AirQualityObserved:cd-012")]
    assert seen[1][2] == {pm25}


async def test_instance_deletion_and_dataset_filter(client, writer, receiver, fast) -> None:  # type: ignore[no-untyped-def]
    """Deleting one datasetId instance is attributeDeleted; the notification shows it as Null. A q given
    percent-encoded (as in a URL) matches; datasetId narrows the instances notified."""
    multi = station(13, name=[{"type": "Property", "value": "武侯站"},
                              {"type": "Property", "value": "Wuhou station", "datasetId": "urn:ngsi-ld:Dataset:en"}])
    await post(client, writer, ENTITIES, multi)
    quoted = 'district=="%E6%AD%A6%E4%BE%AF%E5%8C%BA"'  # 武侯区
    await post(client, writer, SUBS, sub(receiver.url, watchedAttributes=["name"], q=quoted,
                                         notificationTrigger=["attributeDeleted"],
                                         notification={"attributes": ["name"], "sysAttrs": True}))
    r = await client.delete(f"{ENTITIES}/urn:ngsi-ld:AirQualityObserved:cd-013/attrs/name",
                            params={"datasetId": "urn:ngsi-ld:Dataset:en"}, headers=writer)
    assert r.status_code == 204, r.text
    name = (await receiver.wait(1))[0]["body"]["data"][0]["name"]
    assert name[0]["value"] == "武侯站"
    assert name[1]["value"] == "urn:ngsi-ld:null" and name[1]["datasetId"] == "urn:ngsi-ld:Dataset:en"
    assert "deletedAt" in name[1]
