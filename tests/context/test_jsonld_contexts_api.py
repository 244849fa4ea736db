"""NGSI-LD @context management (/jsonldContexts): hosting, serving, listing, deleting, reloading, access."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from cityplus.core.audit import AuditEntry
from cityplus.modules.context import jsonld
from cityplus.modules.context.api_contexts import cached_id

E = "https://uri.etsi.org/ngsi-ld/errors/"
BASE = "/ngsi-ld/v1/jsonldContexts"
JS = {"Content-Type": "application/json"}
LD = {"Content-Type": "application/ld+json"}
VOCAB = "https://vocab.example.org/traffic#"
CONTEXT = {"speed": VOCAB + "speed", "Car": VOCAB + "Car", "tr": VOCAB}
REMOTE = "https://contexts.example.org/fleet.jsonld"


@pytest.fixture(autouse=True)
def remote(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """No network: remote @context downloads are served from this dict (URL → @context); others fail."""
    served: dict[str, Any] = {}

    def fetch(self: jsonld.ContextResolver, url: str) -> Any:
        self.fetches += 1
        if url not in served:
            raise jsonld.LdContextNotAvailable(f"{url}: HTTP 404")
        return served[url]

    monkeypatch.setattr(jsonld.ContextResolver, "_fetch", fetch)
    return served


@pytest.fixture
def writer(make_user, token_for):  # type: ignore[no-untyped-def]
    return token_for(make_user("department_staff", org="hbj"))


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="{jsonld.JSONLD_CONTEXT_REL}"; type="application/ld+json"'}


async def add(client, headers, doc: Any, ctype: dict[str, str] = JS):  # type: ignore[no-untyped-def]
    return await client.post(BASE, headers={**headers, **ctype}, content=json.dumps(doc))


async def hosted(client, headers, context: Any = None) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Host a context; (local id, URL)."""
    r = await add(client, headers, {"@context": CONTEXT if context is None else context})
    assert r.status_code == 201, r.text
    cid = r.headers["location"].rsplit("/", 1)[1]
    details = (await client.get(f"{BASE}/{cid}", params={"details": "true"}, headers=headers)).json()
    return cid, details["URL"]


async def test_add_serve_and_details(client, writer, ctx) -> None:  # type: ignore[no-untyped-def]
    r = await add(client, writer, {"@context": CONTEXT}, LD)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith(BASE + "/") and r.content == b""
    cid = location.rsplit("/", 1)[1]
    r = await client.get(location, headers=writer)
    assert r.status_code == 200 and r.json() == {"@context": CONTEXT}
    assert r.headers["content-type"].startswith("application/json")
    r = await client.get(location, headers={**writer, "Accept": "application/ld+json"})
    assert r.headers["content-type"].startswith("application/ld+json") and r.json() == {"@context": CONTEXT}
    details = (await client.get(location, params={"details": "true"}, headers=writer)).json()
    assert details["URL"] == f"{ctx.settings.base_url}{location}"
    assert details["localId"] == cid and details["kind"] == "Hosted" and details["createdAt"].endswith("Z")
    assert set(details) == {"URL", "localId", "kind", "createdAt"}
    arr = [REMOTE, {"fuel": VOCAB + "fuel"}]
    r = await add(client, writer, {"@context": [{"fuel": VOCAB + "fuel"}]})
    assert r.status_code == 201
    assert (await client.get(r.headers["location"], headers=writer)).json() == {"@context": [{"fuel": VOCAB + "fuel"}]}
    r = await add(client, writer, {"@context": arr})  # includes a remote context that cannot be retrieved
    assert r.status_code == 503 and r.json()["type"] == E + "LdContextNotAvailable"
    with ctx.db.session(readonly=True) as s:
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.object_id == cid)).all()
    assert actions == ["context.jsonld_context_create"]
    r = await client.get(f"{BASE}/no-such-context", headers=writer)
    assert r.status_code == 404 and r.json()["type"] == E + "ResourceNotFound"


