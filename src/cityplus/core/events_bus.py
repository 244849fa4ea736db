"""Event buses: the outbox relay every process runs, and the in-process bus (NATS JetStream: events_nats)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cityplus.core.db import Database, utcnow
from cityplus.core.events import (
    _LIVE_BUSES,
    _LIVE_LOCK,
    Event,
    EventOutbox,
    Handler,
    _check_handlers,
    decode_event,
    handle_broadcast,
    handle_in_group,
    log,
    log_handler_failure,
)

if TYPE_CHECKING:
    from cityplus.core.config import Settings


class EventBus(ABC):
    """Delivers recorded events to handlers; in-process or over NATS JetStream, handlers cannot tell."""

    @abstractmethod
    async def start(self, handlers: Sequence[Handler]) -> None:
        """Subscribe the handlers and start the outbox relay."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop relaying and consuming; in-flight handlers finish first."""

    @abstractmethod
    def wake(self) -> None:
        """Hint that the outbox has new rows; callable from any thread."""

    @abstractmethod
    async def drain(self, timeout: float = 5.0) -> None:
        """Publish everything pending and wait until local delivery is done (TimeoutError otherwise)."""

    @abstractmethod
    def health(self) -> tuple[bool, str]:
        """(ok, kind) for readiness checks: whether the bus can deliver now, and which transport it is."""


class _OutboxItem(NamedTuple):
    id: str
    name: str
    payload: dict[str, Any]
    occurred_at: datetime


