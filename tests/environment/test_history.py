"""Hourly and daily statistics from the broker's temporal history: GB 3095 / HJ 663 validity rules, O3 8-hour
means, daily AQI by edition, the network's O3 8-hour mean (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cityplus.core.audit import Actor
from cityplus.modules.context import service as context
from cityplus.modules.context import temporal
from cityplus.modules.environment import aqi, demo, service
from cityplus.modules.environment.service import CST

SID = "urn:ngsi-ld:AirQualityObserved:chengdu-shilidian"


def _load(ctx, now: datetime) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as session:
        service.upsert_stations(session, context.core_context(ctx), Actor.system("test"), demo.entities(now))


def _history(ctx, entity_id: str, values: dict[str, dict[datetime, float]]) -> None:  # type: ignore[no-untyped-def]
    """Add instances to the station's history through the broker (what POST /temporal/entities/{id}/attrs does)."""
    active = context.core_context(ctx)
    with ctx.db.session() as session:
        tid = context.tenant(session, None, create=False).id
        attrs = {active.expand_term(p): [{"type": "Property", "value": v,
                                          "observedAt": t.astimezone(UTC).isoformat().replace("+00:00", "Z")}
                                         for t, v in series.items()]
                 for p, series in values.items()}
        temporal.add_instances(session, tid, entity_id, None, attrs)


def _day(y: int, m: int, d: int, hour: int = 0) -> datetime:
    return datetime(y, m, d, hour, tzinfo=CST)


def test_daily_means_need_20_hours_and_edition_follows_the_date(ctx) -> None:  # type: ignore[no-untyped-def]
    now = _day(2026, 3, 2, 12)
    _load(ctx, now)
    # 2026-02-28 (HJ 633—2012): 20 hours of PM2.5 = 75 → valid daily mean, AQI 100
    # 2026-03-01 (HJ 633—2026): 20 hours → 75 → AQI 114; PM10 only 19 hours → no daily PM10
    feb = {_day(2026, 2, 28, h): 75.0 for h in range(20)}
    mar = {_day(2026, 3, 1, h): 75.0 for h in range(4, 24)}
    pm10 = {_day(2026, 3, 1, h): 300.0 for h in range(19)}
    # two instances in one hour average into one hourly value (the second hour of 2026-02-28: (75 + 85) / 2)
    _history(ctx, SID, {"pm25": feb | mar, "pm10": pm10})
    _history(ctx, SID, {"pm25": {_day(2026, 2, 28, 1) + timedelta(minutes=30): 85.0}})
    with ctx.db.session() as session:
        h = service.station_history(session, context.core_context(ctx), SID, now=now, days=4)
    by_day = {d.day.isoformat(): d for d in h.daily}
    feb28, mar1 = by_day["2026-02-28"], by_day["2026-03-01"]
    assert feb28.hours["pm25"] == 20 and feb28.means["pm25"] == pytest.approx((19 * 75 + 80) / 20)
    assert feb28.result is not None and feb28.result.edition == "2012" and feb28.result.period == "daily"
    assert mar1.hours["pm25"] == 20 and mar1.means == {"pm25": 75.0} and mar1.hours["pm10"] == 19
    assert mar1.result is not None and (mar1.result.edition, mar1.result.aqi) == ("2026", 114)
    assert by_day["2026-03-02"].result is None and by_day["2026-03-02"].hours["pm25"] == 1  # the demo's hour
    # another station with one hour fewer on 2026-03-01: 19 hours, no daily mean, no daily AQI
    other = "urn:ngsi-ld:AirQualityObserved:chengdu-liangjiaxiang"
    _history(ctx, other, {"pm25": {_day(2026, 3, 1, h): 75.0 for h in range(19)}})
    with ctx.db.session() as session:
        h2 = service.station_history(session, context.core_context(ctx), other, now=now, days=2)
    assert h2.daily[0].hours["pm25"] == 19 and h2.daily[0].means == {} and h2.daily[0].result is None


