"""The city simulator: provisions the simulated fleet (fleet.py) and drives it over MQTT or HTTP, optionally with
the faults real devices have (spikes, dropouts, duplicates, out-of-order timestamps, malformed messages)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from cityplus.core.audit import Actor
from cityplus.core.db import utcnow
from cityplus.modules.iot import service
from cityplus.modules.iot.fleet import KINDS, SimDevice, device_payload, group_payload
from cityplus.modules.iot.models import Device, ServiceGroup
from cityplus.modules.iot.schemas import DeviceIn, ServiceGroupIn

if TYPE_CHECKING:
    from cityplus.modules.iot.runtime import IotRuntime

log = structlog.get_logger("cityplus.iot.simulator")
FAULTS = ("spike", "dropout", "duplicate", "out_of_order", "malformed")


def provision(session: Session, actor: Actor, tenant: str, devices: list[SimDevice]) -> tuple[int, int]:
    """Create the fleet's service groups and devices that do not exist yet; (groups, devices) created."""
    groups = 0
    for kind in KINDS:
        exists = session.scalar(select(ServiceGroup.id).where(ServiceGroup.resource == kind.resource,
                                                              ServiceGroup.apikey == kind.apikey))
        if exists is None:
            service.create_groups(session, actor, tenant, "/", [ServiceGroupIn.model_validate(group_payload(kind))])
            groups += 1
    have = set(session.scalars(select(Device.device_id).where(Device.tenant == tenant,
                                                              Device.device_id.like("sim-%"))))
    new = [DeviceIn.model_validate(device_payload(d)) for d in devices if d.device_id not in have]
    if new:
        service.create_devices(session, actor, tenant, "/", new)
    return groups, len(new)


def encode(d: SimDevice, values: dict[str, object], at: datetime) -> bytes:
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if d.kind.fmt == "ul":
        return (stamp + "|" + "|".join(f"{k}|{v}" for k, v in values.items())).encode()
    return json.dumps({**values, "TimeInstant": stamp}).encode()


class Sender(Protocol):
    def send(self, d: SimDevice, payload: bytes) -> str: ...

    def close(self) -> None: ...


class HttpSender:
    """Devices POSTing to /iot/d and /iot/json of a running CityPlus."""

    def __init__(self, base_url: str, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=10)

    def send(self, d: SimDevice, payload: bytes) -> str:
        ctype = "text/plain" if d.kind.fmt == "ul" else "application/json"
        try:
            r = self.client.post(d.kind.resource, params={"k": d.kind.apikey, "i": d.device_id}, content=payload,
                                 headers={"content-type": ctype})
        except httpx.HTTPError as exc:
            return f"error:{type(exc).__name__}"
        return str(r.status_code)

    def close(self) -> None:
        self.client.close()


class MqttSender:
    """Devices publishing with QoS 1 to /ul/… and /json/… topics."""

    def __init__(self, url: str) -> None:
        import paho.mqtt.client as mqtt

        parts = urlsplit(url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"cityplus-sim-{random.getrandbits(32):x}")
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        if parts.scheme == "mqtts":
            self.client.tls_set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()
        self.pending: list[object] = []

    def send(self, d: SimDevice, payload: bytes) -> str:
        info = self.client.publish(f"/{d.kind.fmt}/{d.kind.apikey}/{d.device_id}/attrs", payload, qos=1)
        self.pending.append(info)
        if len(self.pending) > 1000:
            self._flush()
        return "published"

    def _flush(self) -> None:
        for info in self.pending:
            info.wait_for_publish(10)  # type: ignore[attr-defined]
        self.pending.clear()

    def close(self) -> None:
        self._flush()
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Report:
    sent: int = 0
    results: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


def run(devices: list[SimDevice], sender: Sender, *, rate: float, duration: float | None = None,
        messages: int | None = None, faults: bool = False, seed: int | None = None,
        clock: Callable[[], datetime] = utcnow, should_stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], object] = time.sleep) -> Report:
    """Send `rate` messages a second, round-robin over the fleet, for `duration` seconds or `messages` messages.
    `sleep` waits between messages (an Event's wait ends it early when the simulator is stopped)."""
    rng = random.Random(seed)
    report = Report()
    start = time.monotonic()
    n = 0
    while not should_stop():
        if messages is not None and n >= messages:
            break
        if duration is not None and time.monotonic() - start >= duration:
            break
        d = devices[n % len(devices)]
        n += 1
        at = clock()
        values = d.reading(at)
        fault = rng.choice(FAULTS) if faults and rng.random() < 0.1 else None
        if fault == "dropout":
            report.faults[fault] += 1
        else:
            if fault == "spike":
                key = next(iter(values))
                spiked = float(values[key]) * rng.uniform(4, 8)  # type: ignore[arg-type]
                values[key] = round(spiked) if isinstance(values[key], int) else round(spiked, 1)
            if fault == "out_of_order":
                at = at - timedelta(minutes=rng.randint(2, 30))
            payload = encode(d, values, at)
            if fault == "malformed":
                payload = rng.choice([b"t|", b"{\"pm25\": ", b"\xff\xfe", b"|||", b"[1, 2]"])
            for _ in range(2 if fault == "duplicate" else 1):
                report.results[sender.send(d, payload)] += 1
                report.sent += 1
            if fault:
                report.faults[fault] += 1
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            sleep(wait)
    sender.close()
    return report


