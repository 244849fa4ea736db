"""The NATS JetStream event bus: durable pull consumers per handler group, shared by every process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
)

from cityplus.core.db import Database
from cityplus.core.events import (
    _NAME_RE,
    Handler,
    decode_event,
    handle_in_group,
    log,
    log_handler_failure,
    process_identity,
)
from cityplus.core.events_bus import OutboxRelayBus, _OutboxItem

T = TypeVar("T")

_STREAM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
# Errors after which the connection, not the message, is the problem: stop the batch and retry later.
_CONNECTION_ERRORS = (
    nats.errors.ConnectionClosedError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    TimeoutError,
)


def consumer_name(group: str) -> str:
    """The durable consumer name for a handler group (NATS names allow no dots)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", group)


class NatsBus(OutboxRelayBus):
    """Events through JetStream: the relay publishes the outbox, durable consumers share work per group."""

    def __init__(
        self,
        db: Database,
        url: str,
        *,
        stream: str = "CITYPLUS",
        subject_prefix: str | None = None,
        ack_wait: float = 30.0,
        max_deliver: int = 10,
        nak_delays: Sequence[float] = (1.0, 5.0, 30.0),
        fetch_batch: int = 10,
        fetch_timeout: float = 5.0,
        max_age: float = 7 * 24 * 3600.0,
        duplicate_window: float = 120.0,
        connect_timeout: float = 5.0,
        broadcast_heartbeat: float = 5.0,
        **relay_options: Any,
    ) -> None:
        super().__init__(db, **relay_options)
        if not _STREAM_RE.fullmatch(stream):
            raise ValueError(f"stream name {stream!r} must be 1-64 of [A-Za-z0-9_-]")
        prefix = subject_prefix if subject_prefix is not None else stream.lower()
        if not _TOKEN_RE.fullmatch(prefix):
            raise ValueError(f"subject prefix {prefix!r} is not a valid NATS subject")
        self.url = url
        self.stream = stream
        self.subject_prefix = prefix
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.nak_delays = tuple(nak_delays) or (1.0,)
        self.fetch_batch = fetch_batch
        self.fetch_timeout = fetch_timeout
        self.max_age = max_age
        self.duplicate_window = duplicate_window
        self.connect_timeout = connect_timeout
        self.broadcast_heartbeat = broadcast_heartbeat
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._idle: dict[str, bool] = {}
        self._subs: dict[str, JetStreamContext.PullSubscription] = {}
        self._broadcast_sub: JetStreamContext.PushSubscription | None = None
        self._broadcast_seq = 0  # consumer sequence of the last broadcast message handled here

    # ------------------------------------------------------------------------------------- naming

    @property
    def all_subjects(self) -> str:
        """The stream's subject wildcard."""
        return f"{self.subject_prefix}.events.>"

    def subject_for(self, name: str) -> str:
        """The subject an event name is published on."""
        return f"{self.subject_prefix}.events.{name}"

    def filter_for(self, pattern: str) -> str:
        """A handler pattern as a subject filter ('*' and trailing '.*' become '>')."""
        if pattern == "*":
            return self.all_subjects
        if pattern.endswith(".*"):
            return self.subject_for(pattern[:-2]) + ".>"
        return self.subject_for(pattern)

    def health(self) -> tuple[bool, str]:
        """Ready while the relay runs and the NATS connection is up (not reconnecting)."""
        task, nc = self._relay_task, self._nc
        if task is None or task.done() or nc is None:
            return False, "nats (not running)"
        if not nc.is_connected:
            return False, "nats (disconnected)"
        return True, "nats"

    # --------------------------------------------------------------------------------- transport

    async def _start_transport(self) -> None:
        names: dict[str, str] = {}
        for handler in self.handlers:
            if handler.broadcast:
                continue
            other = names.setdefault(consumer_name(handler.group), handler.group)
            if other != handler.group:
                raise ValueError(f"groups {other!r} and {handler.group!r} map to the same consumer name")
        nc = await nats.connect(
            self.url,
            name=f"cityplus:{process_identity()}",
            connect_timeout=self.connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1,  # a server process outlives NATS restarts
            reconnect_time_wait=1.0,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._nc = nc
        self._js = nc.jetstream(timeout=self.connect_timeout)
        try:
            await self._ensure_stream()
            for handler in self.handlers:
                if not handler.broadcast:
                    sub = await self._ensure_consumer(handler)
                    self._subs[handler.group] = sub
                    self._idle[handler.group] = False
                    self._workers[handler.group] = asyncio.create_task(
                        self._consume(handler, sub), name=f"cityplus-events-{handler.group}"
                    )
            if any(h.broadcast for h in self.handlers):
                # Ordered ephemeral consumer per process, from now on: every process sees every event.
                self._broadcast_sub = await self._js.subscribe(
                    self.all_subjects,
                    stream=self.stream,
                    cb=self._on_broadcast,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                    # Missed heartbeats make nats-py re-create the consumer (e.g. after a server restart).
                    idle_heartbeat=self.broadcast_heartbeat,
                )
        except BaseException:
            await self._stop_transport()
            raise

    async def _stop_transport(self) -> None:
        self._stopping = True
        for group, task in self._workers.items():
            # Idle workers sit in fetch(): cancel them; busy ones finish (and ack) their batch first.
            if self._idle.get(group):
                task.cancel()
        if self._workers:
            # A handler stuck for this long is abandoned: its message returns to the group after ack_wait.
            _, stuck = await asyncio.wait(self._workers.values(), timeout=max(30.0, self.ack_wait))
            for task in stuck:
                log.warning("event_consumer_stop_timeout", task=task.get_name())
                task.cancel()
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        # Unsubscribe (discarding) rather than let drain() wait for pull replies nobody will read any more;
        # unacked messages go back to the group after ack_wait.
        for sub in self._subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        self._broadcast_sub = None
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.drain(), timeout=5)
            except Exception:
                log.warning("event_bus_drain_failed", exc_info=True)
            if not nc.is_closed:
                await nc.close()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("event_bus_error", error=repr(exc))

    async def _on_disconnected(self) -> None:
        if not self._stopping:
            log.warning("event_bus_disconnected", url=self.url)

    async def _on_reconnected(self) -> None:
        log.info("event_bus_reconnected", url=self.url)

    async def _ensure_stream(self) -> None:
        assert self._js is not None
        try:
            info = await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            try:
                await self._js.add_stream(
                    name=self.stream,
                    subjects=[self.all_subjects],
                    retention=RetentionPolicy.LIMITS,
                    storage=StorageType.FILE,
                    discard=DiscardPolicy.OLD,
                    max_age=self.max_age,
                    duplicate_window=self.duplicate_window,
                )
            except nats.js.errors.BadRequestError:
                await self._js.stream_info(self.stream)  # created meanwhile by another process
            return
        if self.all_subjects not in (info.config.subjects or []):
            raise RuntimeError(f"stream {self.stream} exists without subjects {self.all_subjects}")

    def _consumer_config(self, handler: Handler) -> ConsumerConfig:
        filters = sorted({self.filter_for(p) for p in handler.events})
        if self.all_subjects in filters:
            filters = [self.all_subjects]
        config = ConsumerConfig(
            name=consumer_name(handler.group),
            durable_name=consumer_name(handler.group),
            description=f"cityplus handler group {handler.group}",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=1000,
        )
        assert self._nc is not None
        version = self._nc.connected_server_version
        if len(filters) == 1:
            config.filter_subject = filters[0]
        elif (version.major, version.minor) >= (2, 10):
            config.filter_subjects = filters
        else:
            # Servers before 2.10 take one filter: take everything and let matches() drop the rest.
            config.filter_subject = self.all_subjects
        return config

    async def _ensure_consumer(self, handler: Handler) -> JetStreamContext.PullSubscription:
        """Create (or re-create after a config change) the group's durable consumer and bind to it."""
        assert self._js is not None
        wanted = self._consumer_config(handler)
        name = consumer_name(handler.group)
        try:
            info = await self._js.consumer_info(self.stream, name)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None and not _same_consumer(info.config, wanted):
            # Handler patterns or timings changed: re-create from the old ack floor. Events after it may be
            # delivered again; the group's receipts make that harmless.
            log.warning("event_consumer_recreated", group=handler.group, consumer=name)
            wanted.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            wanted.opt_start_seq = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_consumer(self.stream, name)
            info = None
        if info is None:
            try:
                await self._js.add_consumer(self.stream, config=wanted)
            except nats.js.errors.BadRequestError:
                await self._js.consumer_info(self.stream, name)  # another process created it first
        return await self._js.pull_subscribe_bind(consumer=name, stream=self.stream)

    # --------------------------------------------------------------------------------- publishing

    async def _deliver(self, items: Sequence[_OutboxItem]) -> list[str]:
        assert self._js is not None
        published: list[str] = []
        for item in items:
            if not _NAME_RE.fullmatch(item.name):
                log.error("event_invalid_name", event_name=item.name, event_id=item.id)
                published.append(item.id)  # can never be a subject: skip it rather than block the outbox
                continue
            body = json.dumps({"name": item.name, "payload": item.payload}, separators=(",", ":")).encode()
            try:
                ack = await self._js.publish(
                    self.subject_for(item.name),
                    body,
                    stream=self.stream,
                    # JetStream drops a second publish with the same id inside the duplicate window,
                    # e.g. when a relay died between publishing and marking the row.
                    headers={"Nats-Msg-Id": item.id},
                )
            except _CONNECTION_ERRORS:
                log.warning("event_publish_failed", event_id=item.id, event_name=item.name, exc_info=True)
                break
            except Exception:
                log.error("event_publish_failed", event_id=item.id, event_name=item.name, exc_info=True)
                continue
            if ack.duplicate:
                log.debug("event_publish_duplicate", event_id=item.id, event_name=item.name)
            published.append(item.id)
        return published

    # ---------------------------------------------------------------------------------- consuming

    async def _consume(self, handler: Handler, sub: JetStreamContext.PullSubscription) -> None:
        """Pull messages for one group until stopped; never raises."""
        failures = 0
        while not self._stopping:
            try:
                self._idle[handler.group] = True
                msgs = await sub.fetch(self.fetch_batch, timeout=self.fetch_timeout)
            except TimeoutError:  # nats.errors.TimeoutError included: nothing to do
                continue
            except Exception:
                if self._stopping:
                    break
                failures += 1
                log.warning("event_consumer_failed", group=handler.group, failures=failures, exc_info=True)
                await self._sleep(min(10.0, 0.5 * failures))
                try:  # the consumer may have been deleted: create it again and re-bind
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                    sub = self._subs[handler.group] = await self._ensure_consumer(handler)
                except Exception:
                    log.warning("event_consumer_rebind_failed", group=handler.group, exc_info=True)
                continue
            finally:
                self._idle[handler.group] = False
            failures = 0
            for msg in msgs:
                await self._handle_msg(handler, msg)

    async def _handle_msg(self, handler: Handler, msg: Msg) -> None:
        attempt = msg.metadata.num_delivered
        try:
            envelope = self._envelope(msg)
            if envelope is None:
                await msg.term()  # not an event at all: no retry can help
                return
            name, payload, event_id = envelope
            if not handler.matches(name):  # filter wider than the patterns (servers before 2.10)
                await msg.ack()
                return
            event = decode_event(name, payload, event_id)
            if event is None:
                # Logged. During a rolling deploy another process of the group may know this type:
                # give it back for a while before giving up on it.
                if attempt < self.max_deliver:
                    await msg.nak(delay=self.nak_delays[-1])
                else:
                    await msg.term()
                return
            try:
                ran = await self._with_progress(msg, handle_in_group, self.db, handler, event)
            except Exception:
                final = attempt >= self.max_deliver
                log_handler_failure(handler, event, attempt, final)
                if final:
                    await msg.term()
                else:
                    await msg.nak(delay=self.nak_delays[min(attempt, len(self.nak_delays)) - 1])
                return
            await msg.ack()
            # A skipped duplicate is rare and worth seeing (redelivery); routine success is debug.
            (log.debug if ran else log.info)(
                "event_handled" if ran else "event_duplicate_skipped",
                group=handler.group,
                event_name=event.name,
                event_id=event.id,
                attempt=attempt,
            )
        except Exception:
            # Ack/nak lost (e.g. disconnected): the message comes back after ack_wait, receipts dedupe it.
            log.warning("event_ack_failed", group=handler.group, exc_info=True)

    async def _with_progress(self, msg: Msg, fn: Callable[..., T], *args: Any) -> T:
        """Run fn in a thread, telling JetStream we are still working so a long handler is not redelivered."""
        task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        interval = max(self.ack_wait / 2, 0.05)
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            with contextlib.suppress(Exception):
                await msg.in_progress()

    @staticmethod
    def _envelope(msg: Msg) -> tuple[str, dict[str, Any], str] | None:
        """(name, payload, event id) of a message, or None (logged) when it is not an event envelope."""
        try:
            envelope = json.loads(msg.data)
            name, payload = envelope["name"], envelope["payload"]
            if not isinstance(name, str) or not isinstance(payload, dict):
                raise TypeError("name must be a string and payload an object")
        except (ValueError, KeyError, TypeError):
            log.error("event_decode_failed", subject=msg.subject, exc_info=True)
            return None
        event_id = str(payload.get("id") or (msg.headers or {}).get("Nats-Msg-Id") or "")
        return name, payload, event_id

    async def _on_broadcast(self, msg: Msg) -> None:
        try:
            envelope = self._envelope(msg)
            event = decode_event(*envelope) if envelope is not None else None
            if event is not None:
                for handler in self.handlers:
                    if handler.broadcast and handler.matches(event.name):
                        await self.run_with_retries(handler, event)
        except Exception:
            log.error("event_broadcast_failed", subject=msg.subject, exc_info=True)
        finally:
            self._broadcast_seq = msg.metadata.sequence.consumer

    # ----------------------------------------------------------------------------------- draining

    async def _drain_transport(self, deadline: float) -> None:
        """Wait until every group consumer has nothing pending or unacked, and broadcasts are handled."""
        assert self._js is not None and self._loop is not None
        while True:
            if await self._consumers_idle():
                return
            if self._loop.time() > deadline:
                raise TimeoutError("JetStream consumers still have pending events")
            await asyncio.sleep(0.05)

    async def _consumers_idle(self) -> bool:
        assert self._js is not None
        try:
            for handler in self.handlers:
                if handler.broadcast:
                    continue
                info = await self._js.consumer_info(self.stream, consumer_name(handler.group))
                if info.num_pending or info.num_ack_pending:
                    return False
            if self._broadcast_sub is not None:
                info = await self._broadcast_sub.consumer_info()
                delivered = info.delivered.consumer_seq if info.delivered else 0
                if info.num_pending or (delivered or 0) > self._broadcast_seq:
                    return False
        except (nats.js.errors.NotFoundError, *_CONNECTION_ERRORS):
            return False  # reconnecting, or a consumer being re-created: not drained yet
        return True


def _same_consumer(have: ConsumerConfig, want: ConsumerConfig) -> bool:
    """True when an existing consumer matches the wanted filters, ack_wait and max_deliver."""

    def filters(c: ConsumerConfig) -> list[str]:
        return sorted(c.filter_subjects or ([c.filter_subject] if c.filter_subject else []))

    return (
        filters(have) == filters(want)
        and abs((have.ack_wait or 0) - (want.ack_wait or 0)) < 0.001
        and have.max_deliver == want.max_deliver
    )
