"""A stand-in server process for test_events_multiprocess: a NatsBus on a shared database."""

# Protocol, one stdout line each: `started <hostname:pid>`; after `go` on stdin it records --count events
# and prints `recorded`. With --stall-after N its counter handler blocks inside its open transaction on the
# first event after N handled (once recording is done) and prints `stalled <event id>`, so the test can
# SIGKILL it exactly there. SIGTERM stops the bus cleanly and prints `stopped`.

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from cityplus.core.db import Database
from cityplus.core.events import CORE_HANDLERS, Event, Handler, event_type, process_identity, record
from cityplus.core.events_nats import NatsBus

COUNTER_GROUP = "test.mp-counter"  # mp_handled is created by the test


@event_type("test.mp.ping")
@dataclass(frozen=True, kw_only=True)
class MpPing(Event):
    origin: str
    n: int


def say(line: str) -> None:
    print(line, flush=True)


class Counter:
    """The test's group handler: one mp_handled row per run, optionally stalling once."""

    def __init__(self, delay: float, stall_after: int) -> None:
        self.delay = delay
        self.stall_after = stall_after
        self.handled = 0
        self.recorded = threading.Event()
        self.lock = threading.Lock()
        self.stalled = False

    def __call__(self, session: Session, event: Event) -> None:
        session.execute(
            text("INSERT INTO mp_handled (event_id, handled_by) VALUES (:e, :h)"),
            {"e": event.id, "h": process_identity()},
        )
        session.flush()
        time.sleep(self.delay)
        with self.lock:
            self.handled += 1
            stall = (
                self.stall_after > 0 and self.handled > self.stall_after and self.recorded.is_set() and not self.stalled
            )
            self.stalled = self.stalled or stall
        if stall:
            say(f"stalled {event.id}")
            time.sleep(3600)  # the test kills the process here, with this transaction still open


async def run(args: argparse.Namespace) -> None:
    db = Database(args.db)
    counter = Counter(args.delay, args.stall_after)
    bus = NatsBus(
        db,
        args.nats,
        stream=args.stream,
        ack_wait=args.ack_wait,
        max_deliver=20,
        nak_delays=(0.2,),
        fetch_batch=5,
        fetch_timeout=1.0,
        poll_interval=0.2,
    )
    await bus.start([*CORE_HANDLERS, Handler(group=COUNTER_GROUP, events=("test.mp.*",), fn=counter)])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    say(f"started {process_identity()}")

    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() == "go":
        label = process_identity()
        for start in range(0, args.count, 10):

            def record_batch(first: int = start) -> None:
                with db.session() as session:
                    for n in range(first, min(first + 10, args.count)):
                        record(session, MpPing(origin=label, n=n))

            await asyncio.to_thread(record_batch)
            await asyncio.sleep(0.01)
        counter.recorded.set()
        say("recorded")
    await stop.wait()
    await bus.stop()
    db.dispose()
    say("stopped")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--ack-wait", type=float, default=2.0)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--stall-after", type=int, default=0)
    args = parser.parse_args()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
