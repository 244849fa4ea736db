"""The city simulator: a plausible fleet, provisioned idempotently, driving the gateway over HTTP (with faults)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from sqlalchemy import func, select

from cityplus.core.audit import Actor
from cityplus.modules.context import service as context
from cityplus.modules.iot.fleet import KINDS, fleet
from cityplus.modules.iot.models import DeadLetter, Device, ServiceGroup
from cityplus.modules.iot.simulate import HttpSender, provision, run
from tests.servers import free_port


def test_fleet_readings_stay_plausible() -> None:
    devices = fleet(seed=1)
    assert {d.kind.key for d in devices} == {k.key for k in KINDS} and len(devices) >= 30
    start = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    for d in devices:
        for hour in range(0, 24 * 7, 5):
            values = d.reading(start + timedelta(hours=hour))
            for m in d.kind.measures:
                assert m.low <= values[m.object_id] <= m.high, (d.device_id, m.name, values)
            if d.kind.moving:
                assert abs(values["lat"] - d.site.lat) < 0.1 and abs(values["lon"] - d.site.lon) < 0.1
    # human activity follows the clock: the evening rush beats 4 a.m. on a ring road
    traffic = next(d for d in devices if d.kind.key == "traffic")
    rush = traffic.reading(datetime(2026, 11, 24, 9, 30, tzinfo=UTC))["q"]  # 17:30 in Chengdu
    night = traffic.reading(datetime(2026, 11, 23, 20, 0, tzinfo=UTC))["q"]  # 04:00
    assert rush > night + 100


@pytest.fixture
def live(ctx) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The application served over HTTP on a free port (the simulator is an outside client)."""
    from cityplus.api.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ctx=ctx), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", ws="none", http="h11", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


def test_simulator_feeds_the_city_over_http(ctx, live) -> None:  # type: ignore[no-untyped-def]
    devices = fleet(seed=7)
    with ctx.db.session() as s:
        assert provision(s, Actor.system("test"), "", devices) == (len(KINDS), len(devices))
    with ctx.db.session() as s:
        assert provision(s, Actor.system("test"), "", devices) == (0, 0)  # idempotent
        assert s.scalar(select(func.count()).select_from(ServiceGroup)) == len(KINDS)
    report = run(devices, HttpSender(live), rate=500, messages=2 * len(devices), seed=7)
    assert report.sent == 2 * len(devices) and report.results == {"200": 2 * len(devices)}
    with ctx.db.session(readonly=True) as s:
        for d in devices:
            entity = context.get_entity(s, None, f"urn:ngsi-ld:{d.kind.entity_type}:{d.device_id}")
            names = {n.rsplit("/", 1)[-1] for n in entity.attrs}
            assert {m.name for m in d.kind.measures} <= names, (d.device_id, names)
            assert "location" in names and "dataProvider" in names
        assert s.scalar(select(func.count()).select_from(Device).where(Device.status == "online")) == len(devices)


def test_simulator_faults(ctx, live) -> None:  # type: ignore[no-untyped-def]
    devices = fleet(seed=3)
    with ctx.db.session() as s:
        provision(s, Actor.system("test"), "", devices)
    report = run(devices, HttpSender(live), rate=1000, messages=400, faults=True, seed=3)
    assert set(report.faults) == {"spike", "dropout", "duplicate", "out_of_order", "malformed"}
    assert set(report.results) <= {"200", "400"}, report.results  # never a server error
    with ctx.db.session(readonly=True) as s:
        letters = s.scalar(select(func.count()).select_from(DeadLetter)) or 0
    assert 1 <= letters <= report.faults["malformed"] and report.results["400"] == letters


async def test_embedded_simulator_runs_with_the_server_and_stops_with_it(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """CITYPLUS_IOT_SIMULATE_RATE (set by `make run`) starts the simulator with the app; it stops with the app."""
    import asyncio

    from cityplus.api.app import create_app
    from cityplus.modules.iot.runtime import runtime

    monkeypatch.setenv("CITYPLUS_IOT_SIMULATE_RATE", "200")
    monkeypatch.setenv("CITYPLUS_IOT_SIMULATE_SEED", "5")
    application = create_app(ctx=ctx)
    async with application.router.lifespan_context(application):
        simulator = runtime(ctx).simulator
        assert simulator is not None and simulator.thread.is_alive()
        devices = len(fleet(seed=5))
        deadline = time.monotonic() + 30

        def online() -> int:
            with ctx.db.session(readonly=True) as s:
                return s.scalar(select(func.count()).select_from(Device).where(Device.status == "online")) or 0

        while await asyncio.to_thread(online) < devices:
            assert time.monotonic() < deadline, f"only {online()} of {devices} simulated devices heard from"
            await asyncio.sleep(0.2)
    assert runtime(ctx).simulator is None and not simulator.thread.is_alive()
    with ctx.db.session(readonly=True) as s:
        count = s.scalar(select(func.sum(Device.message_count))) or 0
        entity = context.get_entity(s, None, "urn:ngsi-ld:AirQualityObserved:sim-aq-001")
    assert "CityPlus simulator" in str(entity.attrs)  # labelled as simulated
    time.sleep(0.5)
    with ctx.db.session(readonly=True) as s:
        assert (s.scalar(select(func.sum(Device.message_count))) or 0) == count  # nothing sent after the stop


def test_cityplus_simulate_is_the_top_level_command(ctx, live, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from cityplus.cli import app

    monkeypatch.setenv("CITYPLUS_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("CITYPLUS_SECRET_KEY", "x" * 40)
    monkeypatch.delenv("CITYPLUS_MQTT_URL", raising=False)
    result = CliRunner().invoke(app, ["simulate", "--rate", "200", "--duration", "1", "--transport", "http",
                                      "--url", live, "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "fleet: 35 devices (35 new, 11 new service groups)" in result.output
    import re

    sent = re.search(r"sent (\d+): 200 × (\d+)\n", result.output)
    assert sent is not None and sent[1] == sent[2] and int(sent[1]) > 0, result.output
    with ctx.db.session(readonly=True) as s:
        assert (s.scalar(select(func.sum(Device.message_count))) or 0) == int(sent[1])
