"""NGSI-LD behaviour checked by the ETSI conformance suite (issue 4, fourth run): the batch Query body, batch update
with noOverwrite, the type selector on single-entity writes, scope and type changes by update, multi-attributes.

Payloads come from the suite's own data (`../shared/reference/ngsi-ld/etsi-test-suite/data/`), sent without their
forge @context (the core context expands their terms the same way for these checks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need, shared_dir

E = "https://uri.etsi.org/ngsi-ld/errors/"
JS = {"Content-Type": "application/json"}
LD = {"Content-Type": "application/ld+json"}
URL = "/ngsi-ld/v1/entities"
OPS = "/ngsi-ld/v1/entityOperations"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"


@pytest.fixture
def writer(make_user, token_for):  # type: ignore[no-untyped-def]
    return token_for(make_user("department_staff", org="hbj"))


def sample(name: str, entity_id: str | None = None) -> dict[str, Any]:
    """A payload of the ETSI suite without its @context, with `entity_id` as its id."""
    base = shared_dir()
    path = base / "reference/ngsi-ld/etsi-test-suite/data/entities" / name if base is not None else None
    need(path is not None and path.is_file(), f"ETSI payload {name} is missing from ../shared/reference")
    assert path is not None
    doc = json.loads(Path(path).read_text())
    doc.pop("@context", None)
    if entity_id is not None:
        doc["id"] = entity_id
    return doc


def problem(r: Any, status: int, etype: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == E + etype and body["detail"], body
    return body


async def create(client, headers, entity: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(URL, headers={**headers, **JS}, content=json.dumps(entity))
    assert r.status_code == 201, r.text


async def get(client, headers, entity_id: str, **params: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.get(f"{URL}/{entity_id}", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def query(client, headers, body: dict[str, Any], **params: str):  # type: ignore[no-untyped-def]
    return await client.post(f"{OPS}/query", headers={**headers, **JS}, params=params,
                             content=json.dumps({"type": "Query", **body}))


# --- batch query body ------------------------------------------------------------------------------------------


async def vehicles(client, headers) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    slow, fast = "urn:ngsi-ld:Vehicle:01932-A", "urn:ngsi-ld:Vehicle:01932-B"
    for eid, speed in ((slow, 80), (fast, 120)):
        await create(client, headers, {"id": eid, "type": "Vehicle", "speed": {"type": "Property", "value": speed},
                                       "brand": {"type": "Property", "value": "Mercedes"}})
    return slow, fast


async def test_batch_query_pick_omit_and_ids(client, writer) -> None:  # type: ignore[no-untyped-def]
    slow, fast = await vehicles(client, writer)
    r = await query(client, writer, {"entities": [{"type": "Vehicle"}], "pick": ["id", "speed"]})
    assert r.status_code == 200, r.text
    assert sorted(r.json(), key=lambda d: d["id"]) == [{"id": slow, "speed": {"type": "Property", "value": 80}},
                                                       {"id": fast, "speed": {"type": "Property", "value": 120}}]
    r = await query(client, writer, {"entities": [{"type": "Vehicle"}], "omit": "speed,type"})
    assert r.status_code == 200 and all(set(d) == {"id", "brand"} for d in r.json()), r.text
    # pick of attributes only selects the entities that carry them (as GET /entities does)
    r = await query(client, writer, {"entities": [{"type": "Vehicle"}], "pick": ["speed"], "q": "speed>100"})
    assert r.json() == [{"speed": {"type": "Property", "value": 120}}]
    # id: a URI or an array of them, and it takes precedence over idPattern
    r = await query(client, writer, {"entities": [{"type": "Vehicle", "id": [slow, fast]}]})
    assert sorted(d["id"] for d in r.json()) == [slow, fast]
    r = await query(client, writer, {"entities": [{"type": "Vehicle", "id": slow, "idPattern": "B$"}]})
    assert [d["id"] for d in r.json()] == [slow]
    r = await query(client, writer, {"entities": [{"type": "Vehicle", "idPattern": "B$"}]})
    assert [d["id"] for d in r.json()] == [fast]


@pytest.mark.parametrize("body", [
    {"entities": [{"type": "Vehicle"}], "attrs": []},
    {"entities": [{"type": "Vehicle"}], "attrs": ["speed", 3]},
    {"entities": []},
    {"entities": [{"id": "urn:ngsi-ld:Vehicle:01932-A"}]},
    {"entities": [{"type": "Vehicle", "id": "not a uri"}]},
    {"entities": [{"type": "Vehicle", "id": ["urn:ngsi-ld:Vehicle:01932-A", 5]}]},
    {"entities": [{"type": "Vehicle"}], "q": 42},
    {"entities": [{"type": "Vehicle"}], "join": "inline", "joinLevel": 0},
    {"entities": [{"type": "Vehicle"}], "join": "inline", "joinLevel": "2"},
    {"entities": [{"type": "Vehicle"}], "pick": []},
    {"entities": [{"type": "Vehicle"}], "pick": ["speed"], "omit": ["speed"]},
    {"entities": [{"type": "Vehicle"}], "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}},
    {"entities": [{"type": "Vehicle"}], "ordering": {"orderBy": ["location;dist-asc"], "coordinates": "8,40"}},
    {"entities": [{"type": "Vehicle"}], "ordering": {"orderBy": ["id;asc"], "geometry": 5}},
])
async def test_batch_query_body_checks(client, writer, body) -> None:  # type: ignore[no-untyped-def]
    await vehicles(client, writer)
    problem(await query(client, writer, body), 400, "BadRequestData")


async def test_batch_query_join(client, writer) -> None:  # type: ignore[no-untyped-def]
    building, city = "urn:ngsi-ld:Building:019-13-1", "urn:ngsi-ld:City:019-13-1"
    await create(client, writer, sample("building-relationship.jsonld", building) | {
        "locatedAt": {"type": "Relationship", "object": city}})
    await create(client, writer, sample("city-minimal.jsonld", city))
    r = await query(client, writer, {"entities": [{"type": "Building"}], "join": "inline"})
    assert r.status_code == 200, r.text
    [doc] = r.json()
    assert doc["locatedAt"]["entity"]["id"] == city
    r = await query(client, writer, {"entities": [{"type": "Building"}], "join": "flat", "joinLevel": 1},
                    options="keyValues")
    assert sorted(d["id"] for d in r.json()) == [building, city]
    assert next(d for d in r.json() if d["id"] == building)["locatedAt"] == city


async def test_batch_query_open_types_only(client, ctx, writer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Anonymous callers see the open entity types through the batch query too, as through GET /entities."""
    from cityplus.modules.context.runtime import runtime

    slow, fast = await vehicles(client, writer)
    await create(client, writer, sample("building-minimal.json", "urn:ngsi-ld:Building:open-1"))
    monkeypatch.setattr(runtime(ctx).settings, "open_types", ["Building"])
    body = {"entities": [{"type": "Vehicle|Building"}]}
    r = await query(client, {}, body)
    assert r.status_code == 200 and [d["id"] for d in r.json()] == ["urn:ngsi-ld:Building:open-1"], r.text
    r = await query(client, {}, {"entities": [{"type": "Vehicle"}]})
    assert r.status_code == 200 and r.json() == [], r.text
    r = await query(client, writer, body)
    assert len(r.json()) == 3


