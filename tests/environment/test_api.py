"""The public AQI calculator API and the network's current AQI over HTTP (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cityplus.core.audit import Actor
from cityplus.modules.context import service as context
from cityplus.modules.environment import demo, service

URL = "/api/v1/environment/aqi"


async def test_calculator_worked_examples_both_editions(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get(URL, params={"edition": "2012", "period": "daily", "pm25": "75", "pm10": "150"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["standard"] == "HJ 633—2012" and body["edition_source"] == "requested"
    assert body["aqi"] == 100 and body["level"]["level_zh"] == "二级"
    assert body["level"]["category"] == {"zh": "良", "en": "good"} and body["level"]["colour_hex"] == "#ffff00"
    assert body["primary_pollutants"] == ["pm10", "pm25"] and body["exceeding_pollutants"] == []
    r = await client.get(URL, params={"edition": "2026", "period": "daily", "pm25": "75", "pm10": "150"})
    body = r.json()
    assert body["aqi"] == 114 and body["level"]["category"]["en"] == "lightly polluted"
    assert {s["pollutant"]: s["iaqi"] for s in body["sub_indices"]} == {"pm10": 112, "pm25": 114}
    assert body["primary_pollutants"] == ["pm25"] and body["exceeding_pollutants"] is None


async def test_calculator_chooses_the_edition_by_date(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get(URL, params={"period": "daily", "pm25": "75", "date": "2026-02-28"})
    assert (r.json()["edition"], r.json()["edition_source"], r.json()["aqi"]) == ("2012", "date", 100)
    r = await client.get(URL, params={"period": "daily", "pm25": "75", "date": "2026-03-01"})
    assert (r.json()["edition"], r.json()["aqi"]) == ("2026", 114)
    r = await client.get(URL, params={"pm25": "10"})  # today: hourly by default
    assert r.status_code == 200 and r.json()["edition_source"] == "date" and r.json()["period"] == "hourly"


async def test_calculator_footnotes_and_empty_fields(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.get(URL, params={"edition": "2012", "so2": "900", "so2_24h": "150", "pm25": ""})
    assert r.status_code == 200, r.text
    assert r.json()["sub_indices"] == [{"pollutant": "so2", "unit": "µg/m³", "averaging": "1h", "concentration": 900.0,
                                        "used": 900.0, "iaqi": 100, "note": "so2_1h_above_800"}]
    r = await client.get(URL, params={"edition": "2026", "o3_8h": "801"})
    assert r.json()["aqi"] == 300


@pytest.mark.parametrize(("params", "field"), [
    ({"pm25": "-1"}, "pm25"), ({"pm25": "nan"}, "pm25"), ({"pm25": "inf"}, "pm25"), ({"pm25": "abc"}, "pm25"),
    ({"pm25": "1_000"}, "pm25"), ({"co": "1e400"}, "co"),
    ({"edition": "2013", "pm25": "1"}, "edition"), ({"period": "weekly", "pm25": "1"}, "period"),
    ({}, "pollutants"), ({"pm2.5": "10"}, "query.pm2.5"), ({"date": "2026-13-01", "pm25": "1"}, "query.date"),
    ({"edition": "2026", "period": "daily", "o3": "100"}, "o3"), ({"so2": "1", "so2_24h": "-3"}, "so2_24h")])
async def test_calculator_bad_input_is_422_naming_the_field(client, params, field) -> None:  # type: ignore[no-untyped-def]
    r = await client.get(URL, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


def _load(ctx, now: datetime) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as session:
        service.upsert_stations(session, context.core_context(ctx), Actor.system("test"), demo.entities(now))


async def test_network_aqi_station_district_city(client, ctx) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    _load(ctx, now)
    r = await client.get("/api/v1/environment/air")
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["stations"]) == len(demo.STATIONS) and all(s["current"] for s in body["stations"])
    by_id = {s["id"]: s for s in body["stations"]}
    s = by_id["urn:ngsi-ld:AirQualityObserved:chengdu-jinquanlianghe"]
    assert s["name"] == {"zh": "金泉两河", "en": "Jinquan Lianghe"} and s["district"] == "金牛区"
    expected = service.calculate(s["concentrations"], edition=None, period="hourly")[1]
    assert s["aqi"]["aqi"] == expected.aqi and s["aqi"]["standard"] == f"HJ 633—{expected.edition}"
    # the city: mean concentrations of the urban stations (not the 灵岩寺 control point), then HJ 633
    urban = [x for x in body["stations"] if x["point_type"] == "urban"]
    mean_pm25 = sum(x["concentrations"]["pm25"] for x in urban) / len(urban)
    assert body["city"]["stations_used"] == len(urban) == len(demo.STATIONS) - 1
    assert body["city"]["concentrations"]["pm25"] == pytest.approx(mean_pm25)
    city = service.calculate({p: v for p, v in body["city"]["concentrations"].items()}, edition=None,
                             period="hourly")[1]
    assert body["city"]["aqi"]["aqi"] == city.aqi
    jinniu = (await client.get("/api/v1/environment/air/districts/金牛区")).json()
    two = [x for x in urban if x["district"] == "金牛区"]
    assert jinniu["stations_total"] == 2 and jinniu["concentrations"]["no2"] == pytest.approx(
        sum(x["concentrations"]["no2"] for x in two) / 2)
    assert (await client.get("/api/v1/environment/air/city")).json() == body["city"] | {}
    assert (await client.get("/api/v1/environment/air/districts")).status_code == 200
    one = await client.get(f"/api/v1/environment/air/stations/{s['id']}")
    assert one.status_code == 200 and one.json()["aqi"]["aqi"] == s["aqi"]["aqi"]
    assert (await client.get("/api/v1/environment/air/stations/urn:ngsi-ld:AirQualityObserved:nope")).status_code \
        == 404
    assert (await client.get("/api/v1/environment/air/districts/不存在区")).status_code == 404


async def test_stale_stations_are_shown_but_not_aggregated(client, ctx) -> None:  # type: ignore[no-untyped-def]
    _load(ctx, datetime.now(UTC) - timedelta(hours=5))
    body = (await client.get("/api/v1/environment/air")).json()
    assert body["stations"] and not any(s["current"] for s in body["stations"])
    assert body["stations"][0]["aqi"]["aqi"] is not None
    assert body["city"]["stations_used"] == 0 and body["city"]["aqi"] is None


async def test_recompute_writes_the_index_onto_the_entities(client, ctx, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    _load(ctx, datetime.now(UTC))
    hbj = token_for(make_user("department_staff", org="hbj"))
    fgw = token_for(make_user("department_staff", org="fgw"))
    citizen = token_for(make_user("citizen"))
    assert (await client.post("/api/v1/environment/air/recompute")).status_code == 401
    assert (await client.post("/api/v1/environment/air/recompute", headers=citizen)).status_code == 403
    r = await client.post("/api/v1/environment/air/recompute", headers=fgw)
    assert r.status_code == 403 and "市环保局" in r.json()["detail"]
    r = await client.post("/api/v1/environment/air/recompute", headers=hbj)
    assert r.status_code == 200, r.text
    station = (await client.get("/api/v1/environment/air/stations/urn:ngsi-ld:AirQualityObserved:chengdu-shilidian")
               ).json()
    e = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:chengdu-shilidian", headers=hbj)
    assert e.status_code == 200, e.text
    entity = e.json()
    assert entity["airQualityIndex"]["value"] == station["aqi"]["aqi"]
    assert entity["airQualityIndex"]["standard"]["value"] == station["aqi"]["standard"]
    assert entity["airQualityLevel"]["value"] == station["aqi"]["level"]["category_key"]
    audit = await client.get("/api/v1/audit", headers=token_for(make_user("platform_admin")))
    assert "environment.aqi_recomputed" in audit.text


def test_expanded_fragment_is_what_expand_compact_gives(ctx) -> None:  # type: ignore[no-untyped-def]
    """recompute() builds its write-back fragments pre-expanded: they must equal the validated expansion."""
    from cityplus.modules.environment import aqi

    active = context.core_context(ctx)
    station = service.StationAqi(
        entity_id="urn:ngsi-ld:AirQualityObserved:x", name="x", name_en="x", district="武侯区", point_type="urban",
        location=None, observed_at=datetime(2026, 11, 25, 1, tzinfo=UTC), current=True, concentrations={"pm25": 80},
        result=aqi.compute({"pm25": 80}, edition="2026", period="hourly"))
    names = {n: active.expand_term(n) for n in (*service.INDEX_ATTRS, service.STATION_TYPE)}
    compact = service.index_fragment(station)
    assert compact is not None and compact["primaryPollutant"]["value"] == ["pm25"]
    assert service.expanded_index_fragment(station, names) == context.expand_compact(compact, active)


def test_stations_are_assessed_with_the_edition_of_their_day(ctx) -> None:  # type: ignore[no-untyped-def]
    """Data of 2026-02-28 (China time) is assessed with HJ 633—2012, of 2026-03-01 with HJ 633—2026."""
    active = context.core_context(ctx)
    for observed, edition in ((datetime(2026, 2, 28, 8, tzinfo=UTC), "2012"),
                              (datetime(2026, 2, 28, 16, 30, tzinfo=UTC), "2026")):  # 00:30 on 1 March in Chengdu
        _load(ctx, observed)
        with ctx.db.session(readonly=True) as session:
            n = service.network_aqi(session, active, now=observed + timedelta(minutes=20))
        assert {s.result.edition for s in n.stations if s.result} == {edition}
        assert n.edition == edition and n.city.result is not None and n.city.result.edition == edition


async def test_a_site_reported_twice_counts_once(client, ctx) -> None:  # type: ignore[no-untyped-def]
    """The device gateway's simulated fleet reports six of the demo sites too (灵岩寺 among them, without saying it
    is a control point): aggregates count each site once, with its newest values, as a control point if either
    entity says so."""
    now = datetime.now(UTC)
    _load(ctx, now - timedelta(minutes=30))
    twin = {"id": "urn:ngsi-ld:AirQualityObserved:sim-aq-006", "type": "AirQualityObserved",
            "name": {"type": "Property", "value": "灵岩寺"}, "areaServed": {"type": "Property", "value": "都江堰市"},
            "pm25": {"type": "Property", "value": 400, "unitCode": "GQ", "observedAt": now.isoformat()}}
    twin_jq = dict(twin, id="urn:ngsi-ld:AirQualityObserved:sim-aq-001",
                   name={"type": "Property", "value": "金泉两河"}, areaServed={"type": "Property", "value": "金牛区"},
                   pm25={"type": "Property", "value": 200, "unitCode": "GQ", "observedAt": now.isoformat()})
    with ctx.db.session() as session:
        service.upsert_stations(session, context.core_context(ctx), Actor.system("test"), [twin, twin_jq])
    body = (await client.get("/api/v1/environment/air")).json()
    assert len(body["stations"]) == len(demo.STATIONS) + 2  # every entity is listed
    urban_sites = len(demo.STATIONS) - 1
    assert body["city"]["stations_total"] == urban_sites  # the 灵岩寺 twin is still the control point
    pm25 = {s["id"]: s["concentrations"].get("pm25") for s in body["stations"]}
    others = [v for k, v in pm25.items() if k.startswith("urn:ngsi-ld:AirQualityObserved:chengdu-")
              and not k.endswith(("jinquanlianghe", "lingyansi"))]
    assert body["city"]["concentrations"]["pm25"] == pytest.approx((sum(others) + 200) / urban_sites)
    jinniu = (await client.get("/api/v1/environment/air/districts/金牛区")).json()
    assert jinniu["stations_total"] == 2
