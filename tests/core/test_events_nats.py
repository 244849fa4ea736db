"""The JetStream bus against a real NATS server: groups share work, broadcasts reach every bus."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import nats
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from cityplus.core.db import Base, Database
from cityplus.core.events import (
    EVENT_TABLES,
    Event,
    EventJournalEntry,
    EventOutbox,
    Handler,
    event_type,
    journal_handler,
    record,
)
from cityplus.core.events_nats import NatsBus, consumer_name

pytestmark = pytest.mark.nats

NATS_URL = os.environ.get("CITYPLUS_TEST_NATS_URL", "nats://127.0.0.1:4222")
PG_ADMIN_URL = os.environ.get("CITYPLUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI") == "true"


@event_type("test.nats.ping")
@dataclass(frozen=True, kw_only=True)
class NatsPing(Event):
    n: int


@event_type("test.misc.noise")
@dataclass(frozen=True, kw_only=True)
class Noise(Event):
    pass


test_md = MetaData()
handled = Table(
    "evt_nats_handled",
    test_md,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("grp", String(50), nullable=False),
    Column("label", String(10), nullable=False),
    Column("event_id", String(64), nullable=False),
)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def _unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not reachable")


@pytest.fixture(scope="module")
def nats_url() -> str:
    if not _reachable(NATS_URL, 4222):
        _unavailable(f"NATS JetStream at {NATS_URL}")
    return NATS_URL


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway PostgreSQL database (SQLite file when PostgreSQL is not reachable outside CI)."""
    admin_url = make_url(PG_ADMIN_URL)
    if not _reachable(f"pg://{admin_url.host or '127.0.0.1'}:{admin_url.port or 5432}", 5432):
        if IN_CI:
            pytest.fail(f"PostgreSQL at {admin_url.render_as_string(hide_password=True)} is required in CI")
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    name = f"cityplus_evt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def dbs(db_url: str) -> Iterator[list[Database]]:
    """Two handles on one database, as two server processes would have."""
    handles = [Database(db_url), Database(db_url)]
    Base.metadata.create_all(handles[0].engine, tables=list(EVENT_TABLES))
    test_md.create_all(handles[0].engine)
    yield handles
    for h in handles:
        h.dispose()


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[str]:
    name = f"CITYPLUS_TEST_{uuid.uuid4().hex[:12].upper()}"
    yield name
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
async def buses(nats_url: str, stream: str) -> AsyncIterator[list[NatsBus]]:
    made: list[NatsBus] = []
    yield made
    for bus in made:
        await bus.stop()


async def start_bus(
    made: list[NatsBus], db: Database, stream: str, handlers: list[Handler], **options: float
) -> NatsBus:
    bus = NatsBus(
        db,
        NATS_URL,
        stream=stream,
        **{
            "ack_wait": 2.0,
            "max_deliver": 5,
            "nak_delays": (0.1,),
            "fetch_timeout": 1.0,
            "poll_interval": 0.1,
            "retry_delays": (0.01,),
            **options,
        },  # type: ignore[arg-type]
    )
    await bus.start(handlers)
    made.append(bus)
    return bus


def counting(group: str, label: str, *patterns: str, delay: float = 0.0) -> Handler:
    """A group handler writing (group, label, event id) rows: the database shows who handled what."""

    def fn(session: Session, event: Event) -> None:
        session.execute(insert(handled).values(grp=group, label=label, event_id=event.id))
        if delay:
            time.sleep(delay)  # spread the work so both buses pull some

    return Handler(group=group, events=patterns, fn=fn)


def handled_rows(db: Database, group: str) -> list[tuple[str, str]]:
    with db.session() as s:
        return [(r.event_id, r.label) for r in s.execute(select(handled).where(handled.c.grp == group))]


def record_batches(db: Database, events: list[Event], per_tx: int = 10) -> None:
    for i in range(0, len(events), per_tx):
        with db.session() as s:
            for e in events[i : i + per_tx]:
                record(s, e)


