"""NGSI-LD API behaviour checked by the ETSI conformance suite: parameter validation, pick/omit, linked entity
retrieval (join), GeoJSON, language negotiation, content negotiation, tenant echo, paging links and discovery."""

from __future__ import annotations

import json
from typing import Any

import pytest

E = "https://uri.etsi.org/ngsi-ld/errors/"
JS = {"Content-Type": "application/json"}
URL = "/ngsi-ld/v1/entities"
CITY = "urn:ngsi-ld:City:chengdu"
COUNTRY = "urn:ngsi-ld:Country:cn"
BUILDING = "urn:ngsi-ld:Building:tfgc"


@pytest.fixture
def writer(make_user, token_for):  # type: ignore[no-untyped-def]
    return token_for(make_user("department_staff", org="hbj"))


async def create(client, headers, entity: dict[str, Any], tenant: str | None = None):  # type: ignore[no-untyped-def]
    h = {**headers, **JS, **({"NGSILD-Tenant": tenant} if tenant else {})}
    r = await client.post(URL, headers=h, content=json.dumps(entity))
    assert r.status_code == 201, r.text
    return r


async def city_graph(client, headers) -> None:  # type: ignore[no-untyped-def]
    """Building → City → Country, linked by locatedAt."""
    await create(client, headers, {"id": BUILDING, "type": "Building",
                                   "name": {"type": "Property", "value": "天府广场"},
                                   "location": {"type": "GeoProperty",
                                                "value": {"type": "Point", "coordinates": [104.06, 30.65]}},
                                   "locatedAt": {"type": "Relationship", "object": CITY}})
    await create(client, headers, {"id": CITY, "type": "City", "name": {"type": "Property", "value": "成都"},
                                   "locatedAt": {"type": "Relationship", "object": COUNTRY}})
    await create(client, headers, {"id": COUNTRY, "type": "Country", "name": {"type": "Property", "value": "中国"}})


