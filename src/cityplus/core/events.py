"""Typed domain events: the event model, the transactional outbox, group handlers with receipts, the journal.

The buses that deliver them live in events_bus (in-process) and events_nats (NATS JetStream)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import types
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from enum import Enum
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Literal,
    Self,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

import structlog
from sqlalchemy import CursorResult, Executable, String, delete, select
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from cityplus.core.db import Base, Database, JSONType, UTCDateTime, utcnow

if TYPE_CHECKING:
    from cityplus.core.events_bus import OutboxRelayBus

log = structlog.get_logger("cityplus.events")

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_PREFIX_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,119}")

E = TypeVar("E", bound="Event")


# --------------------------------------------------------------------------------------------- events


_ID_LOCK = threading.Lock()
_id_clock = [0, 0]  # last millisecond, counter within it


def _new_event_id() -> str:
    """A UUIDv7 hex string: unique, and increasing within a process (RFC 9562 counter)."""
    with _ID_LOCK:
        ms = time.time_ns() // 1_000_000
        last_ms, counter = _id_clock
        if ms <= last_ms:  # same millisecond (or the clock went back): count on from the last id
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
        else:
            counter = 0
        _id_clock[:] = [ms, counter]
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0x2 << 62 | rand
    return uuid.UUID(int=value).hex


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every domain event; subclasses are frozen kw_only dataclasses decorated with @event_type."""

    name: ClassVar[str]
    id: str = field(default_factory=_new_event_id)
    occurred_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > 64:
            raise ValueError("event id must be 1-64 characters")
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe dict of every field (datetimes as ISO 8601)."""
        return {f.name: _encode(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild the event from to_payload() output; unknown keys are ignored (newer producers)."""
        hints = _field_types(cls)
        kwargs = {
            f.name: _decode(hints.get(f.name, Any), data[f.name]) for f in fields(cls) if f.init and f.name in data
        }
        return cls(**kwargs)


def _encode(value: Any) -> Any:
    if isinstance(value, Enum):
        return _encode(value.value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_encode(v) for v in value), key=repr)  # sorted so equal events give equal payloads
    raise TypeError(f"cannot put a {type(value).__name__} into an event payload")


_HINTS: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        try:
            hints = get_type_hints(cls)
        except (NameError, TypeError):  # annotations naming function-local types: keep raw JSON values
            hints = {}
        _HINTS[cls] = hints
    return hints