# --- batch writes ----------------------------------------------------------------------------------------------


async def test_batch_update_no_overwrite_reports_kept_attributes(client, writer) -> None:  # type: ignore[no-untyped-def]
    a, b = "urn:ngsi-ld:Building:00502-a", "urn:ngsi-ld:Building:00502-b"
    for eid in (a, b):
        await create(client, writer, sample("building-location-attribute.jsonld", eid))
    fragment = sample("fragmentEntities/location-fragment.json")
    moved = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1.0, 2.0]}}
    batch = [{"id": a, "type": "Building", "location": moved, "height": {"type": "Property", "value": 9}},
             {"id": b, "type": "Building", **fragment}]
    r = await client.post(f"{OPS}/update", headers={**writer, **JS}, params={"options": "noOverwrite"},
                          content=json.dumps(batch))
    assert r.status_code == 207, r.text
    assert r.json()["success"] == [] and [e["entityId"] for e in r.json()["errors"]] == [a, b]
    assert all("location" in e["error"]["detail"] for e in r.json()["errors"])
    doc = await get(client, writer, a)
    assert doc["location"]["value"]["coordinates"] == [13.3986, 52.5547]  # kept
    assert doc["height"]["value"] == 9  # the new attribute was appended
    # nothing to keep: 204
    r = await client.post(f"{OPS}/update", headers={**writer, **JS}, params={"options": "noOverwrite"},
                          content=json.dumps([{"id": a, "type": "Building", "floors": {"type": "Property",
                                                                                        "value": 3}}]))
    assert r.status_code == 204, r.text


