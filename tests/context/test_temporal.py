"""The NGSI-LD temporal API: history from entity writes, time ranges, lastN, simplified and aggregated forms,
temporal writes, validation, paging by Content-Range, and retention."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from cityplus.modules.context.runtime import runtime

E = "https://uri.etsi.org/ngsi-ld/errors/"
JS = {"Content-Type": "application/json"}
T = "/ngsi-ld/v1/temporal/entities"
ENT = "urn:ngsi-ld:AirQualityObserved:wh-1"


@pytest.fixture
def writer(make_user, token_for):  # type: ignore[no-untyped-def]
    return token_for(make_user("department_staff", org="hbj"))


def reading(value: float, at: str) -> dict[str, Any]:
    return {"type": "Property", "value": value, "unitCode": "GQ", "observedAt": at}


async def _station_with_history(client, writer) -> None:  # type: ignore[no-untyped-def]
    body = {"id": ENT, "type": "AirQualityObserved", "pm25": reading(30, "2026-11-24T08:00:00Z"),
            "name": {"type": "Property", "value": "武侯区站"}}
    r = await client.post("/ngsi-ld/v1/entities", headers={**writer, **JS}, content=json.dumps(body))
    assert r.status_code == 201, r.text
    for value, hour in ((45, 9), (80, 10), (62, 11)):
        r = await client.patch(f"/ngsi-ld/v1/entities/{ENT}/attrs", headers={**writer, **JS},
                               content=json.dumps({"pm25": reading(value, f"2026-11-24T{hour:02d}:00:00Z")}))
        assert r.status_code == 204, r.text


async def test_entity_writes_land_in_history(client, writer) -> None:  # type: ignore[no-untyped-def]
    await _station_with_history(client, writer)
    r = await client.get(f"{T}/{ENT}", headers=writer)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == ENT and doc["type"] == "AirQualityObserved"
    assert [i["value"] for i in doc["pm25"]] == [30, 45, 80, 62]
    assert all(i["instanceId"].startswith("urn:ngsi-ld:attribute:instance:") for i in doc["pm25"])
    assert doc["pm25"][2]["observedAt"] == "2026-11-24T10:00:00Z" and doc["pm25"][2]["unitCode"] == "GQ"
    name = doc["name"] if isinstance(doc["name"], list) else [doc["name"]]
    assert name[0]["value"] == "武侯区站"
    r = await client.get(f"{T}/{ENT}", params={"attrs": "pm25", "lastN": 2, "options": "temporalValues"},
                         headers=writer)
    assert r.json() == {"id": ENT, "type": "AirQualityObserved", "pm25": {
        "type": "Property", "values": [[80, "2026-11-24T10:00:00Z"], [62, "2026-11-24T11:00:00Z"]]}}
    r = await client.get(f"{T}/{ENT}", params={"attrs": "pm25", "timerel": "between",
                                               "timeAt": "2026-11-24T09:00:00Z", "endTimeAt": "2026-11-24T11:00:00Z"},
                         headers=writer)
    assert [i["value"] for i in r.json()["pm25"]] == [45, 80]
    r = await client.get(f"{T}/{ENT}", params={"attrs": "pm25", "timerel": "before",
                                               "timeAt": "2026-11-24T09:00:00Z"}, headers=writer)
    assert [i["value"] for i in r.json()["pm25"]] == [30]
    r = await client.get(T, params={"type": "AirQualityObserved", "attrs": "pm25", "timerel": "after",
                                    "timeAt": "2026-11-24T10:00:00Z", "count": "true"}, headers=writer)
    assert r.status_code == 200 and r.headers["ngsild-results-count"] == "1"
    assert [i["value"] for i in r.json()[0]["pm25"]] == [80, 62]


async def test_aggregated_values(client, writer) -> None:  # type: ignore[no-untyped-def]
    await _station_with_history(client, writer)
    r = await client.get(f"{T}/{ENT}", params={
        "attrs": "pm25", "options": "aggregatedValues", "aggrMethods": "avg,max,min,sum,totalCount,stddev,sumsq,"
        "distinctCount", "aggrPeriodDuration": "PT2H", "timerel": "after", "timeAt": "2026-11-24T08:00:00Z"},
        headers=writer)
    assert r.status_code == 200, r.text
    pm = r.json()["pm25"]
    assert pm["type"] == "Property"
    assert pm["avg"] == [[37.5, "2026-11-24T08:00:00Z", "2026-11-24T10:00:00Z"],
                         [71.0, "2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z"]]
    assert [v[0] for v in pm["max"]] == [45, 80] and [v[0] for v in pm["min"]] == [30, 62]
    assert [v[0] for v in pm["sum"]] == [75, 142] and [v[0] for v in pm["totalCount"]] == [2, 2]
    assert [v[0] for v in pm["distinctCount"]] == [2, 2]
    assert [v[0] for v in pm["sumsq"]] == [30 ** 2 + 45 ** 2, 80 ** 2 + 62 ** 2]
    assert pm["stddev"][0][0] == pytest.approx(7.5)
    r = await client.get(f"{T}/{ENT}", params={"attrs": "pm25", "options": "aggregatedValues",
                                               "aggrMethods": "avg", "aggrPeriodDuration": "P0D"}, headers=writer)
    assert r.json()["pm25"]["avg"][0][0] == pytest.approx((30 + 45 + 80 + 62) / 4)


async def test_temporal_create_and_instance_changes(client, writer) -> None:  # type: ignore[no-untyped-def]
    vehicle = {"id": "urn:ngsi-ld:Vehicle:bus-1", "type": "Vehicle",
               "speed": [{"type": "Property", "value": 120, "observedAt": "2020-09-01T12:03:00Z"},
                         {"type": "Property", "value": 80, "observedAt": "2020-09-01T12:05:00Z"}],
               "fuelLevel": [{"type": "Property", "value": 67, "observedAt": "2020-09-01T12:03:00Z"},
                             {"type": "Property", "value": 53, "observedAt": "2020-09-01T13:05:00Z"},
                             {"type": "Property", "value": 40, "observedAt": "2020-09-01T14:07:00Z",
                              "datasetId": "urn:ngsi-ld:Vehicle:12345-fuel"}]}
    r = await client.post(T, headers={**writer, **JS}, content=json.dumps(vehicle))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"{T}/urn:ngsi-ld:Vehicle:bus-1"
    current = (await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:bus-1", headers=writer)).json()
    assert current["speed"]["value"] == 80  # the newest instance became the current state
    r = await client.get(f"{T}/urn:ngsi-ld:Vehicle:bus-1", params={
        "options": "aggregatedValues", "aggrMethods": "avg,max", "aggrPeriodDuration": "PT1H",
        "timerel": "after", "timeAt": "2020-09-01T12:03:00Z"}, headers=writer)
    doc = r.json()
    assert doc["speed"]["avg"] == [[100.0, "2020-09-01T12:03:00Z", "2020-09-01T13:03:00Z"]]
    assert [v[0] for v in doc["fuelLevel"]["avg"]] == [67, 53, 40]
    # More instances for an existing entity: 204.
    more = {"speed": [{"type": "Property", "value": 100, "observedAt": "2020-09-01T12:07:00Z"}]}
    r = await client.post(f"{T}/urn:ngsi-ld:Vehicle:bus-1/attrs", headers={**writer, **JS}, content=json.dumps(more))
    assert r.status_code == 204, r.text
    speed = (await client.get(f"{T}/urn:ngsi-ld:Vehicle:bus-1", params={"attrs": "speed"},
                              headers=writer)).json()["speed"]
    assert [i["value"] for i in speed] == [120, 80, 100]
    first = speed[0]["instanceId"]
    r = await client.patch(f"{T}/urn:ngsi-ld:Vehicle:bus-1/attrs/speed/{first}", headers={**writer, **JS},
                           content=json.dumps({"speed": {"type": "Property", "value": 121,
                                                         "observedAt": "2020-09-01T12:03:00Z"}}))
    assert r.status_code == 204, r.text
    r = await client.delete(f"{T}/urn:ngsi-ld:Vehicle:bus-1/attrs/speed/{speed[1]['instanceId']}", headers=writer)
    assert r.status_code == 204
    speed = (await client.get(f"{T}/urn:ngsi-ld:Vehicle:bus-1", params={"attrs": "speed"},
                              headers=writer)).json()["speed"]
    assert [i["value"] for i in speed] == [121, 100]
    r = await client.delete(f"{T}/urn:ngsi-ld:Vehicle:bus-1/attrs/speed/urn:ngsi-ld:attribute:instance:999999",
                            headers=writer)
    assert r.status_code == 404
    r = await client.delete(f"{T}/urn:ngsi-ld:Vehicle:bus-1/attrs/fuelLevel", params={"deleteAll": "true"},
                            headers=writer)
    assert r.status_code == 204
    assert "fuelLevel" not in (await client.get(f"{T}/urn:ngsi-ld:Vehicle:bus-1", headers=writer)).json()
    # The same observedAt (and datasetId) replaces an instance rather than adding one.
    again = {"speed": [{"type": "Property", "value": 99, "observedAt": "2020-09-01T12:07:00Z"}]}
    r = await client.post(f"{T}/urn:ngsi-ld:Vehicle:bus-1/attrs", headers={**writer, **JS}, content=json.dumps(again))
    speed = (await client.get(f"{T}/urn:ngsi-ld:Vehicle:bus-1", params={"attrs": "speed"},
                              headers=writer)).json()["speed"]
    assert [i["value"] for i in speed] == [121, 99]
    assert (await client.delete(f"{T}/urn:ngsi-ld:Vehicle:bus-1", headers=writer)).status_code == 204
    r = await client.get(f"{T}/urn:ngsi-ld:Vehicle:bus-1", params={"attrs": "speed"}, headers=writer)
    assert r.status_code == 404  # the temporal representation is gone; the entity itself lives on
    r = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:bus-1", headers=writer)
    assert r.status_code == 200
    r = await client.get(T, params={"type": "Vehicle"}, headers=writer)
    assert r.json() == []  # nor does a temporal query list it
    r = await client.post(T, headers={**writer, **JS}, content=json.dumps(vehicle))
    assert r.status_code == 201  # a new temporal representation (of an entity that exists)


@pytest.mark.parametrize(("params", "fragment"), [
    ({"timerel": "during", "timeAt": "2026-01-01T00:00:00Z"}, "timerel"),
    ({"timerel": "after"}, "timeAt"),
    ({"timerel": "between", "timeAt": "2026-01-01T00:00:00Z"}, "endTimeAt"),
    ({"timerel": "after", "timeAt": "yesterday"}, "timeAt"),
    ({"lastN": "0"}, "lastN"),
    ({"options": "aggregatedValues"}, "aggrMethods"),
    ({"options": "aggregatedValues", "aggrMethods": "median"}, "median"),
    ({"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1 hour"}, "aggrPeriodDuration"),
    ({"timeproperty": "seenAt"}, "timeproperty"),
    ({"colour": "red"}, "colour"),
])
async def test_invalid_temporal_queries(client, writer, params, fragment) -> None:  # type: ignore[no-untyped-def]
    await _station_with_history(client, writer)
    r = await client.get(f"{T}/{ENT}", params=params, headers=writer)
    assert r.status_code == 400, r.text
    kind = "InvalidRequest" if fragment == "colour" else "BadRequestData"  # unknown parameters: InvalidRequest
    assert r.json()["type"] == E + kind and fragment in r.json()["detail"]


async def test_unknown_entity_and_access(client, writer, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    r = await client.get(f"{T}/urn:ngsi-ld:X:none", headers=writer)
    assert r.status_code == 404 and r.json()["type"] == E + "ResourceNotFound"
    assert (await client.get(f"{T}/{ENT}")).status_code == 401
    reader = token_for(make_user("citizen"))
    r = await client.post(T, headers={**reader, **JS}, content=json.dumps({"id": "urn:x:1", "type": "T"}))
    assert r.status_code == 403


async def test_instances_are_paged_with_content_range(client, writer, ctx) -> None:  # type: ignore[no-untyped-def]
    await _station_with_history(client, writer)
    rt = runtime(ctx)
    rt.settings = rt.settings.model_copy(update={"max_instances": 2})
    r = await client.get(f"{T}/{ENT}", params={"attrs": "pm25"}, headers=writer)
    assert r.status_code == 206
    assert [i["value"] for i in r.json()["pm25"]] == [30, 45]
    assert r.headers["content-range"] == "date-time 2026-11-24T08:00:00Z-2026-11-24T09:00:00Z/*"


async def test_retention_prunes_old_rows(ctx) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select, update

    from cityplus.core.db import utcnow
    from cityplus.modules.context import service, temporal
    from cityplus.modules.context.models import ContextHistory

    active = service.core_context(ctx)
    with ctx.db.session() as session:
        for n in range(3):
            entity = {"id": f"urn:ngsi-ld:Thing:{n}", "type": "Thing" if n < 2 else "Keeper",
                      "v": {"type": "Property", "value": n}}
            service.upsert_entity(session, None, service.expand_compact(entity, active), replace=True)
        session.execute(update(ContextHistory).values(modified_at=utcnow() - timedelta(days=40)))
    thing = active.expand_term("Thing")
    with ctx.db.session() as session:
        assert temporal.prune(session, {thing: 30}, None) == 2
        assert session.scalar(select(func.count()).select_from(ContextHistory)) == 1