async def test_two_buses_share_a_group_and_broadcasts_reach_both(
    dbs: list[Database], stream: str, buses: list[NatsBus]
) -> None:
    db_a, db_b = dbs
    seen: dict[str, list[str]] = {"A": [], "B": []}

    def cache(label: str) -> Handler:
        return Handler(group="test.cache", events=("*",), fn=lambda _s, e: seen[label].append(e.id), broadcast=True)

    bus_a = await start_bus(
        buses,
        db_a,
        stream,
        [
            counting("test.shared", "A", "test.nats.*", delay=0.002),
            counting("test.other", "A", "test.nats.ping"),
            cache("A"),
            journal_handler(),
        ],
    )
    bus_b = await start_bus(
        buses,
        db_b,
        stream,
        [counting("test.shared", "B", "test.nats.*", delay=0.002), cache("B"), journal_handler()],
    )
    pings: list[Event] = [NatsPing(n=i) for i in range(200)]
    noise: list[Event] = [Noise() for _ in range(10)]
    record_batches(db_a, pings[:100] + noise)
    record_batches(db_b, pings[100:])
    await bus_a.drain(timeout=30)
    await bus_b.drain(timeout=30)

    ping_ids = {e.id for e in pings}
    all_ids = ping_ids | {e.id for e in noise}
    shared = handled_rows(db_a, "test.shared")
    assert len(shared) == 200 and {eid for eid, _ in shared} == ping_ids  # each exactly once in total
    assert {label for _, label in shared} == {"A", "B"}  # and both buses did some of the work
    other = handled_rows(db_a, "test.other")
    assert len(other) == 200 and {eid for eid, _ in other} == ping_ids
    with db_a.session() as s:
        assert set(s.scalars(select(EventJournalEntry.event_id))) == all_ids
        assert s.scalar(select(func.count()).where(EventOutbox.published_at.is_(None))) == 0
    assert sorted(seen["A"]) == sorted(seen["B"]) == sorted(all_ids)  # broadcast: every bus, every event
    assert bus_a.health() == (True, "nats")


async def test_failed_handler_is_redelivered_and_handled_once(
    dbs: list[Database], stream: str, buses: list[NatsBus]
) -> None:
    db = dbs[0]
    attempts: dict[str, int] = {}

    def flaky(session: Session, event: Event) -> None:
        attempts[event.id] = attempts.get(event.id, 0) + 1
        session.execute(insert(handled).values(grp="test.flaky", label="A", event_id=event.id))
        if attempts[event.id] == 1:
            raise RuntimeError("first try fails")  # rolled back, nak'd, delivered again

    bus = await start_bus(buses, db, stream, [Handler(group="test.flaky", events=("test.nats.ping",), fn=flaky)])
    events: list[Event] = [NatsPing(n=i) for i in range(3)]
    with capture_logs() as logs:
        record_batches(db, events)
        await bus.drain(timeout=15)
    assert attempts == {e.id: 2 for e in events}
    assert sorted(eid for eid, _ in handled_rows(db, "test.flaky")) == sorted(e.id for e in events)
    failed = [e for e in logs if e["event"] == "event_handler_failed"]
    assert sorted((e["event_id"], e["attempt"], e["final"]) for e in failed) == sorted((e.id, 1, False) for e in events)


async def test_republished_event_is_skipped_by_the_receipt(
    dbs: list[Database], stream: str, buses: list[NatsBus]
) -> None:
    db = dbs[0]
    # A one-second de-duplication window, so the test can outlive it like a long outage would.
    bus = await start_bus(buses, db, stream, [counting("test.once", "A", "test.nats.ping")], duplicate_window=1.0)
    event = NatsPing(n=1)
    record_batches(db, [event])
    await bus.drain()
    # A relay that died after publishing but before marking the row: the row is published again, and
    # after the window JetStream no longer drops it, so the consumer really receives it twice.
    await asyncio.sleep(1.2)
    with capture_logs() as logs:
        with db.session() as s:
            s.execute(update(EventOutbox).values(published_at=None))
        await bus.drain()
        # A third copy under another message id (e.g. published by hand) is skipped as well.
        nc = await nats.connect(NATS_URL)
        try:
            body = json.dumps({"name": event.name, "payload": event.to_payload()}).encode()
            await nc.jetstream().publish(bus.subject_for(event.name), body, headers={"Nats-Msg-Id": "again"})
            messages = (await nc.jetstream().stream_info(stream)).state.messages
        finally:
            await nc.close()
        await bus.drain()
    assert messages == 3  # really delivered three times, not de-duplicated by JetStream
    assert handled_rows(db, "test.once") == [(event.id, "A")]
    assert [e["event_id"] for e in logs if e["event"] == "event_duplicate_skipped"] == [event.id, event.id]