class DirectSender:
    """Devices of the embedded simulator: their messages go through the HTTP southbound's ingestion in-process
    (no HTTP to itself, no port to know), one transaction per message as an HTTP request would be."""

    def __init__(self, rt: IotRuntime) -> None:
        self.rt = rt

    def send(self, d: SimDevice, payload: bytes) -> str:
        from cityplus.modules.context import service as context
        from cityplus.modules.iot.ingest import Message, ingest

        msg = Message(transport="http", channel=d.kind.resource, apikey=d.kind.apikey, device_id=d.device_id,
                      fmt=d.kind.fmt, payload=payload, resource=d.kind.resource)
        with self.rt.ctx.db.session() as session:
            outcome = ingest(session, self.rt, msg, context.core_context(self.rt.ctx))
        return str(outcome.error.status) if outcome.error is not None else "200"

    def close(self) -> None:
        return None


class EmbeddedSimulator:
    """The city simulator inside `cityplus serve` (CITYPLUS_IOT_SIMULATE_RATE > 0, as `make run` sets it): one
    process of a deployment drives the fleet (a lease, like the MQTT gateway's), over MQTT when a broker is
    configured, else in-process through the HTTP southbound's ingestion. Stops with the server."""

    LEASE = "simulator"

    def __init__(self, rt: IotRuntime) -> None:
        self.rt = rt
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._main, name="cityplus-iot-simulator", daemon=True)
        self._renewed = 0.0

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self.thread.join(timeout)

    def _hold(self) -> bool:
        from cityplus.modules.iot import lease

        ttl = self.rt.settings.mqtt_lease_seconds
        with self.rt.ctx.db.session() as session:
            held = lease.acquire(session, self.LEASE, self.rt.holder, ttl)
        self._renewed = time.monotonic()
        return held

    def _should_stop(self) -> bool:
        if self.stopping.is_set():
            return True
        if time.monotonic() - self._renewed >= self.rt.settings.mqtt_lease_seconds / 3:
            try:
                return not self._hold()  # another process took over (this one was stalled past the lease)
            except Exception as exc:  # database away: keep sending, the next renewal tries again
                log.warning("iot_simulator_lease_failed", error=str(exc)[:200])
        return False

    def _main(self) -> None:
        from cityplus.modules.iot.fleet import fleet

        rt, settings = self.rt, self.rt.settings
        devices = fleet(settings.simulate_seed)
        provisioned = False
        while not self.stopping.is_set():
            try:
                if not self._hold():
                    self.stopping.wait(settings.mqtt_lease_seconds / 3)
                    continue
                if not provisioned:
                    with rt.ctx.db.session() as session:
                        provision(session, Actor.system("iot-simulator"), "", devices)
                    provisioned = True
                sender: Sender = MqttSender(rt.ctx.settings.mqtt_url) if rt.ctx.settings.mqtt_url \
                    else DirectSender(rt)
                log.info("iot_simulator_started", rate=settings.simulate_rate, devices=len(devices),
                         transport="mqtt" if rt.ctx.settings.mqtt_url else "direct")
                report = run(devices, sender, rate=settings.simulate_rate, faults=settings.simulate_faults,
                             seed=settings.simulate_seed, should_stop=self._should_stop, sleep=self.stopping.wait)
                log.info("iot_simulator_stopped", sent=report.sent)
            except Exception as exc:  # never take the server down: try again a little later
                log.error("iot_simulator_failed", exc_info=exc)
                self.stopping.wait(5)
        if provisioned:
            try:
                from cityplus.modules.iot import lease

                with rt.ctx.db.session() as session:
                    lease.release(session, self.LEASE, rt.holder)
            except Exception as exc:  # the lease then expires
                log.warning("iot_simulator_lease_release_failed", error=str(exc)[:200])