async def test_batch_context_rules(client, writer) -> None:  # type: ignore[no-untyped-def]
    ok, bad = "urn:ngsi-ld:Building:00306-ok", "urn:ngsi-ld:Building:00306-bad"
    body = [sample("building-simple-attributes.jsonld", ok),
            {**sample("building-simple-attributes.jsonld", bad), "@context": CORE}]
    r = await client.post(f"{OPS}/create", headers={**writer, **JS}, content=json.dumps(body))
    assert r.status_code == 207, r.text
    assert r.json()["success"] == [ok]
    [err] = r.json()["errors"]
    assert err["entityId"] == bad and err["error"]["type"] == E + "BadRequestData"
    # application/ld+json with a JSON-LD Link header: the whole request is refused, nothing is written
    link = {"Link": f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}
    other = {**sample("building-simple-attributes.jsonld", "urn:ngsi-ld:Building:00309"), "@context": CORE}
    problem(await client.post(f"{OPS}/create", headers={**writer, **LD, **link}, content=json.dumps([other])), 400,
            "BadRequestData")
    assert (await client.get(f"{URL}/urn:ngsi-ld:Building:00309", headers=writer)).status_code == 404


# --- single-entity writes: type selector, scope, types, datasetId ----------------------------------------------


async def test_type_selector_gates_single_entity_writes(client, writer) -> None:  # type: ignore[no-untyped-def]
    eid = "urn:ngsi-ld:Building:0562"
    await create(client, writer, {"id": eid, "type": "Building", "name": {"type": "Property", "value": "x"}})
    h = {**writer, **JS}
    prop = json.dumps({"name": {"type": "Property", "value": "y"}})
    attr = json.dumps({"type": "Property", "value": "z"})
    writes = [
        ("PATCH", f"{URL}/{eid}/attrs", prop, 204), ("POST", f"{URL}/{eid}/attrs", prop, 204),
        ("PATCH", f"{URL}/{eid}/attrs/name", json.dumps({"value": "w"}), 204),
        ("PUT", f"{URL}/{eid}/attrs/name", attr, 204), ("PATCH", f"{URL}/{eid}", prop, 204),
        ("PUT", f"{URL}/{eid}", json.dumps({"type": "Building", "name": {"type": "Property", "value": "v"}}), 204),
        ("DELETE", f"{URL}/{eid}/attrs/name", None, 204), ("DELETE", f"{URL}/{eid}", None, 204),
    ]
    for method, path, body, ok in writes:
        r = await client.request(method, path, headers=h, content=body, params={"type": "Vehicle"})
        problem(r, 404, "ResourceNotFound")
        assert (await get(client, writer, eid))["type"] == "Building"  # nothing was written
        r = await client.request(method, path, headers=h, content=body, params={"type": "Vehicle|Building"})
        assert r.status_code == ok, (method, path, r.text)
    assert (await client.get(f"{URL}/{eid}", headers=writer)).status_code == 404