async def test_unknown_and_garbage_messages_do_not_stop_the_consumer(
    dbs: list[Database], stream: str, buses: list[NatsBus]
) -> None:
    db = dbs[0]
    bus = await start_bus(buses, db, stream, [counting("test.any", "A", "*")])
    good = NatsPing(n=7)
    with capture_logs() as logs:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            future = {"name": "test.nats.from_the_future", "payload": {"id": "f1"}}
            await js.publish(bus.subject_for("test.nats.from_the_future"), json.dumps(future).encode())
            await js.publish(bus.subject_for("test.nats.garbage"), b"\x00not json")
        finally:
            await nc.close()
        record_batches(db, [good])
        await bus.drain(timeout=10)
    assert handled_rows(db, "test.any") == [(good.id, "A")]
    names = [e["event"] for e in logs]
    # Garbage is dropped at once; an unknown type goes back to the group (another process may know it)
    # until max_deliver, then it is dropped too.
    assert names.count("event_decode_failed") == 1
    assert names.count("event_unknown_type") == 5
    assert bus.health() == (True, "nats")


async def test_durable_group_catches_up_after_a_restart(dbs: list[Database], stream: str, buses: list[NatsBus]) -> None:
    db = dbs[0]
    first = await start_bus(buses, db, stream, [counting("test.durable", "1", "test.nats.*")])
    early = NatsPing(n=1)
    record_batches(db, [early])
    await first.drain()
    await first.stop()
    assert first.health() == (False, "nats (not running)")
    # Recorded while no process runs a bus: stays in the outbox until the next start publishes it.
    late = [NatsPing(n=i) for i in range(2, 7)]
    record_batches(db, list(late))
    second = await start_bus(buses, db, stream, [counting("test.durable", "2", "test.nats.*")])
    await second.drain()
    assert sorted(handled_rows(db, "test.durable")) == sorted([(early.id, "1"), *((e.id, "2") for e in late)])
    nc = await nats.connect(NATS_URL)
    try:
        info = await nc.jetstream().consumer_info(stream, consumer_name("test.durable"))
    finally:
        await nc.close()
    assert info.config.filter_subject == bus_subject(stream, "test.nats.>")
    assert info.config.durable_name == "test_durable"


def bus_subject(stream: str, suffix: str) -> str:
    return f"{stream.lower()}.events.{suffix}"


class PrivateNats:
    """A nats-server of this test's own (free port, own store), so it can be stopped and restarted."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.skip("nats-server binary not installed (needed to restart a server)")
        self.binary = binary
        self.store = store
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _reachable(self.url, self.port):
            assert time.monotonic() < deadline, "private nats-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_nats(tmp_path: Path, nats_url: str) -> Iterator[PrivateNats]:
    server = PrivateNats(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_bus_survives_a_nats_restart(dbs: list[Database], private_nats: PrivateNats) -> None:
    db = dbs[0]
    seen: list[str] = []
    bus = NatsBus(
        db,
        private_nats.url,
        stream="CITYPLUS_RESTART",
        ack_wait=2.0,
        nak_delays=(0.1,),
        fetch_timeout=1.0,
        poll_interval=0.1,
        connect_timeout=1.0,
        broadcast_heartbeat=0.5,
    )
    handlers = [
        counting("test.restart", "A", "test.nats.*"),
        Handler(group="test.cache", events=("*",), fn=lambda _s, e: seen.append(e.id), broadcast=True),
    ]
    await bus.start(handlers)
    try:
        before = [NatsPing(n=i) for i in range(5)]
        record_batches(db, list(before))
        await bus.drain(timeout=10)

        private_nats.stop()
        await wait_for(lambda: bus.health() == (False, "nats (disconnected)"), 10, "the bus to notice")
        during: list[Event] = [NatsPing(n=i) for i in range(5, 10)]
        with capture_logs() as logs:
            record_batches(db, during)  # committed while NATS is down: they wait in the outbox
            await asyncio.sleep(0.5)
            private_nats.start()
            await wait_for(lambda: bus.health() == (True, "nats"), 15, "the bus to reconnect")
            await bus.drain(timeout=20)
        assert "event_bus_reconnected" in [e["event"] for e in logs]
        ids = sorted(e.id for e in [*before, *during])
        assert sorted(eid for eid, _ in handled_rows(db, "test.restart")) == ids  # each once, none lost
        await wait_for(lambda: len(seen) >= len(ids), 10, "broadcasts after the restart")
        assert sorted(seen) == ids
    finally:
        await bus.stop()
