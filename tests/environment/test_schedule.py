"""The scheduled AQI recomputation: one process per round through the database lease, unchanged indexes not
rewritten, the loop itself (both databases)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from cityplus.core import lease
from cityplus.core.audit import Actor, AuditEntry
from cityplus.modules.context import service as context
from cityplus.modules.environment import demo, runtime, service
from cityplus.modules.environment.settings import EnvironmentSettings

SID = "urn:ngsi-ld:AirQualityObserved:chengdu-shilidian"


def _load(ctx, now: datetime, seed: int = 2026) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as session:
        service.upsert_stations(session, context.core_context(ctx), Actor.system("test"), demo.entities(now, seed))


def _audits(ctx) -> int:  # type: ignore[no-untyped-def]
    with ctx.db.session(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action == "environment.aqi_recomputed")) or 0


def test_one_holder_recomputes_and_unchanged_indexes_are_not_rewritten(ctx) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    _load(ctx, now)
    assert runtime.tick(ctx, "process-a", 60) == len(demo.STATIONS)  # every station gets its first index
    assert runtime.tick(ctx, "process-b", 60) is None  # the other process skips the round
    assert _audits(ctx) == 1
    with ctx.db.session(readonly=True) as session:
        network = service.network_aqi(session, context.core_context(ctx))
        entity = context.get_entity(session, None, SID)
    station = service.get_station(network, SID)
    assert station.written == service.index_key(station) and station.result is not None
    index = context.instances(entity.attrs[context.core_context(ctx).expand_term("airQualityIndex")])
    assert index[0]["value"] == station.result.aqi
    assert runtime.tick(ctx, "process-a", 60) == 0  # nothing changed: nothing written, nothing audited
    assert _audits(ctx) == 1
    # new hourly values: the holder writes the changed indexes
    _load(ctx, now, seed=7)
    written = runtime.tick(ctx, "process-a", 60)
    assert written is not None and written > 0 and _audits(ctx) == 2
    # the holder stops and gives the lease up: the other process takes over at its next round
    runtime.release(ctx, "process-a")
    assert runtime.tick(ctx, "process-b", 60) == 0
    assert runtime.tick(ctx, "process-a", 60) is None
    # the holder dies: its lease expires (here: taken with a lifetime already over) and another takes over
    with ctx.db.session() as session:
        assert lease.acquire(session, runtime.LEASE, "process-b", -1)
    assert runtime.tick(ctx, "process-c", 60) == 0


async def test_loops_of_two_processes_recompute_once_per_round(ctx) -> None:  # type: ignore[no-untyped-def]
    _load(ctx, datetime.now(UTC))
    a = runtime.EnvironmentRuntime(settings=EnvironmentSettings(recompute_seconds=0.05), holder="process-a")
    b = runtime.EnvironmentRuntime(settings=EnvironmentSettings(recompute_seconds=0.05), holder="process-b")
    tasks = [asyncio.create_task(runtime.loop(ctx, rt, 0.05)) for rt in (a, b)]
    for _ in range(200):
        await asyncio.sleep(0.05)
        if len(a.rounds) + len(b.rounds) >= 3:
            break
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(a.rounds) + len(b.rounds) >= 3
    assert not (a.rounds and b.rounds)  # one holder did every round
    assert sum(a.rounds + b.rounds) == len(demo.STATIONS)  # the first round wrote, later ones had nothing new
    assert _audits(ctx) == 1


def test_settings_default_and_off() -> None:
    assert EnvironmentSettings().recompute_seconds == 300
    assert EnvironmentSettings(recompute_seconds=0).recompute_seconds == 0


async def test_public_reads_are_cached_until_a_station_changes(client, ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    _load(ctx, now)
    first = (await client.get("/api/v1/environment/air")).json()
    again = (await client.get("/api/v1/environment/air")).json()
    assert again["computed_at"] == first["computed_at"]  # served from the cache
    assert (await client.get("/api/v1/environment/air/city")).json() == first["city"]
    # new values on the stations (any process's write changes the version read from the database)
    _load(ctx, now, seed=7)
    fresh = (await client.get("/api/v1/environment/air")).json()
    assert fresh["computed_at"] != first["computed_at"]
    with ctx.db.session(readonly=True) as session:
        direct = service.network_aqi(session, context.core_context(ctx))
    assert fresh["city"]["aqi"]["aqi"] == direct.city.result.aqi  # type: ignore[union-attr]
    assert {s["id"]: s["concentrations"] for s in fresh["stations"]} == \
        {s.entity_id: s.concentrations for s in direct.stations}
    # a deleted station is gone at once
    with ctx.db.session() as session:
        context.delete_entity(session, None, SID)
    body = (await client.get("/api/v1/environment/air")).json()
    assert SID not in {s["id"] for s in body["stations"]} and len(body["stations"]) == len(demo.STATIONS) - 1
    assert (await client.get(f"/api/v1/environment/air/stations/{SID}")).status_code == 404
    # and the cache never outlives CACHE_SECONDS (time passing: stations going stale, a new edition's day)
    monkeypatch.setattr(service, "CACHE_SECONDS", 0.0)
    one = (await client.get("/api/v1/environment/air")).json()
    two = (await client.get("/api/v1/environment/air")).json()
    assert one["computed_at"] != two["computed_at"]
