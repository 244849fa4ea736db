"""Reliability: the gateway process is killed (SIGKILL) mid-stream and restarted; no acknowledged message is lost
and none is applied twice (real `cityplus serve` processes, real Mosquitto, SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from cityplus.core.audit import Actor
from cityplus.core.db import Database
from cityplus.modules.context import service as context
from cityplus.modules.iot import service
from cityplus.modules.iot.models import DeadLetter, Device, Receipt
from cityplus.modules.iot.schemas import ServiceGroupIn
from tests.conftest import need
from tests.servers import free_port, reachable, wait_ready

pytestmark = pytest.mark.slow
TOTAL, KILL_AT, DEVICES = 800, 300, 8  # below Mosquitto's default max_queued_messages (1000) for the offline session
TEMPERATURE = "https://uri.etsi.org/ngsi-ld/default-context/temperature"


def _count(db: Database, what) -> int:  # type: ignore[no-untyped-def]
    with db.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(what)) or 0)


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def test_kill_and_restart_loses_nothing_applies_nothing_twice(db_url: str, tmp_path: Path) -> None:
    need(reachable("127.0.0.1", 1883), "no MQTT broker on 127.0.0.1:1883")
    apikey = f"k{uuid.uuid4().hex[:12]}"
    db = Database(db_url)
    with db.session() as s:
        service.create_groups(s, Actor.system("test"), "", "/", [ServiceGroupIn(
            apikey=apikey, resource="/iot/d", entity_type="WeatherObserved",
            attributes=[{"object_id": "t", "name": "temperature", "type": "Integer"}])])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYPLUS_")}
    env.update({"CITYPLUS_DATABASE_URL": db_url, "CITYPLUS_SECRET_KEY": "kill-test", "CITYPLUS_VAR_DIR":
                str(tmp_path / "var"), "CITYPLUS_MQTT_URL": "mqtt://127.0.0.1:1883",
                "CITYPLUS_IOT_MQTT_CLIENT_ID": f"cityplus-iot-kill-{uuid.uuid4().hex[:8]}",
                "CITYPLUS_IOT_MQTT_SESSION_EXPIRY": "300",
                "CITYPLUS_IOT_MQTT_LEASE_SECONDS": "3"})  # the killed process's lease expires within 3 s

    def serve(n: int) -> subprocess.Popen[bytes]:
        port = free_port()
        log = tmp_path / f"server{n}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "cityplus", "serve", "--host", "127.0.0.1", "--port",
                                     str(port)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        return proc

    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
    publisher.connect("127.0.0.1", 1883)
    publisher.loop_start()
    server = serve(1)
    try:
        # the gateway is subscribed once a probe gets through
        probe = publisher.publish(f"/ul/{apikey}/probe/attrs", "t|0", qos=1)
        probe.wait_for_publish(5)
        _wait(lambda: _count(db, select(Device).where(Device.device_id == "probe", Device.message_count > 0)
                             .subquery()) == 1, 30, "the gateway to subscribe")
        infos = []
        for i in range(TOTAL):
            stamp = f"2026-11-24T08:{i // 60:02d}:{i % 60:02d}Z"
            infos.append(publisher.publish(f"/ul/{apikey}/dev{i % DEVICES}/attrs", f"{stamp}|t|{i}", qos=1))
            if i == KILL_AT:
                _wait(lambda: _count(db, Receipt) >= 100, 30, "the first measurements")
                server.kill()  # SIGKILL: no shutdown, batch in hand lost, PUBACKs not sent
                server.wait(10)
                applied_at_kill = _count(db, Receipt)
        for info in infos:
            info.wait_for_publish(10)  # the broker has every message (queued in the gateway's session)
        assert applied_at_kill < TOTAL  # (the probe has no timestamp, hence no receipt)
        server = serve(2)
        _wait(lambda: _count(db, Receipt) == TOTAL, 60,
              lambda: f"all {TOTAL} measurements (applied {_count(db, Receipt)}, {applied_at_kill} before the kill); "
                      "gateway log:\n" + (tmp_path / "server2.log").read_text()[-3000:])
        time.sleep(0.5)
        assert _count(db, Receipt) == TOTAL  # each measurement applied exactly once
        assert _count(db, DeadLetter) == 0
        with db.session(readonly=True) as s:
            seen = s.scalar(select(func.sum(Device.message_count)).where(Device.device_id != "probe")) or 0
            for d in range(DEVICES):
                last = max(i for i in range(TOTAL) if i % DEVICES == d)
                entity = context.get_entity(s, None, f"urn:ngsi-ld:WeatherObserved:dev{d}")
                assert entity.attrs[TEMPERATURE]["value"] == last
        assert seen >= TOTAL  # redelivered ones were received again, and recognised as duplicates
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        publisher.disconnect()
        publisher.loop_stop()
        db.dispose()