def test_o3_8h_moving_mean_and_daily_maximum(ctx) -> None:  # type: ignore[no-untyped-def]
    now = _day(2026, 7, 11, 2)
    _load(ctx, now)
    # 2026-07-10: O3 100 in every hour, 260 in the hours 12:00–17:59 (six hours) → the 8-hour mean of the hours
    # starting 10:00 … 17:00 = (2·100 + 6·260) / 8 = 220 is the daily maximum; all 17 windows valid
    o3 = {_day(2026, 7, 10, h): (260.0 if 12 <= h <= 17 else 100.0) for h in range(24)}
    _history(ctx, SID, {"o3": o3})
    with ctx.db.session() as session:
        h = service.station_history(session, context.core_context(ctx), SID, now=now, days=2)
    d = h.daily[0]
    assert d.day.isoformat() == "2026-07-10" and d.o3_8h_count == 17
    assert d.o3_8h_max == pytest.approx(220.0) and d.o3_1h_max == 260.0
    assert d.result is not None and d.result.edition == "2026"
    expected = aqi.compute({"o3_8h": 220.0}, edition="2026", period="daily")
    assert d.result.aqi == expected.aqi and d.result.primary_pollutants == ("o3_8h",)
    assert "o3" not in d.concentrations()  # the 2026 daily report assesses ozone by its 8-hour value only


def test_o3_8h_needs_6_hours_and_the_daily_max_14_windows(ctx) -> None:  # type: ignore[no-untyped-def]
    now = _day(2026, 7, 12, 2)
    _load(ctx, now)
    # 2026-07-11: O3 only in the hours 0:00–12:59 (13 hours). 8-hour windows ending 8:00 … 24:00 with ≥ 6 hours:
    # those whose last hour starts at 7 … 14 → 8 valid (< 14); the maximum 120 ≤ 160 → no daily O3 value.
    _history(ctx, SID, {"o3": {_day(2026, 7, 11, h): 120.0 for h in range(13)}})
    # 2026-07-10: the same hours at 200 µg/m³: fewer than 14 windows, but the maximum exceeds 160 → it stands
    _history(ctx, SID, {"o3": {_day(2026, 7, 10, h): 200.0 for h in range(13)}})
    with ctx.db.session() as session:
        h = service.station_history(session, context.core_context(ctx), SID, now=now, days=3, hours=48)
    by_day = {d.day.isoformat(): d for d in h.daily}
    assert by_day["2026-07-11"].o3_8h_count == 8 and by_day["2026-07-11"].o3_8h_max is None
    assert by_day["2026-07-11"].result is None
    assert by_day["2026-07-10"].o3_8h_count == 8 and by_day["2026-07-10"].o3_8h_max == pytest.approx(200.0)
    hours = {x.hour: x for x in h.hourly}
    # the hour starting 2026-07-11 17:00 has 3 values in its 8 hours (10:00 … 12:00)
    assert hours[_day(2026, 7, 11, 17).astimezone(UTC)].o3_8h is None
    last6 = hours[_day(2026, 7, 11, 17).astimezone(UTC) - timedelta(hours=2)]  # 15:00: hours 8 … 12 = 5 values
    assert last6.o3_8h is None
    six = hours[_day(2026, 7, 11, 13).astimezone(UTC)]  # 13:00: hours 6 … 12 of the 8 = 7 values
    assert six.o3_8h == pytest.approx(120.0) and six.result is not None
    assert "o3_8h" in {s.pollutant for s in six.result.sub_indices}


def test_network_station_index_uses_the_o3_8h_mean(ctx) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    _load(ctx, now)
    with ctx.db.session() as session:
        before = service.network_aqi(session, context.core_context(ctx), now=now)
    s0 = service.get_station(before, SID)
    assert "o3_8h" not in s0.concentrations  # one hour of history: no 8-hour mean
    last = now.replace(minute=0, second=0, microsecond=0)
    _history(ctx, SID, {"o3": {last - timedelta(hours=k): 390.0 for k in range(1, 7)}})
    with ctx.db.session() as session:
        after = service.network_aqi(session, context.core_context(ctx), now=now)
    s1 = service.get_station(after, SID)
    o3_now = s0.concentrations["o3"]
    assert s1.concentrations["o3_8h"] == pytest.approx((6 * 390.0 + o3_now) / 7)
    assert s1.result is not None and s0.result is not None and s1.result.aqi > s0.result.aqi
    assert s1.result.primary_pollutants == ("o3_8h",)
    assert "o3_8h" in after.city.concentrations