async def test_hosted_context_resolves_by_url(client, writer, remote) -> None:  # type: ignore[no-untyped-def]
    cid, url = await hosted(client, writer)
    car = {"id": "urn:ngsi-ld:Car:c1", "type": "Car", "speed": {"type": "Property", "value": 42}}
    r = await client.post("/ngsi-ld/v1/entities", headers={**writer, **JS, **link(url)}, content=json.dumps(car))
    assert r.status_code == 201, r.text
    r = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Car:c1", headers={**writer, **link(url)})
    assert r.status_code == 200 and r.json() == car  # round trip with the same @context
    assert url in r.headers["link"]
    full = (await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Car:c1", headers=writer)).json()
    assert full["type"] == VOCAB + "Car" and full[VOCAB + "speed"]["value"] == 42 and "speed" not in full
    # An inline @context may include the hosted one by URL, too.
    inline = {**car, "id": "urn:ngsi-ld:Car:c2", "@context": [url]}
    r = await client.post("/ngsi-ld/v1/entities", headers={**writer, **LD}, content=json.dumps(inline))
    assert r.status_code == 201, r.text
    # A hosted context may build on another hosted one.
    _, composite = await hosted(client, writer, [url, {"fuel": VOCAB + "fuel"}])
    r = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Car:c1", headers={**writer, **link(composite)})
    assert r.status_code == 200 and r.json() == car

    r = await client.delete(f"{BASE}/{cid}", headers=writer)
    assert r.status_code == 204
    assert (await client.get(f"{BASE}/{cid}", headers=writer)).status_code == 404
    started = time.monotonic()
    r = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Car:c1", headers={**writer, **link(url)})
    assert r.status_code == 503 and r.json()["type"] == E + "LdContextNotAvailable"
    r = await client.post("/ngsi-ld/v1/entities", headers={**writer, **JS, **link(url)},
                          content=json.dumps({**car, "id": "urn:ngsi-ld:Car:c3"}))
    assert r.status_code == 503 and r.json()["type"] == E + "LdContextNotAvailable"
    r = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Car:c1", headers={**writer, **link(composite)})
    assert r.status_code == 503 and r.json()["type"] == E + "LdContextNotAvailable"
    assert time.monotonic() - started < 2
    assert (await client.delete(f"{BASE}/{cid}", headers=writer)).status_code == 404


async def test_list_details_and_kind(client, writer, remote) -> None:  # type: ignore[no-untyped-def]
    cid, url = await hosted(client, writer)
    urls = (await client.get(BASE, headers=writer)).json()
    assert url in urls and jsonld.CORE_CONTEXT_URL in urls and all(isinstance(u, str) for u in urls)
    remote[REMOTE] = {"fleet": VOCAB + "fleet"}
    r = await client.get("/ngsi-ld/v1/types", headers={**writer, **link(REMOTE)})  # the broker caches REMOTE
    assert r.status_code == 200, r.text
    details = (await client.get(BASE, params={"details": "true"}, headers=writer)).json()
    by_url = {d["URL"]: d for d in details}
    assert by_url[url] == {"URL": url, "localId": cid, "kind": "Hosted", "createdAt": by_url[url]["createdAt"]}
    assert by_url[jsonld.CORE_CONTEXT_URL]["kind"] == "Cached"
    # cached copies carry when this process made them (the remote one: just now; built-in ones: at start-up)
    assert by_url[REMOTE] == {"URL": REMOTE, "localId": cached_id(REMOTE), "kind": "Cached",
                              "createdAt": by_url[REMOTE]["createdAt"]}
    assert by_url[REMOTE]["createdAt"] >= by_url[jsonld.CORE_CONTEXT_URL]["createdAt"]
    for kind in ("Hosted", "hosted"):
        assert (await client.get(BASE, params={"kind": kind}, headers=writer)).json() == [url]
    cached = (await client.get(BASE, params={"kind": "cached"}, headers=writer)).json()
    assert set(cached) == {jsonld.CORE_CONTEXT_URL, REMOTE}
    assert (await client.get(BASE, params={"kind": "ImplicitlyCreated"}, headers=writer)).json() == []
    r = await client.get(BASE, params={"kind": "remote"}, headers=writer)
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData"
    r = await client.get(BASE, params={"details": "yes"}, headers=writer)
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData"
    # A cached context: metadata by local id or by URL, but its content is served by its origin, not here.
    r = await client.get(f"{BASE}/{cached_id(REMOTE)}", params={"details": "true"}, headers=writer)
    assert r.status_code == 200 and r.json()["URL"] == REMOTE
    r = await client.get(f"{BASE}/{REMOTE}", params={"details": "true"}, headers=writer)
    assert r.status_code == 200 and r.json()["localId"] == cached_id(REMOTE)
    r = await client.get(f"{BASE}/{cached_id(REMOTE)}", headers=writer)
    assert r.status_code == 422 and r.json()["type"] == E + "OperationNotSupported"


async def test_delete_and_reload_rules(client, writer, remote, ctx) -> None:  # type: ignore[no-untyped-def]
    cid, _ = await hosted(client, writer)
    r = await client.delete(f"{BASE}/{cid}", params={"reload": "true"}, headers=writer)
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData"
    for core in (cached_id(jsonld.CORE_CONTEXT_URL), jsonld.CORE_CONTEXT_URL,
                 "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"):
        for params in ({}, {"reload": "true"}):
            r = await client.delete(f"{BASE}/{core}", params=params, headers=writer)
            assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData", (core, r.text)
    assert (await client.get(f"{BASE}/{cid}", headers=writer)).status_code == 200  # the failed reload kept it

    remote[REMOTE] = {"fleet": VOCAB + "fleet"}
    resolver = ctx.module_state["context"].resolver
    assert (await client.get("/ngsi-ld/v1/types", headers={**writer, **link(REMOTE)})).status_code == 200
    fetched = resolver.fetches
    remote[REMOTE] = {"fleet": VOCAB + "fleet2"}
    r = await client.delete(f"{BASE}/{cached_id(REMOTE)}", params={"reload": "true"}, headers=writer)
    assert r.status_code == 204 and resolver.fetches == fetched + 1
    assert resolver.resolve(REMOTE).expand_term("fleet") == VOCAB + "fleet2"
    r = await client.delete(f"{BASE}/{cached_id(REMOTE)}", headers=writer)
    assert r.status_code == 204
    assert REMOTE not in (await client.get(BASE, headers=writer)).json()
    assert (await client.delete(f"{BASE}/{cached_id(REMOTE)}", headers=writer)).status_code == 404
    with ctx.db.session(readonly=True) as s:
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.object_id == cached_id(REMOTE))).all()
    assert actions == ["context.jsonld_context_reload", "context.jsonld_context_delete"]


