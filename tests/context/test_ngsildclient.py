"""Interoperability: the broker driven by a real third-party NGSI-LD client, `ngsildclient` (Orange), unchanged.

A real `cityplus serve` process (SQLite in a temp dir, no authentication, remote @contexts off) is started once for
the module; the client talks to it over HTTP exactly as it would to Orion-LD, Scorpio or Stellio. The client only
ever sends the NGSI-LD core @context URL (built into the broker), so nothing needs preloading.

Why `ngsildclient==0.1.8`: every later release (0.1.9 to 0.5.2) pins `httpx<0.24` and/or `rich<13`, which conflict
with the platform's own `httpx>=0.27` and `rich>=13`; 0.1.8 needs only `requests` and `geojson`. For what is tested
here its requests (paths, trailing slashes, headers, content types) are the same as 0.5.2's synchronous client;
0.5.2 adds `POST /entityOperations/query` and the temporal API, not covered here.

What the client sends (read from its source, checked by the recorded exchanges below): `Content-Type` and `Accept`
`application/ld+json` on every call; `POST /ngsi-ld/v1/entities/` (spec path, trailing slash) to create;
`GET/DELETE /ngsi-ld/v1/entities/{id}`; `GET /ngsi-ld/v1/entities?type=&q=&limit=&offset=`; counts by
`limit=0&count=true` with `Accept: application/json`, reading `NGSILD-Results-Count`; batches on
`POST /ngsi-ld/v1/entityOperations/{create,upsert,update,delete}/` (trailing slash, not the spec's path);
`GET /ngsi-ld/v1/types`. A connection probe (`GET /entities?type=None&limit=0&count=true`) runs in `Client()`.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import need
from tests.servers import free_port, wait_ready

pytestmark = pytest.mark.slow

API = "/ngsi-ld/v1"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
TYPE = "AirQualityObserved"


def _import_ngsildclient() -> ModuleType:
    """Import the client, undoing its import-time side effects on the test process.

    On import ngsildclient calls `logging.basicConfig(level=INFO)` and sets `http.client.HTTPConnection.debuglevel = 1`
    (with `http.client.print` patched to a logger): both would leak into every later test.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    debuglevel, printer = http.client.HTTPConnection.debuglevel, http.client.__dict__.get("print")
    try:
        return importlib.import_module("ngsildclient")
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        http.client.HTTPConnection.debuglevel = debuglevel
        if printer is None:
            http.client.__dict__.pop("print", None)
        else:
            http.client.print = printer  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def ng() -> ModuleType:
    try:
        module = _import_ngsildclient()
    except ImportError as exc:
        need(False, f"ngsildclient is not installed ({exc}); pip install 'ngsildclient==0.1.8'")
        raise  # unreachable: need() skips or fails
    return module