async def test_scope_in_append_update_patch_and_delete(client, writer) -> None:  # type: ignore[no-untyped-def]
    madrid, other = "urn:ngsi-ld:Building:scope-1", "urn:ngsi-ld:Building:scope-2"
    await create(client, writer, sample("building-minimal-with-one-scope.json", madrid))
    await create(client, writer, sample("building-minimal.json", other))
    fragment = json.dumps(sample("fragmentEntities/one-scope-fragment.json"))
    h = {**writer, **JS}
    # append replaces the scope; with noOverwrite it adds to it
    assert (await client.post(f"{URL}/{madrid}/attrs", headers=h, content=fragment)).status_code == 204
    assert (await get(client, writer, madrid))["scope"] == "/CompanyA/OrganizationB/UnitC"
    r = await client.post(f"{URL}/{madrid}/attrs", headers=h, content=json.dumps({"scope": "/Madrid"}),
                          params={"options": "noOverwrite"})
    assert r.status_code == 204 and (await get(client, writer, madrid))["scope"] == ["/CompanyA/OrganizationB/UnitC",
                                                                                   "/Madrid"]
    # update replaces an existing scope, and does not add one
    assert (await client.patch(f"{URL}/{madrid}/attrs", headers=h, content=fragment)).status_code == 204
    assert (await get(client, writer, madrid))["scope"] == "/CompanyA/OrganizationB/UnitC"
    r = await client.patch(f"{URL}/{other}/attrs", headers=h, content=fragment)
    assert r.status_code == 207 and r.json()["notUpdated"][0]["attributeName"] == "scope", r.text
    assert "scope" not in await get(client, writer, other)
    # scope is not an attribute to patch, but can be deleted like one
    problem(await client.patch(f"{URL}/{madrid}/attrs/scope", headers=h, content=json.dumps({"value": "/B"})), 400,
            "BadRequestData")
    assert (await client.delete(f"{URL}/{madrid}/attrs/scope", headers=writer)).status_code == 204
    assert "scope" not in await get(client, writer, madrid)
    problem(await client.delete(f"{URL}/{madrid}/attrs/scope", headers=writer), 404, "ResourceNotFound")
    r = await client.get(URL, params={"type": "Building", "scopeQ": "/CompanyA"}, headers=writer)
    assert r.json() == []


@pytest.mark.parametrize(("fragment", "types"), [
    ("fragmentEntities/types-vehicle-car-fragment.json", ["Building", "Vehicle", "Car"]),
    ("fragmentEntities/type-vehicle-building-fragment.json", ["Building", "Vehicle"]),
    ("fragmentEntities/type-building-fragment.json", "Building"),
])
async def test_update_adds_types(client, writer, fragment, types) -> None:  # type: ignore[no-untyped-def]
    eid = "urn:ngsi-ld:Building:types"
    await create(client, writer, sample("building-minimal.json", eid))
    body = sample(fragment)
    r = await client.patch(f"{URL}/{eid}/attrs", headers={**writer, **JS}, content=json.dumps(body))
    assert r.status_code == 204, r.text
    assert (await get(client, writer, eid))["type"] == types
    r = await client.get(URL, params={"type": types[-1] if isinstance(types, list) else types}, headers=writer)
    assert [d["id"] for d in r.json()] == [eid]  # the type index follows


async def test_dataset_id_none_and_null(client, writer) -> None:  # type: ignore[no-untyped-def]
    eid = "urn:ngsi-ld:Vehicle:0455"
    gps = "urn:ngsi-ld:Dataset:gps"
    await create(client, writer, {"id": eid, "type": "Vehicle", "speed": [
        {"type": "Property", "value": 55, "datasetId": "@none"}, {"type": "Property", "value": 11, "datasetId": gps}]})
    speeds = (await get(client, writer, eid))["speed"]
    assert sorted((s.get("datasetId", ""), s["value"]) for s in speeds) == [("", 55), (gps, 11)]
    h = {**writer, **JS}
    r = await client.post(URL, headers=h, content=json.dumps({"id": "urn:ngsi-ld:Vehicle:0455b", "type": "Vehicle",
                                                              "speed": [{"type": "Property", "value": 1},
                                                                        {"type": "Property", "value": 2,
                                                                         "datasetId": "@none"}]}))
    problem(r, 400, "BadRequestData")  # two default instances
    problem(await client.patch(f"{URL}/{eid}/attrs/speed", headers=h,
                               content=json.dumps({"datasetId": "urn:ngsi-ld:null"})), 400, "BadRequestData")
    r = await client.patch(f"{URL}/{eid}/attrs/speed", headers=h, content=json.dumps({"value": 56,
                                                                                       "datasetId": "@none"}))
    assert r.status_code == 204, r.text
    assert sorted(s["value"] for s in (await get(client, writer, eid))["speed"]) == [11, 56]


# --- payload strictness ----------------------------------------------------------------------------------------

PROOF = {"type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022", "proofValue": "zQeV"}