async def test_reload_failure_is_503(client, writer, remote) -> None:  # type: ignore[no-untyped-def]
    remote[REMOTE] = {"fleet": VOCAB + "fleet"}
    assert (await client.get("/ngsi-ld/v1/types", headers={**writer, **link(REMOTE)})).status_code == 200
    del remote[REMOTE]
    r = await client.delete(f"{BASE}/{cached_id(REMOTE)}", params={"reload": "true"}, headers=writer)
    assert r.status_code == 503 and r.json()["type"] == E + "LdContextNotAvailable"


async def test_body_without_context_is_invalid_request(client, writer) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(BASE, headers={**writer, **JS}, content=json.dumps({"speed": VOCAB + "speed"}))
    assert r.status_code == 400 and r.json()["type"] == E + "InvalidRequest", r.text  # ETSI TP 050_02_01
    r = await client.post(BASE, headers={**writer, **JS},
                          content=json.dumps({"@context": ["https://unreachable.example/ctx.jsonld", 7]}))
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData", r.text  # checked before any fetch
    r = await client.delete(f"{BASE}/no-such-context", params={"reload": "true"}, headers=writer)
    assert r.status_code == 400 and r.json()["type"] == E + "BadRequestData", r.text
    r = await client.delete(f"{BASE}/no-such-context", headers=writer)
    assert r.status_code == 404 and r.json()["type"] == E + "ResourceNotFound", r.text


@pytest.mark.parametrize(("body", "why"), [
    (b"[]", "not an object"),
    (b'"https://example.org/ctx.jsonld"', "not an object"),
    (json.dumps({"@context": 42}).encode(), "a number"),
    (json.dumps({"@context": "https://example.org/ctx.jsonld"}).encode(), "a URL alone"),
    (json.dumps({"@context": {"speed": 42}}).encode(), "invalid term definition"),
    (json.dumps({"@context": [jsonld.CORE_CONTEXT_URL, {"location": "https://example.org/loc"}]}).encode(),
     "redefines a protected core term"),
    (json.dumps({"@context": [42]}).encode(), "invalid array member"),
])
async def test_invalid_bodies(client, writer, body, why) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(BASE, headers={**writer, **JS}, content=body)
    assert r.status_code == 400, (why, r.text)
    assert r.json()["type"] == E + "BadRequestData", why
    assert (await client.get(BASE, params={"kind": "Hosted"}, headers=writer)).json() == []


async def test_access(client, writer, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    cid, _ = await hosted(client, writer)
    assert (await client.get(BASE)).status_code == 401
    assert (await client.get(f"{BASE}/{cid}")).status_code == 401
    assert (await client.post(BASE, headers=JS, content=json.dumps({"@context": CONTEXT}))).status_code == 401
    citizen = token_for(make_user("citizen"))
    assert (await client.get(f"{BASE}/{cid}", headers=citizen)).status_code == 200
    r = await add(client, citizen, {"@context": CONTEXT})
    assert r.status_code == 403 and "context.write" in r.text
    r = await client.delete(f"{BASE}/{cid}", headers=citizen)
    assert r.status_code == 403
    assert (await client.get(f"{BASE}/{cid}", headers=writer)).status_code == 200
