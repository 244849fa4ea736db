"""Two real server processes on one PostgreSQL and one JetStream stream; one is SIGKILLed mid-way."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import nats
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from cityplus.core.db import Base
from cityplus.core.events import EVENT_TABLES, JOURNAL_GROUP

pytestmark = [pytest.mark.nats, pytest.mark.postgres, pytest.mark.slow]

NATS_URL = os.environ.get("CITYPLUS_TEST_NATS_URL", "nats://127.0.0.1:4222")
PG_ADMIN_URL = os.environ.get("CITYPLUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI") == "true"
WORKER = Path(__file__).with_name("_bus_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"
PER_PROCESS = 150
ACK_WAIT = 2.0
COUNTER_GROUP = "test.mp-counter"  # as in _bus_worker.py
COUNTER_TABLE_DDL = (
    "CREATE TABLE mp_handled (id BIGSERIAL PRIMARY KEY, event_id VARCHAR(64) NOT NULL, "
    "handled_by VARCHAR(255) NOT NULL)"
)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not reachable")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database with the event tables and the workers' counter table."""
    admin_url = make_url(PG_ADMIN_URL)
    if not _reachable(admin_url.host or "127.0.0.1", admin_url.port or 5432):
        _unavailable(f"PostgreSQL at {admin_url.render_as_string(hide_password=True)}")
    name = f"cityplus_evt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url)
        Base.metadata.create_all(engine, tables=list(EVENT_TABLES))
        with engine.begin() as conn:
            conn.execute(text(COUNTER_TABLE_DDL))
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def stream() -> Iterator[str]:
    host, _, port = NATS_URL.rsplit("/", 1)[-1].partition(":")
    if not _reachable(host, int(port or 4222)):
        _unavailable(f"NATS JetStream at {NATS_URL}")
    name = f"CITYPLUS_TEST_{uuid.uuid4().hex[:12].upper()}"
    yield name

    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())


class Worker:
    """One _bus_worker.py process with its output in files."""

    def __init__(self, tmp: Path, label: str, pg_url: str, stream: str, stall_after: int) -> None:
        self.out_path = tmp / f"{label}.out"
        self.err_path = tmp / f"{label}.err"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
        self._out: IO[bytes] = self.out_path.open("wb")
        self._err: IO[bytes] = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                f"--db={pg_url}",
                f"--nats={NATS_URL}",
                f"--stream={stream}",
                f"--count={PER_PROCESS}",
                f"--ack-wait={ACK_WAIT}",
                f"--stall-after={stall_after}",
            ],
            stdin=subprocess.PIPE,
            stdout=self._out,
            stderr=self._err,
            env=env,
        )

    def lines(self) -> list[str]:
        return self.out_path.read_text().splitlines()

    def wait_line(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"worker never printed {prefix!r} (exit {self.proc.poll()}):\n"
            f"{self.out_path.read_text()}\n{self.err_path.read_text()[-3000:]}"
        )

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def logs(self) -> list[dict[str, object]]:
        out = []
        for line in self.err_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._out.close()
        self._err.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for w in made:
        w.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_two_processes_share_events_exactly_once_and_survive_a_sigkill(
    tmp_path: Path, pg_url: str, stream: str, workers: list[Worker]
) -> None:
    a = Worker(tmp_path, "a", pg_url, stream, stall_after=0)
    workers.append(a)
    b = Worker(tmp_path, "b", pg_url, stream, stall_after=20)
    workers.append(b)
    ident_a = a.wait_line("started").split()[1]
    ident_b = b.wait_line("started").split()[1]
    assert ident_a != ident_b
    a.send("go")
    b.send("go")
    a.wait_line("recorded")
    b.wait_line("recorded")
    stalled_id = b.wait_line("stalled").split()[1]

    # B dies with a transaction open and unacked messages in hand.
    os.kill(b.proc.pid, signal.SIGKILL)
    assert b.proc.wait(timeout=10) == -signal.SIGKILL

    total = 2 * PER_PROCESS
    engine = create_engine(pg_url)
    try:
        wait_until(
            lambda: (
                scalar(engine, "SELECT count(*) FROM core_event_journal") == total
                and scalar(engine, "SELECT count(DISTINCT event_id) FROM mp_handled") == total
                and scalar(engine, "SELECT count(*) FROM core_event_outbox WHERE published_at IS NULL") == 0
            ),
            timeout=30,
            what="A to finish every event",
        )
        time.sleep(ACK_WAIT + 0.5)  # any late redelivery would show up as a duplicate now
        with engine.connect() as conn:
            outbox = set(conn.execute(text("SELECT id FROM core_event_outbox")).scalars())
            journal = dict(conn.execute(text("SELECT event_id, handled_by FROM core_event_journal")).all())
            per_event = dict(conn.execute(text("SELECT event_id, count(*) FROM mp_handled GROUP BY event_id")).all())
            stalled_by = conn.execute(
                text("SELECT handled_by FROM mp_handled WHERE event_id = :e"), {"e": stalled_id}
            ).scalar_one()
            receipts = conn.execute(text('SELECT "group", count(*) FROM core_event_receipts GROUP BY "group"')).all()
    finally:
        engine.dispose()

    assert len(outbox) == total  # both processes recorded all their events
    assert set(journal) == outbox  # every event in the journal (its primary key makes it at most once)
    assert set(per_event) == outbox and set(per_event.values()) == {1}  # the handler's effect: exactly once
    assert set(journal.values()) == {ident_a, ident_b}  # both processes did journal work
    assert stalled_by == ident_a  # B's uncommitted work was redone by A after B died
    assert dict(receipts) == {JOURNAL_GROUP: total, COUNTER_GROUP: total}
    redelivered = [
        e
        for e in a.logs()
        if e.get("event") == "event_handled" and e.get("event_id") == stalled_id and e.get("group") == COUNTER_GROUP
    ]
    assert redelivered and int(str(redelivered[0]["attempt"])) >= 2  # it reached A as a redelivery

    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=15) == 0
    assert a.lines()[-1] == "stopped"