@pytest.mark.parametrize("extra", [
    {"type": "type"}, {"type": "9Vehicle"}, {"type": ["Vehicle", "id"]},
    {"datasetId": {"type": "Property", "value": 1}}, {"instanceId": {"type": "Property", "value": 1}},
    {"observedAt": {"type": "Property", "value": "2026-01-01T00:00:00Z"}},
    {"speed": {"type": "Property", "value": 1, "@context": {"speed": "https://evil.example/speed"}}},
    {"tickets": {"type": "JsonProperty", "json": {"a": 1}, "unitCode": "MTR"}},
    {"tickets": {"type": "JsonProperty", "json": 5}}, {"tickets": {"json": "raw"}},
    {"speed": {"type": "Property", "value": 1, "previousValue": 0}},
    {"speed": {"type": "Property", "value": 1, "entityIdSealed": "urn:ngsi-ld:Vehicle:x"}},
    {"ngsildproof": {"type": "Property", "value": "not-a-proof-object"}},
    {"ngsildproof": {"type": "Property", "value": PROOF, "entityTypeSealed": 42}},
    {"isParked": {"type": "Relationship", "object": "urn:ngsi-ld:Parking:1", "unitCode": "MTR"}},
    {"isParked": {"type": "Relationship", "object": "urn:ngsi-ld:Parking:1", "previousObject": "urn:a:b"}},
    {"location": {"type": "GeoProperty", "value": {"type": "GeometryCollection", "geometries": [
        {"type": "Point", "coordinates": [17.1, 48.7]}]}}},
    {"location": {"type": "Property", "value": 7}},
    {"location": {"type": "GeoProperty", "value": "{not json"}},
    {"name": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}},
    {"name": {"type": "LanguageProperty", "languageMap": {"en": "x"}, "valueType": "xsd:string"}},
    {"name": {"type": "LanguageProperty", "languageMap": {"": "x"}}},
    {"speed": {"type": "Property", "value": "urn:ngsi-ld:null"}},
    {"isParked": {"type": "Relationship", "object": "urn:ngsi-ld:null"}},
    {"speed": {"type": "Property", "value": 1, "sub": {"type": "Property", "value": "urn:ngsi-ld:null"}}},
    {"address": {"type": "Property", "value": {"geo": {"country": "urn:ngsi-ld:null"}}}},
    {"scope": "urn:ngsi-ld:null"}, {"id": "urn:ngsi-ld:null"}, {"@id": "urn:ngsi-ld:Vehicle:other"},
])
async def test_create_refuses_what_the_spec_forbids(client, writer, extra) -> None:  # type: ignore[no-untyped-def]
    entity = {"id": "urn:ngsi-ld:Vehicle:strict", "type": "Vehicle", **extra}
    problem(await client.post(URL, headers={**writer, **JS}, content=json.dumps(entity)), 400, "BadRequestData")
    assert (await client.get(f"{URL}/urn:ngsi-ld:Vehicle:strict", headers=writer)).status_code == 404
    # the same entity in a batch create fails alone
    r = await client.post(f"{OPS}/create", headers={**writer, **JS},
                          content=json.dumps([entity, {"id": "urn:ngsi-ld:Vehicle:fine", "type": "Vehicle"}]))
    assert r.status_code == 207 and r.json()["success"] == ["urn:ngsi-ld:Vehicle:fine"], r.text


async def test_create_accepts_what_the_spec_allows(client, writer) -> None:  # type: ignore[no-untyped-def]
    eid = "urn:ngsi-ld:Vehicle:lenient"
    entity = {"@id": eid, "@type": "Vehicle", "speed": {"type": "Property", "value": 42,
                                                         "observedAt": "2026-08-10T12:00:00+08:00"},
              "location": {"type": "GeoProperty", "value": '{"type": "Point", "coordinates": [17.1, 48.7]}'},
              "ngsildproof": {"type": "Property", "value": PROOF, "entityIdSealed": eid},
              "tickets": {"json": {"speed": 3, "type": "raw"}},
              "name": {"type": "LanguageProperty", "languageMap": {"en": "x"}, "valueType": "langString"},
              "address": {"type": "Property", "value": {"street": None, "city": "成都"}},
              "field": {"type": "Property", "value": {"type": "Point", "coordinates": [1, 2]}}}
    await create(client, writer, entity)
    doc = await get(client, writer, eid)
    assert doc["id"] == eid and doc["type"] == "Vehicle" and "@id" not in doc and "@type" not in doc
    assert doc["location"]["value"] == {"type": "Point", "coordinates": [17.1, 48.7]}
    assert doc["tickets"] == {"type": "JsonProperty", "json": {"speed": 3, "type": "raw"}}
    # observedAt with an offset: v1.8 clients (and devices in UTC+8) send them; the broker keeps what was sent
    assert doc["speed"]["observedAt"] == "2026-08-10T12:00:00+08:00"
    # a Smart Data Models example types location as a Property holding GeoJSON: still accepted
    await create(client, writer, {"id": "urn:ngsi-ld:DeviceMeasurement:1", "type": "DeviceMeasurement",
                                  "location": {"type": "Property", "value": {"type": "Point",
                                                                             "coordinates": [60.17, 24.93]}}})


