"""The MQTT southbound: subscribes to the IoT Agents' device topics (QoS 1, persistent session) and applies each
message through ingest(), acknowledging it only after its transaction committed.

Topics (levels after a leading `/`):
  /json/<apikey>/<device>/attrs[/<object_id>]   IoTA-JSON
  /ul/<apikey>/<device>/attrs[/<object_id>]     Ultralight 2.0
  /<apikey>/<device>/attrs[/<object_id>]        JSON when the payload starts with { or [, else Ultralight
  /[json/|ul/]<apikey>/<device>/cmdexe          command results (see commands.py)

Messages are taken from paho's network thread onto a queue; one worker thread collects them into micro-batches
(flushed at CITYPLUS_IOT_BATCH_SIZE messages or CITYPLUS_IOT_BATCH_MS after the first), applies each batch
set-based in one transaction (ingest_batch) and then sends the PUBACKs in order. When the database fails, the batch
is retried, never acknowledged unapplied; a message received but not yet acknowledged when the gateway stops is
redelivered by the broker on the next connection (same client id, persistent session).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.exc import InterfaceError, OperationalError

from cityplus.core.db import utcnow
from cityplus.modules.iot import lease
from cityplus.modules.iot.commands import apply_results
from cityplus.modules.iot.ingest import Message, dead_letter, ingest_batch

if TYPE_CHECKING:
    from cityplus.modules.iot.runtime import IotRuntime

log = structlog.get_logger("cityplus.iot.mqtt")
TOPICS = ("/+/+/attrs", "/+/+/attrs/+", "/json/+/+/attrs", "/json/+/+/attrs/+", "/ul/+/+/attrs", "/ul/+/+/attrs/+",
          "/+/+/cmdexe", "/json/+/+/cmdexe", "/ul/+/+/cmdexe")


@dataclass(frozen=True)
class Topic:
    apikey: str
    device_id: str
    fmt: str  # json | ul | auto
    object_id: str | None = None
    kind: str = "attrs"  # attrs (measures) | cmdexe (command results)


def parse_topic(topic: str) -> Topic | None:
    """The apikey, device, format, kind and single attribute a device topic names; None for other topics."""
    levels = topic.split("/")
    if len(levels) < 4 or levels[0] != "":
        return None
    levels = levels[1:]
    fmt = "auto"
    if levels[0] in ("json", "ul") and len(levels) in (4, 5) and levels[3] in ("attrs", "cmdexe"):
        fmt, levels = levels[0], levels[1:]
    if not levels[0] or not levels[1]:
        return None
    if len(levels) == 3 and levels[2] == "cmdexe":
        return Topic(levels[0], levels[1], fmt, kind="cmdexe")
    if len(levels) not in (3, 4) or levels[2] != "attrs":
        return None
    object_id = levels[3] if len(levels) == 4 else None
    if object_id == "":
        return None
    return Topic(levels[0], levels[1], fmt, object_id)


def _format(fmt: str, payload: bytes) -> str:
    if fmt != "auto":
        return fmt
    return "json" if payload.lstrip()[:1] in (b"{", b"[") else "ul"


def _message_id(msg: mqtt.MQTTMessage) -> str | None:
    """An MQTT 5 user property `message-id` (or `id`) is the sender's idempotency key."""
    props = getattr(msg, "properties", None)
    for key, value in getattr(props, "UserProperty", None) or []:
        if key in ("message-id", "id") and 0 < len(value) <= 128:
            return str(value)
    return None


