"""Many concurrent writes through the HTTP API finish: no deadlock between worker threads, connection pool and
SQLite's write lock (a request's commit needs a worker thread of its own after the route has run)."""

from __future__ import annotations

import asyncio
import json

JS = {"Content-Type": "application/json"}


async def test_a_hundred_concurrent_writes_all_complete(client, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    writer = token_for(make_user("department_staff", org="hbj"))
    ids = [f"urn:ngsi-ld:ParkingSpot:c-{i}" for i in range(10)]
    body = [{"id": i, "type": "ParkingSpot", "free": {"type": "Property", "value": 0}} for i in ids]
    r = await client.post("/ngsi-ld/v1/entityOperations/upsert", headers={**writer, **JS}, content=json.dumps(body))
    assert r.status_code == 201, r.text

    async def patch(v: int) -> int:
        r = await client.patch(f"/ngsi-ld/v1/entities/{ids[v % 10]}/attrs", headers={**writer, **JS},
                               content=json.dumps({"free": {"type": "Property", "value": v}}))
        return r.status_code

    codes = await asyncio.wait_for(asyncio.gather(*(patch(v) for v in range(100))), timeout=120)
    assert codes == [204] * 100
