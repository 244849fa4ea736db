"""Two `cityplus serve` processes on one database: every change is notified exactly once per subscription.

Both processes run a notifier over the same outbox; updates are sent to both servers alternately, and the
receiver (a real local HTTP server) must see each update once, whichever process delivered it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.context.test_subscriptions import Receiver
from tests.servers import reachable, serve_processes

pytestmark = [pytest.mark.slow]
JS = {"Content-Type": "application/json"}


def test_two_servers_notify_each_change_once(backend: str, db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYPLUS_")}
    if backend == "postgres":  # the production shape: PostgreSQL and the NATS JetStream event bus
        need(reachable("127.0.0.1", 4222), "NATS JetStream is not reachable on 127.0.0.1:4222")
        env.update({"CITYPLUS_BUS_URL": os.environ.get("CITYPLUS_TEST_NATS_URL", "nats://127.0.0.1:4222"),
                    "CITYPLUS_BUS_STREAM": f"CITYPLUS_S{uuid.uuid4().hex[:10].upper()}"})
    receiver = Receiver()
    env.update({"CITYPLUS_DATABASE_URL": db_url, "CITYPLUS_SECRET_KEY": "shared-secret-for-test",
                "CITYPLUS_VAR_DIR": str(tmp_path / "var"), "CITYPLUS_CONTEXT_AUTH": "none",
                "CITYPLUS_CONTEXT_NOTIFY_POLL": "0.05"})
    try:
        subprocess.run([sys.executable, "-m", "cityplus", "db", "upgrade"], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
        with serve_processes(2, env, tmp_path) as (bases, _logs), httpx.Client(timeout=10) as http:
            entity = {"id": "urn:ngsi-ld:ParkingSpot:jj-1", "type": "ParkingSpot",
                      "free": {"type": "Property", "value": 0}}
            r = http.post(f"{bases[0]}/ngsi-ld/v1/entities", headers=JS, content=json.dumps(entity))
            assert r.status_code == 201, r.text
            sub = {"type": "Subscription", "entities": [{"type": "ParkingSpot"}], "watchedAttributes": ["free"],
                   "notification": {"endpoint": {"uri": receiver.url}}}
            r = http.post(f"{bases[1]}/ngsi-ld/v1/subscriptions", headers=JS, content=json.dumps(sub))
            assert r.status_code == 201, r.text
            n = 60
            for v in range(1, n + 1):
                r = http.patch(f"{bases[v % 2]}/ngsi-ld/v1/entities/urn:ngsi-ld:ParkingSpot:jj-1/attrs",
                               headers=JS, content=json.dumps({"free": {"type": "Property", "value": v}}))
                assert r.status_code == 204, r.text
            deadline = time.monotonic() + 30
            while len(receiver.received) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # a duplicate would arrive now
        values = sorted(g["body"]["data"][0]["free"]["value"] for g in receiver.received)
        assert values == list(range(1, n + 1)), values
        ids = {g["body"]["id"] for g in receiver.received}
        assert len(ids) == n
    finally:
        receiver.close()
        if "CITYPLUS_BUS_STREAM" in env:
            from tests.core.test_multiprocess_servers import _delete_stream

            asyncio.run(_delete_stream(env["CITYPLUS_BUS_STREAM"]))
