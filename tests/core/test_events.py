"""Typed events, the outbox and the in-process bus on SQLite."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from cityplus.core.config import load_settings
from cityplus.core.db import Base, Database
from cityplus.core.events import (
    CORE_HANDLERS,
    EVENT_TABLES,
    JOURNAL_GROUP,
    Event,
    EventJournalEntry,
    EventOutbox,
    EventReceipt,
    Handler,
    event_type,
    lookup_event_type,
    pattern_matches,
    process_identity,
    recent_events,
    record,
)
from cityplus.core.events_bus import InProcessBus, create_bus
from cityplus.core.events_nats import NatsBus


class Level(StrEnum):
    GOOD = "good"
    HAZARDOUS = "hazardous"


@dataclass(frozen=True)
class Station:
    code: str
    installed: date


@event_type("test.inproc.ping")
@dataclass(frozen=True, kw_only=True)
class Ping(Event):
    n: int


@event_type("test.inproc.other")
@dataclass(frozen=True, kw_only=True)
class Other(Event):
    label: str = ""


@event_type("test.side.thing")
@dataclass(frozen=True, kw_only=True)
class SideThing(Event):
    pass


@event_type("test.inproc.aqi_alert_raised")
@dataclass(frozen=True, kw_only=True)
class AqiAlert(Event):
    station: Station
    level: Level
    aqi: Decimal
    measured_at: datetime
    ref: UUID
    tags: tuple[str, ...]
    limits: dict[str, int]
    note: str | None = None
    until: datetime | None = None


# A table the test handlers write to, so "handled once" is checked in the database, not in memory.
test_md = MetaData()
handled = Table(
    "evt_test_handled",
    test_md,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("grp", String(50), nullable=False),
    Column("event_id", String(64), nullable=False),
)


def writer(group: str) -> Handler:
    """A group handler that inserts one row per run."""

    def fn(session: Session, event: Event) -> None:
        session.execute(insert(handled).values(grp=group, event_id=event.id))

    return Handler(group=group, events=("test.inproc.*",), fn=fn)


def rows(db: Database, group: str) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(handled.c.event_id).where(handled.c.grp == group).order_by(handled.c.id)))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'events.db'}")
    Base.metadata.create_all(database.engine, tables=list(EVENT_TABLES))
    test_md.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
async def make_bus(db: Database) -> AsyncIterator[list[InProcessBus]]:
    """Buses created by a test, stopped afterwards even when the test fails."""
    buses: list[InProcessBus] = []
    yield buses
    for bus in buses:
        await bus.stop()


async def started(buses: list[InProcessBus], db: Database, handlers: list[Handler], **kw: object) -> InProcessBus:
    options: dict[str, object] = {"poll_interval": 0.05, "retry_delays": (0.01, 0.01, 0.01)} | kw
    bus = InProcessBus(db, **options)  # type: ignore[arg-type]
    await bus.start(handlers)
    buses.append(bus)
    return bus


def record_all(db: Database, *events: Event) -> None:
    with db.session() as s:
        for e in events:
            record(s, e)


async def test_record_then_drain_runs_group_handler_once(db: Database, make_bus: list[InProcessBus]) -> None:
    bus = await started(make_bus, db, [writer("test.a"), *CORE_HANDLERS])
    events = [Ping(n=i) for i in range(5)]
    record_all(db, *events)
    await bus.drain()
    assert rows(db, "test.a") == [e.id for e in events]
    with db.session() as s:
        assert s.scalar(select(func.count()).where(EventOutbox.published_at.is_(None))) == 0
        assert set(s.scalars(select(EventReceipt.event_id).where(EventReceipt.group == "test.a"))) == {
            e.id for e in events
        }
        journal = {j.event_id: j for j in s.scalars(select(EventJournalEntry))}
    assert set(journal) == {e.id for e in events}
    assert journal[events[0].id].handled_by == process_identity()
    assert journal[events[0].id].payload["n"] == 0


async def test_commit_wakes_the_relay_without_polling(db: Database, make_bus: list[InProcessBus]) -> None:
    # A 60 s poll interval: only the after-commit wake can deliver within the wait below.
    await started(make_bus, db, [writer("test.a")], poll_interval=60)
    await asyncio.sleep(0.1)  # let the start-up pass finish so the relay is waiting
    event = Ping(n=1)
    await asyncio.to_thread(record_all, db, event)  # commit in another thread, as sync endpoints do
    for _ in range(100):
        if rows(db, "test.a"):
            break
        await asyncio.sleep(0.02)
    assert rows(db, "test.a") == [event.id]


async def test_rollback_means_no_event(db: Database, make_bus: list[InProcessBus]) -> None:
    bus = await started(make_bus, db, [writer("test.a")])
    with pytest.raises(RuntimeError), db.session() as s:
        record(s, Ping(n=1))
        s.flush()
        raise RuntimeError("state change failed")
    await bus.drain()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(EventOutbox)) == 0
    assert rows(db, "test.a") == []


async def test_redelivery_is_skipped_by_the_receipt(db: Database, make_bus: list[InProcessBus]) -> None:
    bus = await started(make_bus, db, [writer("test.a"), writer("test.b")])
    event = Ping(n=1)
    record_all(db, event)
    await bus.drain()
    # A relay that died between delivering and marking: the row is unpublished again.
    with db.session() as s:
        s.execute(update(EventOutbox).values(published_at=None))
    with capture_logs() as logs:
        await bus.drain()
    assert rows(db, "test.a") == [event.id]
    assert rows(db, "test.b") == [event.id]
    assert {entry["group"] for entry in logs if entry["event"] == "event_duplicate_skipped"} == {"test.a", "test.b"}


async def test_failing_handler_is_retried_then_handled_once(db: Database, make_bus: list[InProcessBus]) -> None:
    calls: list[str] = []

    def flaky(session: Session, event: Event) -> None:
        calls.append(event.id)
        session.execute(insert(handled).values(grp="test.flaky", event_id=event.id))
        if len(calls) <= 2:
            raise RuntimeError("downstream not ready")  # the row above must be rolled back

    bus = await started(make_bus, db, [Handler(group="test.flaky", events=("test.inproc.ping",), fn=flaky)])
    event = Ping(n=1)
    record_all(db, event)
    with capture_logs() as logs:
        await bus.drain()
    assert calls == [event.id] * 3
    assert rows(db, "test.flaky") == [event.id]
    failures = [e for e in logs if e["event"] == "event_handler_failed"]
    assert [(e["attempt"], e["final"]) for e in failures] == [(1, False), (2, False)]


async def test_handler_that_always_fails_is_given_up_and_relay_keeps_going(
    db: Database, make_bus: list[InProcessBus]
) -> None:
    def broken(session: Session, event: Event) -> None:
        if isinstance(event, Ping) and event.n == 1:
            raise ValueError("bad data")
        session.execute(insert(handled).values(grp="test.broken", event_id=event.id))

    bus = await started(make_bus, db, [Handler(group="test.broken", events=("test.inproc.ping",), fn=broken)])
    bad, good = Ping(n=1), Ping(n=2)
    record_all(db, bad, good)
    with capture_logs() as logs:
        await bus.drain()
    final = [e for e in logs if e["event"] == "event_handler_failed" and e["final"]]
    assert [(e["event_id"], e["attempt"], e["log_level"]) for e in final] == [(bad.id, 4, "error")]
    assert rows(db, "test.broken") == [good.id]
    with db.session() as s:  # no receipt for the failed event: a replay would try it again
        assert list(s.scalars(select(EventReceipt.event_id))) == [good.id]
    record_all(db, Ping(n=3))
    await bus.drain()
    assert len(rows(db, "test.broken")) == 2


async def test_broadcast_handlers_get_every_event(db: Database, make_bus: list[InProcessBus]) -> None:
    seen: dict[str, list[str]] = {"x": [], "y": []}

    def cache(key: str) -> Handler:
        return Handler(
            group=f"test.cache-{key}", events=("*",), fn=lambda _s, e: seen[key].append(e.id), broadcast=True
        )

    bus = await started(make_bus, db, [cache("x"), cache("y"), writer("test.a")])
    events = [Ping(n=1), Other(label="o"), SideThing()]
    record_all(db, *events)
    await bus.drain()
    assert seen["x"] == seen["y"] == [e.id for e in events]
    assert rows(db, "test.a") == [events[0].id, events[1].id]  # the group handler only wants test.inproc.*


def test_pattern_matching_and_validation() -> None:
    assert pattern_matches("*", "a.b")
    assert pattern_matches("test.inproc.*", "test.inproc.ping")
    assert pattern_matches("test.*", "test.inproc.ping")
    assert not pattern_matches("test.inproc.*", "test.inprocx.ping")
    assert not pattern_matches("test.inproc.*", "test.inproc")
    assert pattern_matches("test.inproc.ping", "test.inproc.ping")
    assert not pattern_matches("test.inproc.ping", "test.inproc.pingx")
    for bad in ("test.inproc.p*", "a.*.b", "", "A.b", "test..x", "test.>"):
        with pytest.raises(ValueError):
            Handler(group="g", events=(bad,), fn=lambda _s, _e: None)
    with pytest.raises(TypeError):
        Handler(group="g", events="a.b", fn=lambda _s, _e: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Handler(group="bad group", events=("a.b",), fn=lambda _s, _e: None)


async def test_wildcard_dispatch(db: Database, make_bus: list[InProcessBus]) -> None:
    got: dict[str, list[str]] = {}

    def collect(group: str, *patterns: str) -> Handler:
        return Handler(group=group, events=patterns, fn=lambda _s, e: got.setdefault(group, []).append(e.name))

    bus = await started(
        make_bus,
        db,
        [
            collect("all", "*"),
            collect("inproc", "test.inproc.*"),
            collect("test", "test.*"),
            collect("exact", "test.inproc.other", "test.side.thing"),
        ],
    )
    record_all(db, Ping(n=1), Other(), SideThing())
    await bus.drain()
    assert got == {
        "all": ["test.inproc.ping", "test.inproc.other", "test.side.thing"],
        "inproc": ["test.inproc.ping", "test.inproc.other"],
        "test": ["test.inproc.ping", "test.inproc.other", "test.side.thing"],
        "exact": ["test.inproc.other", "test.side.thing"],
    }


async def test_unknown_event_name_is_logged_and_skipped(db: Database, make_bus: list[InProcessBus]) -> None:
    bus = await started(make_bus, db, [writer("test.a")])
    now = datetime.now(UTC)
    with db.session() as s:
        # Written by a process that knows a module this one does not; also a payload that no longer decodes.
        s.add(EventOutbox(id="unknown-1", name="test.inproc.nobody_knows", payload={}, occurred_at=now))
        s.add(EventOutbox(id="broken-1", name="test.inproc.ping", payload={"n": 1, "bogus": 1}, occurred_at=now))
    good = Ping(n=2)
    record_all(db, good)
    with capture_logs() as logs:
        await bus.drain()
    names = [e["event"] for e in logs]
    assert "event_unknown_type" in names
    assert rows(db, "test.a") == ["broken-1", good.id]  # extra keys are ignored (newer producer)
    with db.session() as s:
        assert s.scalar(select(func.count()).where(EventOutbox.published_at.is_(None))) == 0

    with db.session() as s:
        s.add(EventOutbox(id="broken-2", name="test.inproc.ping", payload={"id": "broken-2"}, occurred_at=now))
    with capture_logs() as logs:
        await bus.drain()
    assert [e["event_id"] for e in logs if e["event"] == "event_decode_failed"] == ["broken-2"]
    assert bus.running


def test_typed_event_payload_round_trip() -> None:
    event = AqiAlert(
        station=Station(code="CD-01", installed=date(2015, 3, 1)),
        level=Level.HAZARDOUS,
        aqi=Decimal("301.5"),
        measured_at=datetime(2016, 1, 2, 3, 4, 5, tzinfo=UTC),
        ref=uuid4(),
        tags=("pm25", "winter"),
        limits={"pm25": 75},
        until=datetime(2016, 1, 3, tzinfo=UTC),
    )
    payload = event.to_payload()
    wire = json.loads(json.dumps(payload))  # JSON-safe
    assert wire["occurred_at"] == event.occurred_at.isoformat()
    assert wire["level"] == "hazardous" and wire["aqi"] == "301.5"
    assert wire["station"] == {"code": "CD-01", "installed": "2015-03-01"}
    back = lookup_event_type("test.inproc.aqi_alert_raised").from_payload(wire)
    assert back == event
    assert isinstance(back, AqiAlert) and back.occurred_at.tzinfo is not None
    assert event.name == AqiAlert.name == "test.inproc.aqi_alert_raised"
    assert len(event.id) == 32 and event.id != Ping(n=1).id


def test_event_ids_are_time_ordered_and_unique() -> None:
    ids = [Ping(n=i).id for i in range(2000)]
    assert len(set(ids)) == 2000
    assert UUID(ids[0]).version == 7
    assert ids == sorted(ids)  # increasing within a process: the outbox keeps record order


def test_event_type_registry_rules() -> None:
    with pytest.raises(ValueError, match="already used"):

        @event_type("test.inproc.ping")
        @dataclass(frozen=True, kw_only=True)
        class PingAgain(Event):
            pass

    assert lookup_event_type("test.inproc.ping") is Ping
    with pytest.raises(ValueError):
        event_type("NoDots")
    with pytest.raises(TypeError):

        @event_type("test.inproc.mutable")
        @dataclass(kw_only=True)
        class Mutable(Event):  # not frozen: events are immutable facts
            pass

    with pytest.raises(KeyError):
        lookup_event_type("test.inproc.never_registered")
    with pytest.raises(ValueError):
        Ping(n=1, occurred_at=datetime(2016, 1, 1))  # naive


def test_record_rejects_unregistered_events(db: Database) -> None:
    @dataclass(frozen=True, kw_only=True)
    class Loose(Event):
        pass

    @dataclass(frozen=True, kw_only=True)
    class PingChild(Ping):  # inherits Ping.name but is not Ping
        pass

    with db.session() as s:
        for bad in (Loose(), PingChild(n=1)):
            with pytest.raises(ValueError, match="not registered"):
                record(s, bad)


async def test_duplicate_group_is_rejected(db: Database) -> None:
    bus = InProcessBus(db)
    with pytest.raises(ValueError, match="share the consumer group"):
        await bus.start([writer("test.a"), writer("test.a")])
    assert not bus.running


def test_recent_events_filters_and_pages(db: Database) -> None:
    base = datetime(2016, 5, 1, tzinfo=UTC)
    with db.session() as s:
        for i, name in enumerate(["environment.aqi_alert_raised", "identity.user_created", "environment.x"]):
            s.add(
                EventJournalEntry(
                    event_id=f"e{i}",
                    name=name,
                    payload={},
                    occurred_at=base + timedelta(minutes=i),
                    handled_at=base,
                    handled_by="h:1",
                )
            )
    with db.session() as s:
        assert [e.event_id for e in recent_events(s, limit=10)] == ["e2", "e1", "e0"]
        assert [e.event_id for e in recent_events(s, name_prefix="environment.", limit=10)] == ["e2", "e0"]
        assert [e.event_id for e in recent_events(s, limit=1)] == ["e2"]
        page2 = recent_events(s, limit=10, before=base + timedelta(minutes=2))
        assert [e.event_id for e in page2] == ["e1", "e0"]
        assert recent_events(s, name_prefix="environment_", limit=10) == []  # '_' is not a LIKE wildcard


async def test_create_bus_picks_the_transport(db: Database) -> None:
    assert isinstance(create_bus(load_settings(bus_url=""), db), InProcessBus)
    assert isinstance(create_bus(load_settings(bus_url="memory://"), db), InProcessBus)
    bus = create_bus(load_settings(bus_url="nats://127.0.0.1:4222"), db)
    assert isinstance(bus, NatsBus) and bus.stream == "CITYPLUS" and bus.subject_prefix == "cityplus"
    assert bus.subject_for("identity.user_created") == "cityplus.events.identity.user_created"
    assert bus.filter_for("identity.*") == "cityplus.events.identity.>"
    assert bus.filter_for("*") == "cityplus.events.>"
    assert CORE_HANDLERS[0].group == JOURNAL_GROUP


async def test_wake_is_thread_safe_and_stop_is_idempotent(db: Database) -> None:
    bus = InProcessBus(db, poll_interval=60)
    bus.wake()  # not started: a no-op
    assert bus.health() == (False, "in-process")
    await bus.start([writer("test.a")])
    assert bus.health() == (True, "in-process")
    record_all(db, Ping(n=1))
    threads = [threading.Thread(target=bus.wake) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    await bus.drain()
    await bus.stop()
    await bus.stop()
    bus.wake()
    assert bus.health() == (False, "in-process")
    assert len(rows(db, "test.a")) == 1