class MqttGateway:
    """One MQTT connection of the gateway, its receive queue and the worker that applies and acknowledges."""

    def __init__(self, rt: IotRuntime, url: str) -> None:
        self.rt = rt
        self.url = urlsplit(url)
        # (message, time of arrival): observedAt of measurements without a timestamp, and the health's last seen
        self.queue: queue.Queue[tuple[mqtt.MQTTMessage, datetime]] = queue.Queue()
        self.subscribed = threading.Event()
        self._stopping = threading.Event()
        self._renewed = time.monotonic()  # the lease was just taken when the gateway is created
        self._worker = threading.Thread(target=self._work, name="cityplus-iot-mqtt", daemon=True)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=rt.settings.mqtt_client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        if self.url.username:
            self.client.username_pw_set(self.url.username, self.url.password)
        if self.url.scheme == "mqtts":
            self.client.tls_set()
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.rt.settings.mqtt_session_expiry
        default_port = 8883 if self.url.scheme == "mqtts" else 1883
        self.client.connect_async(self.url.hostname or "127.0.0.1", self.url.port or default_port, keepalive=30,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        self._worker.start()

    def stop(self, timeout: float = 10) -> None:
        """Finish the batch in hand (applied and acknowledged), then disconnect; queued messages stay unacked."""
        self._stopping.set()
        self._worker.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("iot_mqtt_connect_failed", reason=str(reason))
            return
        log.info("iot_mqtt_connected", client_id=self.rt.settings.mqtt_client_id,
                 session_present=bool(getattr(flags, "session_present", False)))
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in TOPICS])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("iot_mqtt_subscribe_failed", reasons=failed)
        else:
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("iot_mqtt_disconnected", reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.queue.put((msg, utcnow()))

    # --- worker thread ---------------------------------------------------------------------------------

    def _work(self) -> None:
        size, wait = self.rt.settings.batch_size, self.rt.settings.batch_ms / 1000
        while not self._stopping.is_set():
            try:
                first = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            # A micro-batch: what arrives within `wait` of the first message, up to `size` messages. Under load the
            # queue is never empty and batches fill at once; when quiet a message waits at most `wait`.
            batch = [first]
            deadline = time.monotonic() + wait
            while len(batch) < size:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except queue.Empty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self.queue.get(timeout=left))
                except queue.Empty:
                    break
            self._apply_batch(batch)

    def _apply_batch(self, batch: list[tuple[mqtt.MQTTMessage, datetime]]) -> None:
        if not self._store(batch):
            return  # stopping: left unacknowledged, the broker redelivers the batch
        for msg, _ in batch:
            if msg.qos > 0:
                self.client.ack(msg.mid, msg.qos)

    def _store(self, batch: list[tuple[mqtt.MQTTMessage, datetime]]) -> bool:
        """Apply a batch in one transaction; False when stopping before it could be stored."""
        delay = 0.5
        while True:
            try:
                self._apply(batch)
                return True
            except (OperationalError, InterfaceError) as exc:  # the database is away: retry, never ack unapplied
                log.error("iot_mqtt_batch_failed", messages=len(batch), error=str(exc)[:300])
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, 30)
            except Exception as exc:  # one message broke the batch's transaction: isolate it
                if len(batch) > 1:
                    log.warning("iot_mqtt_batch_isolating", messages=len(batch), error=str(exc)[:300])
                    return all(self._store([one]) for one in batch)
                self._file_poison(batch[0][0], exc)
                return True

    def _file_poison(self, raw: mqtt.MQTTMessage, exc: Exception) -> None:
        """A message that fails on its own (a bug, not the database): kept as a dead letter, then acknowledged."""
        log.error("iot_mqtt_message_failed", topic=raw.topic[:200], exc_info=exc)
        topic = parse_topic(raw.topic)
        msg = Message(transport="mqtt", channel=raw.topic[:512], apikey=topic.apikey if topic else "",
                      device_id=topic.device_id if topic else "", fmt="ul", payload=bytes(raw.payload))
        try:
            with self.rt.ctx.db.session() as session:
                dead_letter(session, self.rt, msg, "internal_error", f"{type(exc).__name__}: {exc}"[:500], tenant=None)
        except Exception as again:  # not even the dead letter: log it, never wedge the queue
            log.error("iot_mqtt_dead_letter_failed", topic=raw.topic[:200], exc_info=again)

    def _apply(self, batch: list[tuple[mqtt.MQTTMessage, datetime]]) -> None:
        ctx = self.rt.ctx
        from cityplus.modules.context import service as context_service

        active = context_service.core_context(ctx)
        measures: list[Message] = []
        with ctx.db.session() as session:
            for raw, received in batch:
                topic = parse_topic(raw.topic)
                payload = bytes(raw.payload)
                if topic is None:
                    continue  # not a device topic (cannot happen with our subscriptions)
                msg = Message(transport="mqtt", channel=raw.topic[:512], apikey=topic.apikey,
                              device_id=topic.device_id, fmt=_format(topic.fmt, payload), payload=payload,
                              object_id=topic.object_id, message_id=_message_id(raw), received=received)
                if topic.kind == "cmdexe":
                    apply_results(session, self.rt, msg, active)
                else:
                    measures.append(msg)
            if measures:
                ingest_batch(session, self.rt, measures, active)
            self._renew_lease(session)

    def _renew_lease(self, session: Any) -> None:
        """Renew the gateway's lease in the batch's own transaction when due. Under sustained load on SQLite the
        worker holds the write lock nearly all the time, and the lease loop's own renewal could wait on it past
        the lease's expiry (another process would then connect with the same client id)."""
        ttl = self.rt.settings.mqtt_lease_seconds
        now = time.monotonic()
        if now - self._renewed < ttl / 3:
            return
        if lease.acquire(session, lease.MQTT_GATEWAY, self.rt.holder, ttl):
            self._renewed = now
        else:
            log.warning("iot_gateway_lease_not_held", holder=self.rt.holder)
