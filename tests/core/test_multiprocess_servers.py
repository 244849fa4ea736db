"""Two `cityplus serve` processes on one PostgreSQL and one NATS JetStream share the platform's events.

Users are created through both servers' APIs; every resulting event must reach the event journal exactly once
(the journal is one consumer group shared by both processes) and both processes must have handled some.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from cityplus.core.audit import Actor
from cityplus.core.db import Database
from cityplus.core.events import EventOutbox, EventReceipt
from cityplus.core.identity import service as identity
from cityplus.core.modules import ModuleRegistry
from tests.conftest import need
from tests.servers import reachable, serve_processes

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.postgres]
NATS_URL = os.environ.get("CITYPLUS_TEST_NATS_URL", "nats://127.0.0.1:4222")








async def _delete_stream(name: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=3)
    try:
        await nc.jetstream().delete_stream(name)
    except Exception:  # already gone
        pass
    finally:
        await nc.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_two_servers_share_events(db_url: str, tmp_path: Path) -> None:
    need(reachable("127.0.0.1", 4222), "NATS JetStream is not reachable on 127.0.0.1:4222")
    stream = f"CITYPLUS_T{uuid.uuid4().hex[:10].upper()}"
    db = Database(db_url)
    try:
        with db.session() as session:
            identity.load_organisations(session, Actor.system("test"))
            admin = identity.create_user(session, Actor.system("test"), username="ops.admin",
                                         password="long-enough-1", role="platform_admin")
            secret = identity.create_token(session, Actor.system("test"), admin, name="t", scopes=[
                "users.manage", "events.read"], days=1, all_scopes=ModuleRegistry.discover().all_scopes()).secret
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYPLUS_")}
        env.update({"CITYPLUS_DATABASE_URL": db_url, "CITYPLUS_BUS_URL": NATS_URL, "CITYPLUS_BUS_STREAM": stream,
                    "CITYPLUS_SECRET_KEY": "shared-secret-for-test", "CITYPLUS_VAR_DIR": str(tmp_path / "var")})
        try:
            with serve_processes(2, env, tmp_path) as (bases, logs):
                _run(bases, logs, secret, db)
        finally:
            asyncio.run(_delete_stream(stream))
    finally:
        db.dispose()


def _run(bases: list[str], logs: list[Path], secret: str, db: Database) -> None:
    """Users created through both servers; every event in the journal exactly once."""
    headers = {"Authorization": f"Bearer {secret}"}
    created = []
    with httpx.Client(headers=headers, timeout=10) as client:
        for i in range(40):
            name = f"mp.user{i}"
            r = client.post(f"{bases[i % 2]}/api/v1/users",
                            json={"username": name, "password": "long-enough-1", "role": "citizen"})
            assert r.status_code == 201, r.text
            created.append(name)
            if i % 10 == 9:
                time.sleep(0.3)  # bursts, as real traffic comes
        deadline = time.monotonic() + 30
        journal: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            r = client.get(f"{bases[1]}/api/v1/events",
                           params={"name": "identity.user_changed", "limit": 500})
            assert r.status_code == 200, r.text
            journal = [e for e in r.json() if e["payload"]["username"] in created]
            if len(journal) >= len(created):
                break
            time.sleep(0.3)
    names = sorted(e["payload"]["username"] for e in journal)  # type: ignore[index]
    assert names == sorted(created), "every event reached the journal, none twice"
    handled_by = {e["handled_by"] for e in journal}
    assert len(handled_by) == 2, f"both processes share the consumer group: {handled_by}"
    # Every event recorded (including the seed's, from before the servers started) was published once
    # and handled once by the journal group.
    deadline = time.monotonic() + 20
    while True:
        with db.session() as session:
            unpublished = session.scalar(select(func.count()).where(EventOutbox.published_at.is_(None)))
            receipts = session.scalar(
                select(func.count()).where(EventReceipt.group == "core.event-journal"))
            total = session.scalar(select(func.count()).select_from(EventOutbox))
        if (unpublished == 0 and receipts == total) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert unpublished == 0
    assert receipts == total
    # Operations: each server logs JSON lines, one per request, carrying the request id.
    lines = [json.loads(line) for line in logs[0].read_text().splitlines() if line.startswith("{")]
    requests = [e for e in lines if e.get("event") == "http_request" and e.get("route") == "/api/v1/users"]
    assert requests and all(len(e["request_id"]) == 32 and e["status"] == 201 for e in requests)