@dataclass
class Broker:
    host: str
    port: int

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def broker(ng: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("ngsildclient")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYPLUS_")}
    env.update({"CITYPLUS_VAR_DIR": str(tmp / "var"), "CITYPLUS_CONTEXT_AUTH": "none",
                "CITYPLUS_CONTEXT_REMOTE_CONTEXTS": "false"})
    done = subprocess.run([sys.executable, "-m", "cityplus", "db", "upgrade"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    log = tmp / "server.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "cityplus", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        yield Broker("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@dataclass
class Exchange:
    method: str
    path: str  # path and query, as sent
    status: int
    request_headers: dict[str, str]
    response_headers: dict[str, str]
    body: str


@dataclass
class Wire:
    """Every HTTP exchange the client made (redirect hops included), recorded by a requests response hook."""

    exchanges: list[Exchange] = field(default_factory=list)

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> None:
        url = httpx.URL(response.request.url)
        path = url.raw_path.decode()
        self.exchanges.append(Exchange(
            response.request.method, path, response.status_code,
            {k.lower(): v for k, v in response.request.headers.items()},
            {k.lower(): v for k, v in response.headers.items()}, response.text))

    def find(self, method: str, path: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == method and e.path.split("?")[0] == path]


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def client(ng: ModuleType, broker: Broker, wire: Wire) -> Iterator[Any]:
    with ng.Client(hostname=broker.host, port=broker.port, secure=False) as c:
        c.session.hooks["response"].append(wire.hook)  # observes only; the client's behaviour is unchanged
        yield c


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _observation(ng: ModuleType, tag: str, n: int, pm25: float, when: datetime) -> Any:
    """An AirQualityObserved built with the client's own builder (prop/rel/gprop)."""
    e = ng.Entity(TYPE, f"Chengdu:{tag}:{n}")
    e.prop("pm25", pm25, unitcode="GQ", observedat=when)
    e.prop("stationCode", tag)
    e.rel("refDevice", f"Device:Chengdu:{tag}:{n}")
    e.gprop("location", (30.657 + n / 1000, 104.066))  # (lat, lon): the client writes [lon, lat]
    return e


def _settle(broker: Broker, eid: str, check: Callable[[dict[str, Any] | None], bool] = lambda doc: doc is not None,
            timeout: float = 5.0) -> None:
    """Wait until the broker's reads show a write whose success the client was already told.

    Needed only while the broker answers before it commits (test_reads_see_acknowledged_writes shows it); reads
    right after writes are otherwise flaky. Polls outside the client so the client's own calls stay as written.
    """
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{broker.base}{API}/entities/{eid}", headers={"Accept": "application/json"}, timeout=5)
        if check(r.json() if r.status_code == 200 else None):
            return
        assert time.monotonic() < deadline, f"{eid}: the write never became visible ({r.status_code} {r.text[:300]})"
        time.sleep(0.05)


def _gone(doc: dict[str, Any] | None) -> bool:
    return doc is None


def _pm25(value: float) -> Callable[[dict[str, Any] | None], bool]:
    return lambda doc: doc is not None and doc["pm25"]["value"] == value


def _cleanup(client: Any, ids: list[str]) -> None:
    for eid in ids:
        with contextlib.suppress(Exception):
            client.delete(eid)


def test_entity_create_read_update_query_delete(ng: ModuleType, broker: Broker, client: Any, wire: Wire) -> None:
    tag = _tag()
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    e = _observation(ng, tag, 1, 42, t0)
    assert e.id == f"urn:ngsi-ld:{TYPE}:Chengdu:{tag}:1"
    assert e.context == [CORE]
    try:
        # create: 201 + Location, which the client checks against the entity id
        assert client.create(e) is e
        _settle(broker, e.id)
        with pytest.raises(ng.NgsiAlreadyExistsError) as dup:
            client.create(e)
        assert dup.value.problemdetails.status == 409
        assert client.exists(e)

        # read back: the entity as sent, in the normalized form, with an @context (Accept: application/ld+json)
        got = client.get(e.id)
        assert isinstance(got, ng.Entity)
        assert got.id == e.id and got.type == TYPE
        assert got.context  # the client's Entity refuses a payload without @context
        assert got["pm25"] == {"type": "Property", "value": 42, "unitCode": "GQ", "observedAt": "2026-11-24T08:00:00Z"}
        assert got["stationCode"] == {"type": "Property", "value": tag}
        assert got["refDevice"] == {"type": "Relationship", "object": f"urn:ngsi-ld:Device:Chengdu:{tag}:1"}
        assert got["location"] == {"type": "GeoProperty",
                                   "value": {"type": "Point", "coordinates": [104.066, 30.658]}}
        sent = {k: v for k, v in e.to_dict().items() if k != "@context"}
        assert {k: v for k, v in got.to_dict().items() if k != "@context"} == sent
        # the same with the core context named in a Link header
        assert client.get(e.id, ctx=CORE, asdict=True)["pm25"]["value"] == 42

        # update: the client's update() is exists() + DELETE + POST of the whole entity
        e.prop("pm25", 7.5, unitcode="GQ", observedat=datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
        assert client.update(e) is e
        _settle(broker, e.id, _pm25(7.5))
        pm25 = client.get(e.id)["pm25"]
        assert pm25["value"] == 7.5 and pm25["observedAt"] == "2026-11-24T09:00:00Z" and pm25["unitCode"] == "GQ"

        # query by type, and by type + q
        by_type = client.query_head(type=TYPE, q=f'stationCode=="{tag}"', n=10)
        assert [x.id for x in by_type] == [e.id]
        assert e.id in {x.id for x in client.query_all(type=TYPE)}
        assert client.query_head(type=TYPE, q=f'stationCode=="{tag}";pm25>10') == []
        assert [x.id for x in client.query_head(type=TYPE, q=f'stationCode=="{tag}";pm25>5')] == [e.id]
        assert [x.id for x in client.query_head(type=TYPE, q=f'refDevice=="urn:ngsi-ld:Device:Chengdu:{tag}:1"')
                ] == [e.id]
        assert client.count(type=TYPE, q=f'stationCode=="{tag}"') == 1

        # delete, then the not-found paths raise the client's ResourceNotFound error (ProblemDetails parsed)
        assert client.delete(e) is True
        _settle(broker, e.id, _gone)
        assert not client.exists(e)
        with pytest.raises(ng.api.exceptions.NgsiResourceNotFoundError) as missing:
            client.get(e.id)
        pd = missing.value.problemdetails
        assert pd.type == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound" and pd.status == 404
        with pytest.raises(ng.api.exceptions.NgsiResourceNotFoundError):
            client.delete(e.id)
        assert client.count(type=TYPE, q=f'stationCode=="{tag}"') == 0
    finally:
        _cleanup(client, [e.id])

    # what went over the wire: the client's media types were accepted as such
    gets = wire.find("GET", f"{API}/entities/{e.id}")
    ok = [g for g in gets if g.status == 200]
    assert ok and all(g.response_headers["content-type"].startswith("application/ld+json") for g in ok)
    assert {g.status for g in gets} == {200, 404}
    counts = [x for x in wire.find("GET", f"{API}/entities") if "count=true" in x.path]
    assert counts and all(x.response_headers["ngsild-results-count"].isdigit() for x in counts)
    assert all(x.response_headers["content-type"].startswith("application/json") for x in counts)
    created = [x for x in wire.exchanges if x.method == "POST" and x.status == 201]
    assert created and all(x.response_headers["location"].endswith(f"/entities/{e.id}") for x in created)


def test_batch_create_upsert_update_count_delete(ng: ModuleType, broker: Broker, client: Any) -> None:
    tag = _tag()
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    obs = [_observation(ng, tag, n, 5 + 10 * n, t0) for n in range(4)]  # pm25 5, 15, 25, 35
    ids = [o.id for o in obs]
    in_tag = f'stationCode=="{tag}"'
    try:
        ok, created = client.create(obs[:3])  # POST /entityOperations/create/
        assert ok is True and sorted(created) == sorted(ids[:3])
        for eid in ids[:3]:
            _settle(broker, eid)
        assert client.count(type=TYPE, q=in_tag) == 3

        # upsert two existing (one changed) and one new: 201 with the ids created
        obs[0].prop("pm25", 99, unitcode="GQ", observedat=t0)
        ok, result = client.upsert([obs[0], obs[1], obs[3]])
        assert ok is True and result == [ids[3]]
        _settle(broker, ids[0], _pm25(99))
        _settle(broker, ids[3])
        assert client.get(ids[0])["pm25"]["value"] == 99
        assert client.count(type=TYPE, q=in_tag) == 4

        # update of existing entities only: 204
        obs[1].prop("pm25", 1, unitcode="GQ", observedat=t0)
        ok, result = client.update(obs[:2])
        assert ok is True, result
        _settle(broker, ids[1], _pm25(1))
        assert client.get(ids[1])["pm25"]["value"] == 1

        # count and query by q: pm25 now 99, 1, 25, 35
        assert client.count(q=f"{in_tag};pm25>10") == 3
        assert client.count(type=TYPE, q=f"{in_tag};pm25>10") == 3
        assert sorted(x.id for x in client.query_head(type=TYPE, q=f"{in_tag};pm25>10", n=10)) == sorted(
            [ids[0], ids[2], ids[3]])
        # query_all pages with limit/offset guided by NGSILD-Results-Count
        assert sorted(x.id for x in client.query_all(type=TYPE, q=in_tag, limit=3)) == sorted(ids)

        # a batch create of an existing entity is not a full success (207): the client reports False
        ok, result = client.create([obs[2]])
        assert ok is False and result["success"] == []
        (error,) = result["errors"]
        assert error["entityId"] == ids[2]
        assert error["error"]["type"] == "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"

        # batch delete: 204
        ok, _ = client.delete(obs[:2])
        assert ok is True
        _settle(broker, ids[0], _gone)
        _settle(broker, ids[1], _gone)
        assert client.count(type=TYPE, q=in_tag) == 2
        client.delete_where(type=TYPE, q=in_tag)  # query pages + batch delete
        _settle(broker, ids[2], _gone)
        _settle(broker, ids[3], _gone)
        assert client.count(type=TYPE, q=in_tag) == 0
        assert not client.exists(ids[3])
    finally:
        _cleanup(client, ids)


def test_entities_spec_path_is_served_without_redirect(ng: ModuleType, broker: Broker, client: Any, wire: Wire
                                                      ) -> None:
    """Table 6.2-1 of ETSI GS CIM 009 names the Entity List resource `/entities/`: the client POSTs there."""
    e = _observation(ng, _tag(), 1, 12, datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    try:
        assert client.create(e) is e
        _settle(broker, e.id)
    finally:
        _cleanup(client, [e.id])
    hops = wire.find("POST", f"{API}/entities/")
    assert hops, "the client posts to the spec path /ngsi-ld/v1/entities/"
    if hops[0].status in (301, 302, 307, 308):
        pytest.fail(f"broker bug: POST {API}/entities/ answered {hops[0].status} redirect to "
                     f"{hops[0].response_headers.get('location')} instead of 201 (works only for clients that "
                     "re-POST on 307)")
    assert hops[0].status == 201


def test_types_as_json_ld_carry_context(ng: ModuleType, broker: Broker, client: Any, wire: Wire) -> None:
    e = _observation(ng, _tag(), 1, 12, datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    try:
        client.create(e)
        _settle(broker, e.id)
        assert TYPE in client.list_types()
    finally:
        _cleanup(client, [e.id])
    (types,) = wire.find("GET", f"{API}/types")
    assert types.status == 200 and types.request_headers["accept"] == "application/ld+json"
    assert types.response_headers["content-type"].startswith("application/ld+json")
    if "@context" not in json.loads(types.body):
        pytest.fail("broker bug: GET /types with Accept: application/ld+json has no @context in the body "
                     f"(and no Link header: {types.response_headers.get('link')!r})")


def test_reads_see_acknowledged_writes(ng: ModuleType, client: Any) -> None:
    """Once the broker has answered 201/204, the next read must see the write (read-your-writes)."""
    tag, stale = _tag(), []
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    for n in range(30):
        e = _observation(ng, tag, n, 12, t0)
        try:
            client.create(e)  # 201
            if not client.exists(e):
                stale.append(f"GET after 201 create of {e.id}: 404")
            if client.delete(e) and client.exists(e):  # 204
                stale.append(f"GET after 204 delete of {e.id}: 200")
        finally:
            _cleanup(client, [e.id])
    if stale:
        pytest.fail(f"broker bug: {len(stale)} of 60 reads right after an acknowledged write did not see it "
                     f"(the transaction commits after the response is sent), e.g. {stale[0]}")
