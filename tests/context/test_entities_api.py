"""NGSI-LD entities through HTTP: create, read, update, delete, attributes, errors, tenants, access."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cityplus.modules.context.normalize import is_uri
from tests.conftest import need, shared_dir

E = "https://uri.etsi.org/ngsi-ld/errors/"
LD = {"Content-Type": "application/ld+json"}
JS = {"Content-Type": "application/json"}


@pytest.fixture
def writer(make_user, token_for):  # type: ignore[no-untyped-def]
    return token_for(make_user("department_staff", org="hbj"))


def station(n: int = 1, **extra: object) -> dict[str, object]:
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:cd-{n:03d}",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 30 + n, "unitCode": "GQ", "observedAt": "2026-11-24T08:00:00Z"},
        "district": {"type": "Property", "value": "武侯区" if n % 2 else "锦江区"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [104.06 + n / 1000, 30.65]}},
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:sensor-{n}"},
        **extra,
    }


async def create(client, headers, entity, tenant: str | None = None):  # type: ignore[no-untyped-def]
    h = {**headers, **JS, **({"NGSILD-Tenant": tenant} if tenant else {})}
    return await client.post("/ngsi-ld/v1/entities", headers=h, content=json.dumps(entity))


async def test_create_get_roundtrip(client, writer) -> None:  # type: ignore[no-untyped-def]
    r = await create(client, writer, station(1))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:cd-001"
    r = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:cd-001", headers=writer)
    assert r.status_code == 200, r.text
    assert r.json() == station(1)
    assert "ngsi-ld-core-context" in r.headers["link"]
    r = await create(client, writer, station(1))
    assert r.status_code == 409 and r.json()["type"] == E + "AlreadyExists"


async def test_sys_attrs_keyvalues_concise_pick(client, writer) -> None:  # type: ignore[no-untyped-def]
    await create(client, writer, station(2))
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:cd-002"
    doc = (await client.get(url, params={"options": "sysAttrs"}, headers=writer)).json()
    assert doc["createdAt"].endswith("Z") and doc["pm25"]["modifiedAt"].endswith("Z")
    kv = (await client.get(url, params={"options": "keyValues"}, headers=writer)).json()
    assert kv["pm25"] == 32 and kv["refDevice"] == "urn:ngsi-ld:Device:sensor-2"
    concise = (await client.get(url, params={"format": "concise"}, headers=writer)).json()
    assert concise["district"] == "锦江区" and concise["refDevice"] == {"object": "urn:ngsi-ld:Device:sensor-2"}
    picked = (await client.get(url, params={"pick": "id,pm25"}, headers=writer)).json()
    assert set(picked) == {"id", "pm25"}
    ld = await client.get(url, headers={**writer, "Accept": "application/ld+json"})
    assert ld.headers["content-type"].startswith("application/ld+json") and "@context" in ld.json()


@pytest.mark.parametrize(("headers", "body", "status", "etype"), [
    (JS, b"{not json", 400, "InvalidRequest"),
    (JS, json.dumps({"type": "X"}).encode(), 400, "BadRequestData"),
    (JS, json.dumps({"id": "not a uri", "type": "X"}).encode(), 400, "BadRequestData"),
    (JS, json.dumps({"id": "urn:x:1", "type": "X", "a": {"type": "Relationship", "object": "no uri"}}).encode(),
     400, "BadRequestData"),
    (JS, json.dumps({"id": "urn:x:1", "type": "X", "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
                     }).encode(), 400, "BadRequestData"),
    (LD, json.dumps({"id": "urn:x:1", "type": "X"}).encode(), 400, "BadRequestData"),
    ({"Content-Type": "text/plain"}, b"{}", 415, "UnsupportedMediaType"),
    (JS, json.dumps({"id": "urn:x:1", "type": "X", "loc": {"type": "GeoProperty", "value": {
        "type": "Point", "coordinates": [500, 30]}}}).encode(), 400, "BadRequestData"),
])
async def test_bad_input_is_named(client, writer, headers, body, status, etype) -> None:  # type: ignore[no-untyped-def]
    r = await client.post("/ngsi-ld/v1/entities", headers={**writer, **headers}, content=body)
    assert r.status_code == status, r.text
    assert r.json()["type"] == E + etype and r.json()["detail"]


async def test_query_type_q_geo_count_paging(client, writer) -> None:  # type: ignore[no-untyped-def]
    for n in range(1, 11):
        assert (await create(client, writer, station(n))).status_code == 201
    await create(client, writer, {"id": "urn:ngsi-ld:Building:b1", "type": "Building",
                                  "name": {"type": "Property", "value": "天府广场"}})
    r = await client.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved", "count": "true",
                                                         "limit": 3}, headers=writer)
    assert r.status_code == 200 and r.headers["ngsild-results-count"] == "10" and len(r.json()) == 3
    assert 'rel="next"' in r.headers["link"]
    r = await client.get("/ngsi-ld/v1/entities", headers=writer,
                         params={"type": "AirQualityObserved", "q": 'pm25>35;district=="武侯区"'})
    assert sorted(e["pm25"]["value"] for e in r.json()) == [37, 39]
    r = await client.get("/ngsi-ld/v1/entities", params={
        "type": "AirQualityObserved", "georel": "near;maxDistance==300", "geometry": "Point",
        "coordinates": "[104.061,30.65]"}, headers=writer)
    assert r.status_code == 200, r.text
    assert {e["id"][-3:] for e in r.json()} == {"001", "002", "003", "004"}
    r = await client.get("/ngsi-ld/v1/entities", params={"type": "Building,AirQualityObserved", "limit": 100},
                         headers=writer)
    assert len(r.json()) == 11
    # attrs both selects entities that have one of the attributes and projects onto them
    r = await client.get("/ngsi-ld/v1/entities", params={"type": "Building,AirQualityObserved", "attrs": "name"},
                         headers=writer)
    assert r.json() == [{"id": "urn:ngsi-ld:Building:b1", "type": "Building",
                         "name": {"type": "Property", "value": "天府广场"}}]
    r = await client.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved", "q": "pm25>>3"},
                         headers=writer)
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData"
    r = await client.get("/ngsi-ld/v1/entities", params={"type": "X", "limit": 5000}, headers=writer)
    assert r.status_code == 403 and r.json()["type"] == E + "TooManyResults"
    r = await client.get("/ngsi-ld/v1/entities", headers=writer)
    assert r.status_code == 400


async def test_attribute_operations(client, writer) -> None:  # type: ignore[no-untyped-def]
    await create(client, writer, station(3))
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:cd-003"
    h = {**writer, **JS}
    r = await client.post(f"{url}/attrs", params={"options": "noOverwrite"}, headers=h,
                          content=json.dumps({"pm25": {"type": "Property", "value": 1},
                                              "pm10": {"type": "Property", "value": 50}}))
    assert r.status_code == 207 and r.json()["updated"] == ["pm10"]
    assert r.json()["notUpdated"][0]["attributeName"] == "pm25"
    r = await client.patch(f"{url}/attrs", headers=h, content=json.dumps({"pm10": {"type": "Property", "value": 55},
                                                                           "o3": {"type": "Property", "value": 1}}))
    assert r.status_code == 207 and r.json()["notUpdated"][0]["attributeName"] == "o3"
    r = await client.patch(f"{url}/attrs/pm25", headers=h, content=json.dumps({"value": 99}))
    assert r.status_code == 204, r.text
    # a fragment may carry only metadata, and may come as application/ld+json with its own @context
    r = await client.patch(f"{url}/attrs/pm25", headers={**writer, **LD}, content=json.dumps({
        "observedAt": "2026-11-24T09:00:00Z",
        "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}))
    assert r.status_code == 204, r.text
    doc = (await client.get(url, headers=writer)).json()
    assert doc["pm25"] == {"type": "Property", "value": 99, "unitCode": "GQ", "observedAt": "2026-11-24T09:00:00Z"}
    assert doc["pm10"]["value"] == 55
    # multi-attribute by datasetId
    r = await client.post(f"{url}/attrs", headers=h, content=json.dumps({"pm25": {
        "type": "Property", "value": 7, "datasetId": "urn:ngsi-ld:Dataset:satellite"}}))
    assert r.status_code == 204
    assert len((await client.get(url, headers=writer)).json()["pm25"]) == 2
    r = await client.delete(f"{url}/attrs/pm25", params={"datasetId": "urn:ngsi-ld:Dataset:satellite"},
                            headers=writer)
    assert r.status_code == 204
    assert (await client.get(url, headers=writer)).json()["pm25"]["value"] == 99
    assert (await client.delete(f"{url}/attrs/nope", headers=writer)).status_code == 404
    r = await client.patch(url, headers={**writer, "Content-Type": "application/merge-patch+json"},
                           content=json.dumps({"pm10": "urn:ngsi-ld:null", "note": "校准后"}))
    assert r.status_code == 204, r.text
    doc = (await client.get(url, headers=writer)).json()
    assert "pm10" not in doc and doc["note"] == {"type": "Property", "value": "校准后"}
    assert (await client.delete(url, headers=writer)).status_code == 204
    r = await client.get(url, headers=writer)
    assert r.status_code == 404 and r.json()["type"] == E + "ResourceNotFound"


async def test_tenants_are_isolated(client, writer) -> None:  # type: ignore[no-untyped-def]
    assert (await create(client, writer, station(4), tenant="chengdu-hbj")).status_code == 201
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:cd-004"
    assert (await client.get(url, headers={**writer, "NGSILD-Tenant": "chengdu-hbj"})).status_code == 200
    assert (await client.get(url, headers=writer)).status_code == 404
    r = await client.get(url, headers={**writer, "NGSILD-Tenant": "nobody"})
    assert r.status_code == 404 and r.json()["type"] == E + "NonexistentTenant"


async def test_access_scopes(client, writer, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    r = await client.get("/ngsi-ld/v1/entities", params={"type": "X"})
    assert r.status_code == 401
    citizen = token_for(make_user("citizen"))
    assert (await client.get("/ngsi-ld/v1/entities", params={"type": "X"}, headers=citizen)).status_code == 200
    r = await create(client, citizen, station(5))
    assert r.status_code == 403 and "context.write" in r.text


async def test_batch_operations(client, writer) -> None:  # type: ignore[no-untyped-def]
    h = {**writer, **JS}
    ents = [station(n) for n in range(20, 25)]
    r = await client.post("/ngsi-ld/v1/entityOperations/create", headers=h, content=json.dumps(ents))
    assert r.status_code == 201 and len(r.json()) == 5
    bad = {"id": "urn:ngsi-ld:AirQualityObserved:cd-099", "type": "AirQualityObserved",
           "pm25": {"type": "Relationship", "object": "not a uri"}}
    r = await client.post("/ngsi-ld/v1/entityOperations/create", headers=h,
                          content=json.dumps([station(26), station(20), bad]))
    assert r.status_code == 207
    body = r.json()
    assert body["success"] == ["urn:ngsi-ld:AirQualityObserved:cd-026"]
    assert {e["entityId"]: e["error"]["type"] for e in body["errors"]} == {
        "urn:ngsi-ld:AirQualityObserved:cd-020": E + "AlreadyExists",
        "urn:ngsi-ld:AirQualityObserved:cd-099": E + "BadRequestData"}
    upd = [{**station(21), "pm25": {"type": "Property", "value": 500}}, station(30)]
    r = await client.post("/ngsi-ld/v1/entityOperations/upsert", headers=h, content=json.dumps(upd))
    assert r.status_code == 201 and r.json() == ["urn:ngsi-ld:AirQualityObserved:cd-030"]
    doc = (await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:cd-021", headers=writer)).json()
    assert doc["pm25"]["value"] == 500
    r = await client.post("/ngsi-ld/v1/entityOperations/delete", headers=h,
                          content=json.dumps(["urn:ngsi-ld:AirQualityObserved:cd-021", "urn:nope:1", "bad id"]))
    assert r.status_code == 207 and r.json()["success"] == ["urn:ngsi-ld:AirQualityObserved:cd-021"]
    r = await client.post("/ngsi-ld/v1/entityOperations/query", headers=h, content=json.dumps({
        "type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": "pm25>=50"}))
    assert r.status_code == 200
    assert sorted(e["id"][-3:] for e in r.json()) == ["020", "022", "023", "024", "026", "030"]


async def test_discovery(client, writer) -> None:  # type: ignore[no-untyped-def]
    await create(client, writer, station(40))
    types = (await client.get("/ngsi-ld/v1/types", headers=writer)).json()
    assert "AirQualityObserved" in types["typeList"]
    info = (await client.get("/ngsi-ld/v1/types/AirQualityObserved", headers=writer)).json()
    assert info["entityCount"] == 1 and any(a["attributeName"] == "pm25" for a in info["attributeDetails"])
    attrs = (await client.get("/ngsi-ld/v1/attributes", headers=writer)).json()
    assert "pm25" in attrs["attributeList"]


async def test_smart_data_models_roundtrip(client, writer) -> None:  # type: ignore[no-untyped-def]
    base = shared_dir()
    need(base is not None, "../shared/reference not found")
    # The NGSI-LD examples (.jsonld) name their models' remote @context, which cannot be fetched offline; without it
    # their terms expand to the default vocabulary and must still come back exactly as sent.
    files = sorted(Path(base, "reference", "smart-data-models").glob("*/example-normalized.jsonld"))
    assert len(files) >= 15
    rejected: list[str] = []
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        entity = data[0] if isinstance(data, list) else data
        entity = {k: v for k, v in entity.items() if k != "@context"}
        r = await create(client, writer, entity)
        if not is_uri(entity["id"]):
            # e.g. WeatherForecast's "Spain-WeatherForecast-46005_…" has no URI scheme: NGSI-LD ids must be URIs.
            assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData", f.parent.name
            rejected.append(f.parent.name)
            continue
        assert r.status_code == 201, (f.parent.name, r.text)
        got = (await client.get(f"/ngsi-ld/v1/entities/{entity['id']}", headers=writer)).json()
        expected = {k: v for k, v in entity.items() if k not in ("createdAt", "modifiedAt")}  # system-generated
        assert got == expected, f.parent.name
    assert len(rejected) <= 2, rejected


async def test_crash_paths_found_by_the_etsi_suite(client, writer) -> None:  # type: ignore[no-untyped-def]
    """Inputs that once answered 500: a non-Latin-1 id, attribute routes on 'scope', a non-string id in a query."""
    r = await create(client, writer, {"id": "urn:ngsi-ld:Building:天府广场", "type": "Building"})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:%E5%A4%A9%E5%BA%9C%E5%B9%BF%E5%9C%BA"
    got = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:天府广场", headers=writer)
    assert got.status_code == 200 and got.json()["id"] == "urn:ngsi-ld:Building:天府广场"
    r = await client.put("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:天府广场/attrs/scope", headers={**writer, **JS},
                         content=json.dumps({"type": "Property", "value": "/a"}))
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData"
    r = await client.post("/ngsi-ld/v1/entityOperations/query", headers={**writer, **JS}, content=json.dumps({
        "type": "Query", "entities": [{"id": ["urn:a:1", "urn:a:2"], "type": "Building"}]}))
    assert r.status_code == 200 and r.json() == []  # an array of ids is an EntitySelector id too (§5.2.33)
    r = await client.post("/ngsi-ld/v1/entityOperations/query", headers={**writer, **JS}, content=json.dumps({
        "type": "Query", "entities": [{"id": ["urn:a:1", {"id": "urn:a:2"}], "type": "Building"}]}))
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData"
    r = await client.get("/ngsi-ld/v1/entities", params={"id": "not a uri"}, headers=writer)
    assert r.status_code == 400


async def test_ngsi_ld_null_deletes(client, writer) -> None:  # type: ignore[no-untyped-def]
    """urn:ngsi-ld:null deletes attributes, instances and sub-attributes in every update operation."""
    null = "urn:ngsi-ld:null"
    entity = station(50, accuracy={"type": "Property", "value": 0.9, "method": {"type": "Property", "value": "lab"}},
                     pm10=[{"type": "Property", "value": 1}, {"type": "Property", "value": 2,
                                                              "datasetId": "urn:ngsi-ld:Dataset:b"}],
                     ghost={"type": "Property", "value": null})
    # NGSI-LD Null only means "delete" in an update: a new entity cannot hold it (§5.2.1)
    assert (await create(client, writer, entity)).status_code == 400
    del entity["ghost"]
    assert (await create(client, writer, entity)).status_code == 201
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:cd-050"
    h = {**writer, **JS}
    # merge-patch: a GeoProperty (whose value would otherwise have to be GeoJSON) and a sub-attribute
    r = await client.patch(url, headers={**writer, "Content-Type": "application/merge-patch+json"}, content=json.dumps({
        "location": {"type": "GeoProperty", "value": null}, "accuracy": {"type": "Property", "value": 0.8,
                                                                         "method": null}}))
    assert r.status_code == 204, r.text
    doc = (await client.get(url, headers=writer)).json()
    assert "location" not in doc and doc["accuracy"] == {"type": "Property", "value": 0.8}
    # PATCH /attrs: one datasetId instance
    r = await client.patch(f"{url}/attrs", headers=h, content=json.dumps({"pm10": {
        "type": "Property", "value": null, "datasetId": "urn:ngsi-ld:Dataset:b"}}))
    assert r.status_code == 204, r.text
    assert (await client.get(url, headers=writer)).json()["pm10"] == {"type": "Property", "value": 1}
    # PATCH /attrs/{attr}: the whole attribute
    r = await client.patch(f"{url}/attrs/district", headers=h, content=json.dumps({"value": null}))
    assert r.status_code == 204, r.text
    doc = (await client.get(url, headers=writer)).json()
    assert "district" not in doc
    got = await client.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved", "q": "district"},
                           headers=writer)
    assert all(e["id"] != doc["id"] for e in got.json())  # the query index forgot it too


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
async def test_invalid_entity_id_in_path_is_bad_request(client, writer, method: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.request(method, "/ngsi-ld/v1/entities/not-a-uri", headers={**writer, **JS}, content=b"{}")
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData"


async def test_authentication_comes_before_input_checks(client) -> None:  # type: ignore[no-untyped-def]
    r = await client.post("/ngsi-ld/v1/entities", headers={"Content-Type": "text/plain"}, content=b"x")
    assert r.status_code == 401
    assert (await client.get("/ngsi-ld/v1/entities/not-a-uri")).status_code == 401