async def test_partial_update_refuses_nested_null(client, writer) -> None:  # type: ignore[no-untyped-def]
    eid = "urn:ngsi-ld:Vehicle:0554"
    await create(client, writer, {"id": eid, "type": "Vehicle", "address": {
        "type": "Property", "value": {"street": "Straße des 17. Juni", "country": "Germany"}}})
    problem(await client.patch(f"{URL}/{eid}/attrs/address", headers={**writer, **JS},
                               content=json.dumps({"value": {"country": "urn:ngsi-ld:null"}})), 400, "BadRequestData")
    assert (await get(client, writer, eid))["address"]["value"]["country"] == "Germany"
    # a merge may remove the key
    merge = {"address": {"type": "Property", "value": {"country": "urn:ngsi-ld:null"}}}
    r = await client.patch(f"{URL}/{eid}", headers={**writer, **JS}, content=json.dumps(merge))
    assert r.status_code == 204, r.text


# --- orderBy (v1.9.1 §4.23) --------------------------------------------------------------------------------------


async def ordered(client, headers, **params: str) -> list[str]:  # type: ignore[no-untyped-def]
    r = await client.get(URL, params={"type": "Building", **params}, headers=headers)
    assert r.status_code == 200, r.text
    return [d["id"].rsplit(":", 1)[1] for d in r.json()]


async def test_order_by(client, writer) -> None:  # type: ignore[no-untyped-def]
    rows = [("near", [8.01, 40.01], 5, "Amsterdam", "b", 3), ("mid", [9.0, 42.0], "x", "Berlin", "á", 1),
            ("far", [12.0, 48.0], None, "Zurich", "A", 2)]
    for suffix, point, probe, city, name, sub in rows:
        entity = {"id": f"urn:ngsi-ld:Building:{suffix}", "type": "Building",
                  "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": point}},
                  "address": {"type": "Property", "value": {"city": city}},
                  "name": {"type": "Property", "value": name, "subProperty": {"type": "Property", "value": sub}}}
        if probe is not None:
            entity["rankProbe"] = {"type": "Property", "value": probe}
        await create(client, writer, entity)
    assert await ordered(client, writer, orderBy="location;dist-asc", orderFrom="[8,40]") == ["near", "mid", "far"]
    assert await ordered(client, writer, orderBy="location;dist-desc", orderFrom="[8,40]") == ["far", "mid", "near"]
    # numbers < strings < absent, whatever the direction
    assert await ordered(client, writer, orderBy="rankProbe") == ["near", "mid", "far"]
    assert await ordered(client, writer, orderBy="rankProbe;desc") == ["mid", "near", "far"]
    assert await ordered(client, writer, orderBy="address[city];desc") == ["far", "mid", "near"]
    assert await ordered(client, writer, orderBy="name.subProperty") == ["mid", "far", "near"]
    assert await ordered(client, writer, orderBy="id;desc") == ["near", "mid", "far"]
    assert await ordered(client, writer, orderBy="createdAt;desc") == ["far", "mid", "near"]
    assert await ordered(client, writer, orderBy="type,name.createdAt") == ["near", "mid", "far"]
    # code points by default (A < b < á); the root collation ranks á with a
    assert await ordered(client, writer, orderBy="name") == ["far", "near", "mid"]
    assert await ordered(client, writer, orderBy="name", collation="und") == ["far", "mid", "near"]
    # paging and count apply to the ordered list
    r = await client.get(URL, params={"type": "Building", "orderBy": "name;desc", "limit": "1", "offset": "1",
                                      "count": "true"}, headers=writer)
    assert [d["id"] for d in r.json()] == ["urn:ngsi-ld:Building:near"] and r.headers["NGSILD-Results-Count"] == "3"
    # the batch query's ordering member
    body = {"entities": [{"type": "Building"}], "ordering": {"orderBy": ["location;dist-asc"],
                                                              "coordinates": [12, 48], "geometry": "Point"}}
    r = await query(client, writer, body)
    assert [d["id"].rsplit(":", 1)[1] for d in r.json()] == ["far", "mid", "near"], r.text