def problem(r: Any, status: int, etype: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == E + etype and r.json()["detail"]


# --- parameter validation --------------------------------------------------------------------------------------


async def test_unknown_query_parameters_are_invalid_request(client, writer) -> None:  # type: ignore[no-untyped-def]
    r = await client.get(URL, params={"type": "Building", "bogus": "1"}, headers=writer)
    problem(r, 400, "InvalidRequest")
    assert "bogus" in r.json()["detail"]
    # checked before the entity is looked up, and before the body is read
    problem(await client.get(f"{URL}/urn:ngsi-ld:X:none", params={"bogus": "1"}, headers=writer), 400,
            "InvalidRequest")
    problem(await client.post(URL, params={"bogus": "1"}, headers={**writer, **JS}, content=b"not json"), 400,
            "InvalidRequest")
    for path in ("/ngsi-ld/v1/types", "/ngsi-ld/v1/attributes", "/ngsi-ld/v1/types/Building",
                 "/ngsi-ld/v1/attributes/name"):
        problem(await client.get(path, params={"limit": "5"}, headers=writer), 400, "InvalidRequest")
    problem(await client.get("/ngsi-ld/v1/attributes/name", params={"details": "true"}, headers=writer), 400,
            "InvalidRequest")


@pytest.mark.parametrize("params", [{"format": "fancy"}, {"options": "invalid"}, {"options": "keyValues,invalid"},
                                    {"format": "keyValues", "options": "invalid"}])
async def test_bad_format_or_options_before_lookup(client, writer, params) -> None:  # type: ignore[no-untyped-def]
    problem(await client.get(f"{URL}/urn:ngsi-ld:X:none", params=params, headers=writer), 400, "InvalidRequest")


@pytest.mark.parametrize("params", [
    {"pick": "name", "omit": "name"}, {"pick": "name", "attrs": "name"}, {"omit": "name", "attrs": "name"},
    {"pick": "id;name"}, {"pick": "id,locatedAt{name"}, {"pick": "id,locatedAt{{name}"}, {"pick": "id,,name"},
    {"pick": "id,locatedAt{,name}"}, {"pick": "id,locatedAt{}"}, {"pick": "name||location"}, {"pick": "name}"},
    {"pick": "locatedAt{name}"}, {"pick": "locatedAt{locatedAt{name}}", "join": "inline", "joinLevel": "1"},
    {"omit": "locatedAt{locatedAt{name}}", "join": "flat"}, {"join": "inline", "joinLevel": "0"},
    {"join": "sideways"}, {"attrs": "id,type"}, {"attrs": "name,,location"},
])
async def test_invalid_projection_and_join(client, writer, params) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    problem(await client.get(f"{URL}/{BUILDING}", params=params, headers=writer), 400, "BadRequestData")
    problem(await client.get(URL, params={"type": "Building", **params}, headers=writer), 400, "BadRequestData")


async def test_selectors(client, writer) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    # an id list alone is not a selector; with a type it is
    problem(await client.get(URL, params={"id": f"{CITY},{COUNTRY}"}, headers=writer), 400, "BadRequestData")
    r = await client.get(URL, params={"id": f"{CITY},{COUNTRY}", "type": "City,Country"}, headers=writer)
    assert sorted(e["id"] for e in r.json()) == [CITY, COUNTRY]
    # local=true and type=* ask for every entity
    for params in ({"local": "true"}, {"type": "*"}):
        r = await client.get(URL, params=params, headers=writer)
        assert r.status_code == 200 and len(r.json()) == 3, r.text
    problem(await client.get(URL, params={"type": "*", "local": "false"}, headers=writer), 400, "BadRequestData")
    problem(await client.get(URL, params={"type": "Building", "count": "yes"}, headers=writer), 400,
            "BadRequestData")


async def test_type_selector_on_retrieve(client, writer) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    problem(await client.get(f"{URL}/{BUILDING}", params={"type": "Vehicle"}, headers=writer), 404,
            "ResourceNotFound")
    assert (await client.get(f"{URL}/{BUILDING}", params={"type": "Building"}, headers=writer)).status_code == 200


# --- pick / omit -----------------------------------------------------------------------------------------------


async def test_pick_omit_and_empty_projections(client, writer) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    url = f"{URL}/{BUILDING}"
    comma = (await client.get(url, params={"pick": "name,location"}, headers=writer)).json()
    pipe = (await client.get(url, params={"pick": "name|location"}, headers=writer)).json()
    assert comma == pipe and set(comma) == {"name", "location"}
    r = await client.get(url, params={"omit": "id,type,location"}, headers=writer)
    assert set(r.json()) == {"name", "locatedAt"}
    # nothing left of the entity: 404
    problem(await client.get(url, params={"pick": "unknown"}, headers=writer), 404, "ResourceNotFound")
    problem(await client.get(url, params={"omit": "id,type,name,location,locatedAt"}, headers=writer), 404,
            "ResourceNotFound")
    problem(await client.get(url, params={"attrs": "unknown"}, headers=writer), 404, "ResourceNotFound")
    # in a query, pick of attributes selects the entities that have them
    r = await client.get(URL, params={"type": "Building,City,Country", "pick": "location"}, headers=writer)
    assert r.json() == [{"location": {"type": "GeoProperty",
                                      "value": {"type": "Point", "coordinates": [104.06, 30.65]}}}]
    r = await client.get(URL, params={"type": "Building,City", "pick": "id"}, headers=writer)
    assert sorted(e["id"] for e in r.json()) == [BUILDING, CITY]


# --- linked entity retrieval -----------------------------------------------------------------------------------


async def test_join_inline_and_flat(client, writer) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    url = f"{URL}/{BUILDING}"
    pick = {"pick": "id,type,locatedAt"}
    r = await client.get(url, params={**pick, "join": "inline", "joinLevel": "1"}, headers=writer)
    assert r.json()["locatedAt"] == {"type": "Relationship", "object": CITY, "entity": {
        "id": CITY, "type": "City", "name": {"type": "Property", "value": "成都"},
        "locatedAt": {"type": "Relationship", "object": COUNTRY}}}
    r = await client.get(url, params={**pick, "join": "inline", "joinLevel": "2", "options": "keyValues"},
                         headers=writer)
    assert r.json() == {"id": BUILDING, "type": "Building", "locatedAt": {
        "id": CITY, "type": "City", "name": "成都",
        "locatedAt": {"id": COUNTRY, "type": "Country", "name": "中国"}}}
    r = await client.get(url, params={"pick": "id,locatedAt", "join": "flat", "joinLevel": "2",
                                      "options": "keyValues"}, headers=writer)
    assert r.json() == [{"id": BUILDING, "locatedAt": CITY},
                        {"id": CITY, "type": "City", "name": "成都", "locatedAt": COUNTRY},
                        {"id": COUNTRY, "type": "Country", "name": "中国"}]
    # nested selections project the linked entities
    r = await client.get(url, params={"pick": "id,locatedAt{id,name}", "join": "inline"}, headers=writer)
    assert r.json() == {"id": BUILDING, "locatedAt": {"type": "Relationship", "object": CITY, "entity": {
        "id": CITY, "name": {"type": "Property", "value": "成都"}}}}
    r = await client.get(URL, params={"type": "Building", "omit": "name,location,locatedAt{name,locatedAt}",
                                      "join": "flat"}, headers=writer)
    assert r.json() == [{"id": BUILDING, "type": "Building", "locatedAt": {"type": "Relationship", "object": CITY}},
                        {"id": CITY, "type": "City"}]


async def test_join_with_missing_linked_entity(client, writer) -> None:  # type: ignore[no-untyped-def]
    await create(client, writer, {"id": BUILDING, "type": "Building",
                                  "locatedAt": {"type": "Relationship", "object": CITY}})
    expected = {"id": BUILDING, "type": "Building", "locatedAt": {"type": "Relationship", "object": CITY}}
    for join in ("inline", "flat"):
        r = await client.get(f"{URL}/{BUILDING}", params={"join": join}, headers=writer)
        assert r.status_code == 200 and r.json() == expected


# --- GeoJSON ---------------------------------------------------------------------------------------------------


async def test_geojson_representation(client, writer) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    geo = {**writer, "Accept": "application/geo+json"}
    r = await client.get(f"{URL}/{BUILDING}", headers=geo)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["type"] == "Feature" and body["id"] == BUILDING and "@context" in body and "link" not in r.headers
    assert body["geometry"] == {"type": "Point", "coordinates": [104.06, 30.65]}
    assert body["properties"]["type"] == "Building" and "id" not in body["properties"]
    r = await client.get(f"{URL}/{BUILDING}", params={"options": "keyValues", "geometryProperty": "name"},
                         headers=geo)
    assert r.json()["geometry"] is None and r.json()["properties"]["name"] == "天府广场"
    r = await client.get(URL, params={"type": "Building,City"}, headers={**geo, "Prefer": "body=json"})
    body = r.json()
    assert body["type"] == "FeatureCollection" and len(body["features"]) == 2 and "@context" not in body
    assert "link" in r.headers and all("@context" not in f for f in body["features"])
    problem(await client.get(f"{URL}/{BUILDING}", params={"geometryProperty": "location"}, headers=writer), 400,
            "BadRequestData")
    # GeoJSON is a representation of entities only
    problem(await client.get("/ngsi-ld/v1/types", headers=geo), 406, "NotAcceptable")


# --- languages, content negotiation, tenants -----------------------------------------------------------------


@pytest.mark.parametrize(("lang", "tag"), [("fr", "fr"), ("fr-CH,fr", "fr"), ("fr;q=0.2,nl;q=0.9", "nl"),
                                           ("FR", "fr"), ("nl-BE", "nl"), ("en", "en-US"), ("*", "fr"),
                                           ("pt", "fr")])
async def test_language_negotiation(client, writer, lang, tag) -> None:  # type: ignore[no-untyped-def]
    street = {"fr": "Grand Place", "nl": "Grote Markt", "en-US": "Main Square"}
    await create(client, writer, {"id": BUILDING, "type": "Building",
                                  "street": {"type": "LanguageProperty", "languageMap": street}})
    r = await client.get(f"{URL}/{BUILDING}", params={"lang": lang}, headers=writer)
    assert r.json()["street"] == {"type": "Property", "value": street[tag], "lang": tag}
    r = await client.get(f"{URL}/{BUILDING}", params={"lang": lang, "format": "concise"}, headers=writer)
    assert r.json()["street"] == {"value": street[tag], "lang": tag}
    r = await client.get(URL, params={"type": "Building", "q": 'street[*]=="Grote Markt"'}, headers=writer)
    assert len(r.json()) == 1


@pytest.mark.parametrize(("accept", "media"), [
    ("application/json;q=0, */*", "application/ld+json"), ("*/*;q=0.9, application/ld+json;q=0.8",
                                                           "application/json"),
    ("application/ld+json;q=oops", "application/ld+json"), ("application/ld+json, application/json",
                                                            "application/json"),
    ("application/geo+json;q=0.5, application/ld+json;q=0.4", "application/geo+json"),
])
async def test_accept_weights(client, writer, accept, media) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    r = await client.get(f"{URL}/{BUILDING}", headers={**writer, "Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"].startswith(media)


async def test_tenant_is_echoed(client, writer) -> None:  # type: ignore[no-untyped-def]
    h = {**writer, "NGSILD-Tenant": "tenant-a"}
    r = await client.get(URL, params={"type": "Building"}, headers=h)
    problem(r, 404, "NonexistentTenant")
    assert r.headers["ngsild-tenant"] == "tenant-a"
    r = await create(client, writer, {"id": BUILDING, "type": "Building"}, tenant="tenant-a")
    assert r.headers["ngsild-tenant"] == "tenant-a"
    r = await client.get(URL, params={"type": "Building"}, headers=h)
    assert r.status_code == 200 and r.headers["ngsild-tenant"] == "tenant-a"
    assert "ngsild-tenant" not in (await client.get(URL, params={"type": "Building"}, headers=writer)).headers


async def test_paging_links(client, writer) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        await create(client, writer, {"id": f"urn:ngsi-ld:Building:p{n}", "type": "Building"})
    r = await client.get(URL, params={"type": "Building", "idPattern": "urn:ngsi-ld:Building:p.*", "limit": "1",
                                      "offset": "1", "count": "true"}, headers=writer)
    links = [v.strip() for v in r.headers["link"].split(",") if "json-ld#context" not in v]
    path = "/ngsi-ld/v1/entities?count=true&idPattern=urn:ngsi-ld:Building:p.*&limit=1"
    assert sorted(links) == [f'<{path}&offset=0&type=Building>; rel="prev"; type="application/json"',
                             f'<{path}&offset=2&type=Building>; rel="next"; type="application/json"']


# --- discovery -------------------------------------------------------------------------------------------------


async def test_discovery_details(client, writer) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    r = await client.get("/ngsi-ld/v1/attributes/name", headers=writer)
    assert r.json()["attributeCount"] == 3 and r.json()["typeNames"] == ["Building", "City", "Country"]
    core = "https://uri.etsi.org/ngsi-ld/default-context/"
    r = await client.get(f"/ngsi-ld/v1/types/{core}Building", headers=writer)
    assert r.status_code == 200 and r.json()["typeName"] == "Building"
    r = await client.get("/ngsi-ld/v1/attributes/" + (core + "name").replace("/", "%2F"), headers=writer)
    assert r.status_code == 200 and r.json()["attributeName"] == "name"
    assert (await client.get("/ngsi-ld/v1/types", params={"details": "True"}, headers=writer)).status_code == 200


async def test_dataset_id_filter_and_scope_or(client, writer) -> None:  # type: ignore[no-untyped-def]
    await create(client, writer, {"id": BUILDING, "type": "Building", "scope": "/Chengdu/Wuhou",
                                  "name": [{"type": "Property", "value": "天府广场"},
                                           {"type": "Property", "value": "Tianfu Square",
                                            "datasetId": "urn:ngsi-ld:Dataset:en"}],
                                  "height": {"type": "Property", "value": 30}})
    r = await client.get(URL, params={"type": "Building", "datasetId": "urn:ngsi-ld:Dataset:en"}, headers=writer)
    assert r.json() == [{"id": BUILDING, "type": "Building", "scope": "/Chengdu/Wuhou", "name": {
        "type": "Property", "value": "Tianfu Square", "datasetId": "urn:ngsi-ld:Dataset:en"}}]
    r = await client.get(f"{URL}/{BUILDING}", params={"attrs": "name", "datasetId": "@none"}, headers=writer)
    assert r.json()["name"] == {"type": "Property", "value": "天府广场"}
    problem(await client.get(f"{URL}/{BUILDING}", params={"datasetId": "not a uri"}, headers=writer), 400,
            "BadRequestData")
    r = await client.get(URL, params={"type": "Building", "scopeQ": "/Beijing,/Chengdu/#"}, headers=writer)
    assert [e["id"] for e in r.json()] == [BUILDING]


async def test_write_path_and_body_checks(client, writer) -> None:  # type: ignore[no-untyped-def]
    await city_graph(client, writer)
    h = {**writer, **JS}
    problem(await client.post(URL, headers=h, content=b"[]"), 400, "InvalidRequest")
    problem(await client.put(f"{URL}/", headers=h, content=b"{}"), 400, "BadRequestData")
    problem(await client.patch(f"{URL}/", headers=h, content=b"{}"), 400, "BadRequestData")
    problem(await client.post(f"{URL}//attrs/", headers=h, content=b"{}"), 400, "BadRequestData")
    problem(await client.delete(f"{URL}//attrs/name", headers=writer), 400, "BadRequestData")
    problem(await client.put(f"{URL}/{BUILDING}/attrs/@invalid", headers=h,
                             content=json.dumps({"type": "Property", "value": 1})), 400, "BadRequestData")
    # a partial update keeps the attribute's type
    problem(await client.patch(f"{URL}/{BUILDING}/attrs/name", headers=h,
                               content=json.dumps({"type": "Relationship", "object": CITY})), 400, "BadRequestData")
    r = await client.patch(f"{URL}/{BUILDING}/attrs/name", headers=h, content=json.dumps({"type": "Property",
                                                                                          "value": "广场"}))
    assert r.status_code == 204, r.text


@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\ufeff", "\ufe0f", "\U000e0100", "\ufdd0", "\U0001fffe",
                                  "\u115f", "\u3164", "\uffa0", "\u2800"])
async def test_invisible_characters_in_ids(client, writer, char) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(URL, headers={**writer, **JS},
                          content=json.dumps({"id": f"urn:ngsi-ld:Building:a{char}b", "type": "Building"}))
    problem(r, 400, "BadRequestData")
    await create(client, writer, {"id": "urn:ngsi-ld:Building:成都-1", "type": "Building"})