def _decode(tp: Any, value: Any) -> Any:
    if value is None or tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in (a for a in get_args(tp) if a is not type(None)):
            try:
                return _decode(arg, value)
            except (TypeError, ValueError):
                continue
        return value
    if origin is Literal:
        return value
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        if args:
            return tuple(_decode(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if origin in (list, set, frozenset):
        (arg,) = get_args(tp) or (Any,)
        return origin(_decode(arg, v) for v in value)
    if origin is dict:
        _, val_tp = get_args(tp) or (Any, Any)
        return {k: _decode(val_tp, v) for k, v in value.items()}
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            return tp(value)
        if tp is datetime:
            return datetime.fromisoformat(value)
        if tp is date:
            return date.fromisoformat(value)
        if tp is dtime:
            return dtime.fromisoformat(value)
        if tp in (uuid.UUID, Decimal):
            return tp(value)
        if is_dataclass(tp):
            hints = _field_types(tp)
            return tp(**{f.name: _decode(hints.get(f.name, Any), value[f.name]) for f in fields(tp) if f.name in value})
    return value


_TYPES: dict[str, type[Event]] = {}
_TYPES_LOCK = threading.Lock()


def event_type(name: str) -> Callable[[type[E]], type[E]]:
    """Class decorator (put above @dataclass): name the event and register it process-wide."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"event name {name!r} must be dotted lower_snake_case, e.g. 'identity.user_created'")

    def register(cls: type[E]) -> type[E]:
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            raise TypeError(f"@event_type({name!r}) needs a subclass of Event")
        params = cls.__dict__.get("__dataclass_params__")
        if params is None or not params.frozen:
            raise TypeError(f"{cls.__qualname__} must be decorated with @dataclass(frozen=True, kw_only=True)")
        with _TYPES_LOCK:
            existing = _TYPES.get(name)
            # The same class re-imported (module reload) may take its slot back; anything else is a clash.
            same = existing is not None and (existing.__module__, existing.__qualname__) == (
                cls.__module__,
                cls.__qualname__,
            )
            if existing is not None and existing is not cls and not same:
                raise ValueError(f"event name {name!r} already used by {existing.__module__}.{existing.__qualname__}")
            if "name" in cls.__dict__ and cls.__dict__["name"] != name:
                raise ValueError(f"{cls.__qualname__} is already registered as {cls.__dict__['name']!r}")
            cls.name = name
            _TYPES[name] = cls
        return cls

    return register


def lookup_event_type(name: str) -> type[Event]:
    """The event class registered under name (KeyError when this process does not know it)."""
    with _TYPES_LOCK:
        return _TYPES[name]


# ------------------------------------------------------------------------------------------- handlers


def _check_pattern(pattern: str) -> None:
    if pattern == "*" or _NAME_RE.fullmatch(pattern):
        return
    if pattern.endswith(".*") and _PREFIX_RE.fullmatch(pattern[:-2]):
        return
    raise ValueError(f"event pattern {pattern!r} must be an event name, 'prefix.*' or '*'")


def pattern_matches(pattern: str, name: str) -> bool:
    """True when an event name matches a handler pattern ('*' = all, 'a.*' = everything under a.)."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return name == pattern


@dataclass(frozen=True)
class Handler:
    """A module's reaction to events: runs in a DB transaction, once per group (everywhere if broadcast)."""

    group: str
    events: tuple[str, ...]
    fn: Callable[[Session, Event], None]
    broadcast: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.events, str):
            raise TypeError("Handler.events is a tuple of names/patterns, not a string")
        object.__setattr__(self, "events", tuple(self.events))
        if not self.events:
            raise ValueError(f"handler group {self.group!r} listens to no events")
        for pattern in self.events:
            _check_pattern(pattern)
        if not _GROUP_RE.fullmatch(self.group):
            raise ValueError(f"handler group {self.group!r} must be 1-120 of [A-Za-z0-9_.-]")

    def matches(self, name: str) -> bool:
        """True when this handler wants events with this name."""
        return any(pattern_matches(p, name) for p in self.events)


def _check_handlers(handlers: Sequence[Handler]) -> tuple[Handler, ...]:
    seen: set[str] = set()
    for h in handlers:
        if h.broadcast:
            continue
        # Two handlers in one group would share one receipt, so the second would silently never run.
        if h.group in seen:
            raise ValueError(f"two handlers share the consumer group {h.group!r}")
        seen.add(h.group)
    return tuple(handlers)


# --------------------------------------------------------------------------------------------- tables


class EventOutbox(Base):
    """Events recorded in the same transaction as the state change; the relay publishes them."""

    __tablename__ = "core_event_outbox"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class EventReceipt(Base):
    """One row per (group, event) handled: makes group handlers idempotent under redelivery."""

    __tablename__ = "core_event_receipts"

    group: Mapped[str] = mapped_column(String(120), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class EventJournalEntry(Base):
    """The platform's journal of every event, written by the core.event-journal group."""

    __tablename__ = "core_event_journal"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    handled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    handled_by: Mapped[str] = mapped_column(String(255))


JournalEntry = EventJournalEntry
EVENT_TABLES = (EventOutbox.__table__, EventReceipt.__table__, EventJournalEntry.__table__)


# --------------------------------------------------------------------------------------------- record

_PENDING_KEY = "cityplus.events.pending"
_HOOKED_KEY = "cityplus.events.hooked"
_LIVE_BUSES: weakref.WeakSet[OutboxRelayBus] = weakref.WeakSet()  # the running buses of this process
_LIVE_LOCK = threading.Lock()


def _wake_live_buses() -> None:
    with _LIVE_LOCK:
        buses = list(_LIVE_BUSES)
    for bus in buses:
        bus.wake()


def _after_commit(session: Session) -> None:
    if session.info.pop(_PENDING_KEY, False):
        _wake_live_buses()


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def record(session: Session, event: Event) -> None:
    """Put the event into the outbox in the caller's transaction: it exists iff the transaction commits."""
    cls = type(event)
    name = getattr(cls, "name", None)
    with _TYPES_LOCK:
        registered = _TYPES.get(name) if isinstance(name, str) else None
    if registered is not cls:
        raise ValueError(f"{cls.__qualname__} is not registered with @event_type")
    session.add(
        EventOutbox(
            id=event.id,
            name=name,
            payload=event.to_payload(),
            occurred_at=event.occurred_at,
            created_at=utcnow(),
        )
    )
    # Wake the relays of this process once the transaction commits, so delivery does not wait for a poll.
    session.info[_PENDING_KEY] = True
    if not session.info.get(_HOOKED_KEY):
        session.info[_HOOKED_KEY] = True
        sa_event.listen(session, "after_commit", _after_commit)
        sa_event.listen(session, "after_soft_rollback", lambda s, _tx: _after_rollback(s))


# ------------------------------------------------------------------------------------ handler running


def process_identity() -> str:
    """hostname:pid of this process (recorded as handled_by in the journal)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _insert_receipt(session: Session, group: str, event_id: str) -> bool:
    """Insert the receipt; False when the group has handled this event already (a redelivery)."""
    dialect = session.get_bind().dialect.name
    values = {"group": group, "event_id": event_id, "handled_at": utcnow()}
    # ON CONFLICT waits for a concurrent transaction holding the same key (PostgreSQL), so two
    # processes handling a redelivered message never both run the handler.
    # RETURNING rather than rowcount: some drivers report -1 for INSERT .. ON CONFLICT.
    stmt: Executable | None = None
    if dialect == "postgresql":
        stmt = (
            postgresql.insert(EventReceipt).values(**values).on_conflict_do_nothing().returning(EventReceipt.event_id)
        )
    elif dialect == "sqlite":
        stmt = sqlite.insert(EventReceipt).values(**values).on_conflict_do_nothing().returning(EventReceipt.event_id)
    if stmt is not None:
        return session.execute(stmt).first() is not None
    try:
        with session.begin_nested():
            session.add(EventReceipt(**values))
        return True
    except IntegrityError:
        return False


def handle_in_group(db: Database, handler: Handler, event: Event) -> bool:
    """Run a group handler in one transaction with its receipt; False when skipped as already handled."""
    with db.session() as session:
        if not _insert_receipt(session, handler.group, event.id):
            return False
        handler.fn(session, event)
    return True


def handle_broadcast(db: Database, handler: Handler, event: Event) -> bool:
    """Run a broadcast handler in its own transaction (no receipt: every process runs it)."""
    with db.session() as session:
        handler.fn(session, event)
    return True


def log_handler_failure(handler: Handler, event: Event, attempt: int, final: bool) -> None:
    """Log a handler exception (call from an except block): a warning while it will be retried, else an error."""
    (log.error if final else log.warning)(
        "event_handler_failed", group=handler.group, event_name=event.name, event_id=event.id, attempt=attempt,
        final=final, exc_info=True,
    )


def decode_event(name: str, payload: Mapping[str, Any], event_id: str) -> Event | None:
    """Build the typed event, or log and return None when this process cannot (unknown type, bad payload)."""
    try:
        cls = lookup_event_type(name)
    except KeyError:
        log.warning("event_unknown_type", event_name=name, event_id=event_id)
        return None
    try:
        # The payload carries the id; the outbox row / message id stands in for it if it is missing.
        return cls.from_payload({"id": event_id, **payload} if event_id else payload)
    except Exception:
        log.error("event_decode_failed", event_name=name, event_id=event_id, exc_info=True)
        return None


# -------------------------------------------------------------------------------------------- journal

JOURNAL_GROUP = "core.event-journal"


def _journal_event(session: Session, event: Event) -> None:
    session.add(
        EventJournalEntry(
            event_id=event.id,
            name=event.name,
            payload=event.to_payload(),
            occurred_at=event.occurred_at,
            handled_at=utcnow(),
            handled_by=process_identity(),
        )
    )


def journal_handler() -> Handler:
    """The core.event-journal group handler: every event once into core_event_journal."""
    return Handler(group=JOURNAL_GROUP, events=("*",), fn=_journal_event)


def recent_events(
    session: Session,
    *,
    name_prefix: str | None = None,
    limit: int = 50,
    before: datetime | None = None,
) -> list[EventJournalEntry]:
    """Journal entries, newest first; filter by name prefix and occurred_at < before (for paging)."""
    stmt = select(EventJournalEntry)
    if name_prefix:
        stmt = stmt.where(EventJournalEntry.name.startswith(name_prefix, autoescape=True))
    if before is not None:
        stmt = stmt.where(EventJournalEntry.occurred_at < before)
    stmt = stmt.order_by(EventJournalEntry.occurred_at.desc(), EventJournalEntry.event_id.desc())
    return list(session.scalars(stmt.limit(max(1, min(limit, 1000)))))


def purge_handled(session: Session, *, before: datetime) -> int:
    """Delete published outbox rows and receipts older than before; returns rows deleted (retention)."""
    outbox = delete(EventOutbox).where(EventOutbox.published_at.is_not(None), EventOutbox.published_at < before)
    receipts = delete(EventReceipt).where(EventReceipt.handled_at < before)
    return sum(
        cast(CursorResult[Any], session.execute(stmt.execution_options(synchronize_session=False))).rowcount
        for stmt in (outbox, receipts)
    )


CORE_HANDLERS: tuple[Handler, ...] = (journal_handler(),)