@pytest.mark.parametrize("params", [
    {"orderBy": "location;dist-asc"}, {"orderBy": "name;sideways"}, {"orderBy": "name", "collation": "!!nope"},
    {"orderBy": "name", "collation": "not a bcp47 tag!!"}, {"collation": "und"}, {"orderFrom": "[8,40]"},
    {"orderBy": "location;dist-asc", "orderFrom": "8,40"}, {"orderBy": "id.x"}, {"orderBy": "name[city"},
])
async def test_order_by_checks(client, writer, params) -> None:  # type: ignore[no-untyped-def]
    problem(await client.get(URL, params={"type": "Building", **params}, headers=writer), 400, "BadRequestData")


# --- purge (v1.9.1 §5.6.21) and /jsonldContexts --------------------------------------------------------------


async def test_purge_entities(client, writer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cityplus.modules.context import api

    monkeypatch.setattr(api, "PURGE_CHUNK", 1)  # several rounds
    for i in range(3):
        await create(client, writer, {"id": f"urn:ngsi-ld:Vehicle:p{i}", "type": "Vehicle",
                                      "speed": {"type": "Property", "value": i * 50}})
    await create(client, writer, {"id": "urn:ngsi-ld:Building:keep", "type": "Building"})
    problem(await client.delete(URL, headers=writer), 400, "BadRequestData")  # never "everything"
    problem(await client.delete(URL, params={"type": "Vehicle", "invalidParam": "1"}, headers=writer), 400,
            "InvalidRequest")
    r = await client.delete(URL, params={"type": "Vehicle", "q": "speed>=50"}, headers=writer)
    assert r.status_code == 204, r.text
    left = await client.get(URL, params={"type": "Vehicle,Building"}, headers=writer)
    assert sorted(d["id"] for d in left.json()) == ["urn:ngsi-ld:Building:keep", "urn:ngsi-ld:Vehicle:p0"]
    problem(await client.delete(URL, params={"type": "Vehicle"}, headers={**writer, "NGSILD-Tenant": "nobody"}), 404,
            "NonexistentTenant")


async def test_length_required(client, writer) -> None:  # type: ignore[no-untyped-def]
    async def chunked():  # type: ignore[no-untyped-def]
        yield json.dumps({"id": "urn:ngsi-ld:Building:411", "type": "Building"}).encode()

    for method, path in (("POST", URL), ("PATCH", f"{URL}/urn:ngsi-ld:Building:411/attrs"),
                         ("PUT", f"{URL}/urn:ngsi-ld:Building:411")):
        r = await client.request(method, path, headers={**writer, **JS, "NGSILD-Tenant": "nosuchtenant"},
                                 content=chunked())
        assert r.status_code == 411 and r.content == b"", (method, r.text)
    assert (await client.get(f"{URL}/urn:ngsi-ld:Building:411", headers=writer)).status_code == 404
    assert (await client.get(URL, params={"type": "Building"}, headers=writer)).status_code == 200


async def test_object_list_forms(client, writer) -> None:  # type: ignore[no-untyped-def]
    eid = "urn:ngsi-ld:Vehicle:4522"
    await create(client, writer, {"id": eid, "type": "Vehicle", "route": {
        "type": "ListRelationship", "objectList": ["urn:ngsi-ld:Road:1", {"object": "urn:ngsi-ld:Road:2"}]}})
    entries = [{"object": "urn:ngsi-ld:Road:1"}, {"object": "urn:ngsi-ld:Road:2"}]
    assert (await get(client, writer, eid))["route"] == {"type": "ListRelationship", "objectList": entries}
    assert (await get(client, writer, eid, format="concise"))["route"] == {"objectList": entries}
    assert (await get(client, writer, eid, options="keyValues"))["route"] == ["urn:ngsi-ld:Road:1",
                                                                             "urn:ngsi-ld:Road:2"]
    for road in ("urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"):
        r = await client.get(URL, params={"type": "Vehicle", "q": f"route=={road}"}, headers=writer)
        assert [d["id"] for d in r.json()] == [eid], r.text