class _Claim:
    """A batch of unpublished outbox rows; on PostgreSQL they stay row-locked until finish()/abort()."""

    def __init__(self, db: Database, limit: int) -> None:
        self.db = db
        self.session: Session | None = None
        stmt = (
            select(EventOutbox.id, EventOutbox.name, EventOutbox.payload, EventOutbox.occurred_at)
            .where(EventOutbox.published_at.is_(None))
            .order_by(EventOutbox.created_at, EventOutbox.id)
            .limit(limit)
        )
        if db.is_sqlite:
            # No row locks on SQLite, and holding its write lock would block the handlers' transactions;
            # a second process may then publish a row twice, which receipts and Nats-Msg-Id absorb. A read-only
            # (deferred) transaction: BEGIN IMMEDIATE for this SELECT took the write lock every poll and made busy
            # writers (the device gateway's batches) wait in SQLite's busy handler.
            with db.session(readonly=True) as session:
                self.items = [_OutboxItem(*row) for row in session.execute(stmt)]
            return
        self.session = db.sessionmaker()
        try:
            self.session.begin()
            # SKIP LOCKED: other processes' relays take the next rows instead of publishing these again.
            stmt = stmt.with_for_update(skip_locked=True)
            self.items = [_OutboxItem(*row) for row in self.session.execute(stmt)]
        except BaseException:
            self.abort()
            raise

    def finish(self, ids: Sequence[str]) -> None:
        """Mark the given rows published and release the claim."""
        stmt = (
            update(EventOutbox)
            .where(EventOutbox.id.in_(list(ids)), EventOutbox.published_at.is_(None))
            .values(published_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if self.session is None:
            if ids:
                with self.db.session() as session:
                    session.execute(stmt)
            return
        try:
            if ids:
                self.session.execute(stmt)
            self.session.commit()
        finally:
            self.session.close()
            self.session = None

    def abort(self) -> None:
        """Release the claim without marking anything."""
        if self.session is not None:
            try:
                self.session.rollback()
            finally:
                self.session.close()
                self.session = None


def count_unpublished(db: Database) -> int:
    """How many outbox rows no relay has published yet."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).where(EventOutbox.published_at.is_(None))) or 0)


class OutboxRelayBus(EventBus):
    """Shared machinery: the relay task that claims outbox rows and hands them to _deliver()."""

    def __init__(
        self,
        db: Database,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        retry_delays: Sequence[float] = (0.1, 0.5, 2.0),
    ) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.retry_delays = tuple(retry_delays)
        self.handlers: tuple[Handler, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_event: asyncio.Event | None = None
        self._relay_lock: asyncio.Lock | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._relay_task is not None

    async def start(self, handlers: Sequence[Handler]) -> None:
        """Subscribe the handlers and start the relay task."""
        if self._relay_task is not None:
            raise RuntimeError("event bus already started")
        self.handlers = _check_handlers(handlers)
        self._loop = asyncio.get_running_loop()
        self._wake_event = asyncio.Event()
        self._relay_lock = asyncio.Lock()
        self._stopping = False
        await self._start_transport()
        self._relay_task = asyncio.create_task(self._relay_loop(), name="cityplus-event-relay")
        with _LIVE_LOCK:
            _LIVE_BUSES.add(self)
        self._wake_event.set()  # rows left over from a previous run

    async def stop(self) -> None:
        """Let the current relay pass finish, then stop the transport."""
        task = self._relay_task
        if task is None:
            return
        with _LIVE_LOCK:
            _LIVE_BUSES.discard(self)
        self._stopping = True
        assert self._wake_event is not None
        self._wake_event.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=30)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._relay_task = None
        await self._stop_transport()

    def wake(self) -> None:
        """Wake the relay (thread-safe; a no-op when not running)."""
        loop, evt = self._loop, self._wake_event
        if loop is None or evt is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            evt.set()
            return
        with contextlib.suppress(RuntimeError):  # loop closed between the check and the call
            loop.call_soon_threadsafe(evt.set)

    async def drain(self, timeout: float = 5.0) -> None:
        """Relay until the outbox is empty, then wait for the transport to finish local delivery."""
        if self._relay_task is None or self._loop is None:
            raise RuntimeError("event bus not started")
        deadline = self._loop.time() + timeout
        while True:
            claimed = await self._relay_pass()
            if claimed == 0 and await asyncio.to_thread(count_unpublished, self.db) == 0:
                break
            if self._loop.time() > deadline:
                raise TimeoutError("outbox still has unpublished events")
            if claimed == 0:  # rows claimed by another process's relay: wait for it
                await asyncio.sleep(0.05)
        await self._drain_transport(deadline)

    async def _relay_loop(self) -> None:
        assert self._wake_event is not None
        failures = 0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_event.wait(), timeout=self.poll_interval)
            # Cleared before the pass, so a wake() during the pass triggers another pass at once.
            self._wake_event.clear()
            if self._stopping:
                break
            try:
                while not self._stopping and await self._relay_pass() >= self.batch_size:
                    pass
                failures = 0
            except Exception:
                failures += 1
                log.error("event_relay_failed", failures=failures, exc_info=True)
                await self._sleep(min(30.0, 0.5 * 2**failures))

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, seconds))

    async def _relay_pass(self) -> int:
        """Claim one batch, deliver it and mark what was delivered; returns the batch size."""
        assert self._relay_lock is not None
        async with self._relay_lock:
            claim = await asyncio.to_thread(_Claim, self.db, self.batch_size)
            try:
                done = await self._deliver(claim.items) if claim.items else []
            except BaseException:
                await asyncio.to_thread(claim.abort)
                raise
            await asyncio.to_thread(claim.finish, done)
            for item_id in done:
                log.debug("event_published", event_id=item_id)
            return len(claim.items)

    async def run_with_retries(self, handler: Handler, event: Event) -> None:
        """Run a handler here, retrying with backoff; after the last attempt log and give up."""
        run = handle_broadcast if handler.broadcast else handle_in_group
        attempts = len(self.retry_delays) + 1
        for attempt in range(1, attempts + 1):
            try:
                ran = await asyncio.to_thread(run, self.db, handler, event)
            except Exception:
                final = attempt == attempts
                log_handler_failure(handler, event, attempt, final)
                if final:
                    return
                await asyncio.sleep(self.retry_delays[attempt - 1])
                continue
            # A skipped duplicate is rare and worth seeing (redelivery); routine success is debug.
            (log.debug if ran else log.info)(
                "event_handled" if ran else "event_duplicate_skipped",
                group=handler.group,
                event_name=event.name,
                event_id=event.id,
                attempt=attempt,
            )
            return

    async def _start_transport(self) -> None:
        """Connect and subscribe (nothing to do in-process)."""

    async def _stop_transport(self) -> None:
        """Unsubscribe and disconnect (nothing to do in-process)."""

    async def _drain_transport(self, deadline: float) -> None:
        """Wait until the transport has delivered what was published (nothing to do in-process)."""

    @abstractmethod
    async def _deliver(self, items: Sequence[_OutboxItem]) -> list[str]:
        """Deliver claimed rows; returns the ids that count as published."""


class InProcessBus(OutboxRelayBus):
    """The default bus: the relay calls the matching handlers of this process directly."""

    def health(self) -> tuple[bool, str]:
        """Ready while the relay task is alive."""
        task = self._relay_task
        return task is not None and not task.done(), "in-process"

    async def _deliver(self, items: Sequence[_OutboxItem]) -> list[str]:
        for item in items:
            event = decode_event(item.name, item.payload, item.id)
            if event is None:
                continue  # logged; marked published so it does not block the outbox forever
            for handler in self.handlers:
                if handler.matches(item.name):
                    await self.run_with_retries(handler, event)
        return [item.id for item in items]


def create_bus(settings: Settings, db: Database, **options: Any) -> EventBus:
    """InProcessBus for an empty or memory:// bus_url, otherwise NatsBus (JetStream)."""
    url = settings.bus_url
    if not url or url.startswith("memory://"):
        return InProcessBus(db, **options)
    from cityplus.core.events_nats import NatsBus

    options.setdefault("stream", settings.bus_stream)
    return NatsBus(db, url, **options)