async def test_station_history_endpoint(client, ctx) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    _load(ctx, now)
    r = await client.get(f"/api/v1/environment/air/stations/{SID}/history")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["station"]["id"] == SID and len(body["hourly"]) == 24 and len(body["daily"]) == 30
    assert body["hourly"][-1]["aqi"] == body["station"]["aqi"]["aqi"]
    assert body["daily"][-1]["date"] == now.astimezone(CST).date().isoformat()
    r = await client.get("/api/v1/environment/air/stations/urn:ngsi-ld:AirQualityObserved:nope/history")
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_demo_history_gives_thirty_days_and_loads_idempotently(ctx) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from cityplus.core.audit import AuditEntry
    from cityplus.modules.context.models import ContextHistory

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    past = select(func.count()).select_from(ContextHistory).where(ContextHistory.observed_at < hour)
    with ctx.db.session() as session:
        demo.load(session, ctx)
    with ctx.db.session(readonly=True) as session:
        rows = session.scalar(past)
        h = service.station_history(session, context.core_context(ctx), SID)
    valid = [d for d in h.daily[:-1] if d.result is not None]  # today is partial
    assert len(valid) >= 25 and all(d.result.period == "daily" for d in valid)  # type: ignore[union-attr]
    assert all(d.hours["pm25"] >= 20 for d in valid)
    assert any(d.o3_8h_max is not None for d in valid)
    assert sum(1 for x in h.hourly if x.result is not None) >= 20 and h.hourly[-1].result is not None
    with ctx.db.session() as session:
        demo.load(session, ctx)  # again: history replaced, not doubled
    with ctx.db.session(readonly=True) as session:
        assert session.scalar(past) == rows > 16 * 29 * 24 * 6  # the past hours (this hour's values are rewritten)
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action == "environment.history_loaded")) == 2


async def test_daily_report_of_the_network(client, ctx) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    _load(ctx, now)
    day = (now.astimezone(CST) - timedelta(days=2)).date()
    hours = [datetime(day.year, day.month, day.day, h, tzinfo=CST) for h in range(24)]
    jq = "urn:ngsi-ld:AirQualityObserved:chengdu-jinquanlianghe"  # 金牛区, like 梁家巷
    ljx = "urn:ngsi-ld:AirQualityObserved:chengdu-liangjiaxiang"
    lys = "urn:ngsi-ld:AirQualityObserved:chengdu-lingyansi"  # the control point: not in the city's mean
    _history(ctx, SID, {"pm25": {t: 80.0 for t in hours}, "o3": {t: 100.0 for t in hours}})
    _history(ctx, jq, {"pm25": {t: 40.0 for t in hours}})
    _history(ctx, ljx, {"pm25": {t: 500.0 for t in hours[:19]}})  # 19 hours: not a valid daily mean
    _history(ctx, lys, {"pm25": {t: 200.0 for t in hours}})
    r = await client.get("/api/v1/environment/air/daily", params={"date": day.isoformat()})
    assert r.status_code == 200, r.text
    body = r.json()
    by_id = {s["id"]: s["day"] for s in body["stations"]}
    assert by_id[SID]["concentrations"] == {"pm25": 80.0, "o3_8h": 100.0} and by_id[SID]["aqi"] is not None
    assert by_id[ljx]["hours"]["pm25"] == 19 and by_id[ljx]["aqi"] is None
    assert body["city"]["concentrations"]["pm25"] == pytest.approx(60.0)  # (80 + 40) / 2
    assert body["city"]["stations_used"] == 2 and body["city"]["concentrations"]["o3_8h"] == pytest.approx(100.0)
    expected = aqi.compute({"pm25": 60.0, "o3_8h": 100.0}, edition=aqi.edition_for(day), period="daily")
    assert body["city"]["aqi"]["aqi"] == expected.aqi and body["standard"] == f"HJ 633—{expected.edition}"
    jinniu = next(d for d in body["districts"] if d["name"] == "金牛区")
    assert jinniu["concentrations"] == {"pm25": 40.0} and jinniu["stations_total"] == 2
    assert next(d for d in body["districts"] if d["name"] == "都江堰市")["concentrations"] == {"pm25": 200.0}
    assert (await client.get("/api/v1/environment/air/daily")).status_code == 200  # yesterday
    for bad in ((now + timedelta(days=2)).date().isoformat(), "2020-01-01", "2026-02-30", "yesterday"):
        r = await client.get("/api/v1/environment/air/daily", params={"date": bad})
        assert r.status_code == 422, (bad, r.text)
        assert any("date" in e["field"] for e in r.json()["errors"])
