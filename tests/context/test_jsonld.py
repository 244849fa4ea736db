"""NGSI-LD JSON-LD layer: core and user contexts, term expansion on the ETSI suite's payloads, remote contexts served
by a local HTTP server, and the @context request rules of GS CIM 009 §6.3.5."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cityplus.modules.context import jsonld
from cityplus.modules.context.jsonld import (
    CORE_CONTEXT_URL,
    DEFAULT_VOCAB,
    NGSI_LD,
    ActiveContext,
    ContextResolver,
    ContextRuleError,
    InvalidContext,
    LdContextNotAvailable,
    UnsupportedMediaType,
    compact_entity,
    expand_entity,
    parse_link_header,
    request_context,
    response_link_header,
)
from tests.conftest import need, shared_dir

FORGE = "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/"
COMPOUND = FORGE + "ngsi-ld-test-suite-compound.jsonld"
SUITE = "https://ngsi-ld-test-suite/context#"
DATA = Path(jsonld.__file__).parent / "data"


@pytest.fixture(scope="module")
def ref() -> Path:
    base = shared_dir()
    path = base / "reference" / "ngsi-ld" if base is not None else None
    need(path is not None and path.is_dir(), "shared reference folder ../shared/reference/ngsi-ld is missing")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def etsi(ref: Path) -> ContextResolver:
    # Offline, like a broker on an intranet: the suite's contexts are preloaded under their forge URLs.
    files = sorted((ref / "etsi-test-suite" / "jsonld-contexts").glob("*.jsonld"))
    return ContextResolver(preload={FORGE + p.name: p for p in files}, allow_remote=False)


@pytest.fixture(scope="module")
def core() -> ActiveContext:
    return ContextResolver(allow_remote=False).resolve(None)


# --- core context -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("term", "iri"), [
    ("location", NGSI_LD + "location"),
    ("observationSpace", NGSI_LD + "observationSpace"),
    ("Property", NGSI_LD + "Property"),
    ("GeoProperty", NGSI_LD + "GeoProperty"),
    ("observedAt", NGSI_LD + "observedAt"),
    ("unitCode", NGSI_LD + "unitCode"),
    ("value", NGSI_LD + "hasValue"),
    ("Point", "https://purl.org/geojson/vocab#Point"),
])
def test_core_terms_expand_and_compact(core: ActiveContext, term: str, iri: str) -> None:
    assert core.expand_term(term) == iri
    assert core.compact_iri(iri) == term


def test_unknown_term_uses_default_vocab(core: ActiveContext) -> None:
    assert core.expand_term("name") == "https://uri.etsi.org/ngsi-ld/default-context/name"
    assert core.compact_iri(DEFAULT_VOCAB + "name") == "name"
    assert core.expand_value_type("monument") == DEFAULT_VOCAB + "monument"


def test_absolute_iris_and_unknown_iris_are_unchanged(core: ActiveContext) -> None:
    for iri in ("urn:ngsi-ld:Vehicle:A1", "http://example.org/speed", "https://schema.org/name"):
        assert core.expand_term(iri) == iri
        assert core.compact_iri(iri) == iri
    assert core.compact_iri(NGSI_LD + "notATerm") == "ngsi-ld:notATerm"
    assert core.expand_term("ngsi-ld:notATerm") == NGSI_LD + "notATerm"


def test_term_definition(core: ActiveContext) -> None:
    definition = core.term_definition("observedAt")
    assert definition is not None
    assert definition["@id"] == NGSI_LD + "observedAt"
    assert definition["@type"] == NGSI_LD + "DateTime"
    assert definition["@protected"] is True
    assert core.term_definition("vocab") == {"@id": NGSI_LD + "hasVocab", "@type": "@vocab", "@protected": True,
                                             "@prefix": False}
    assert core.term_definition("notDefinedHere") is None


@pytest.mark.parametrize("url", [
    CORE_CONTEXT_URL,
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.4.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld",
    "http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
])
def test_core_urls_resolve_offline_to_built_in_core(url: str) -> None:
    resolver = ContextResolver(allow_remote=False)
    assert resolver.resolve(url).key == resolver.resolve(None).key
    assert resolver.resolve([url]).key == resolver.resolve(None).key
    assert resolver.fetches == 0


def test_unknown_file_on_the_core_host_is_not_the_core() -> None:
    # The ETSI suite expects this URL to be reported unretrievable (building-unretrievable-context.jsonld).
    with pytest.raises(LdContextNotAvailable):
        ContextResolver(allow_remote=False).resolve("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-non-existing.jsonld")


def test_built_in_core_is_the_v19_reference_copy(ref: Path) -> None:
    shipped = json.loads((DATA / "ngsi-ld-core-context-v1.9.jsonld").read_text("utf-8"))
    assert shipped == json.loads((ref / "ngsi-ld-core-context-v1.9.jsonld").read_text("utf-8"))
    notice = (DATA / "NOTICE").read_text("utf-8")
    assert "ETSI" in notice and "BSD 3-Clause" in notice and "uri.etsi.org" in notice


# --- user contexts ------------------------------------------------------------------------------------------------


def test_same_term_under_two_user_contexts() -> None:
    resolver = ContextResolver(allow_remote=False)
    a = resolver.resolve({"speed": "http://a.example/speed"})
    b = resolver.resolve({"speed": "http://b.example/speed"})
    assert a.expand_term("speed") == "http://a.example/speed"
    assert b.expand_term("speed") == "http://b.example/speed"
    assert a.key != b.key
    later = resolver.resolve([{"speed": "http://a.example/speed"}, {"speed": "http://b.example/speed"}])
    assert later.expand_term("speed") == "http://b.example/speed"
    assert later.key == b.key  # same meaning, same key for callers' caches


def test_core_terms_are_protected() -> None:
    resolver = ContextResolver(allow_remote=False)
    # Before the core (which is always applied last) a redefinition is simply overridden by the core.
    ctx = resolver.resolve({"location": "http://ex.org/where", "Property": "http://ex.org/P"})
    assert ctx.expand_term("location") == NGSI_LD + "location"
    assert ctx.expand_term("Property") == NGSI_LD + "Property"
    # After an explicit core, redefining a protected term is an error; repeating the same definition is not.
    with pytest.raises(InvalidContext, match="protected"):
        resolver.resolve([CORE_CONTEXT_URL, {"location": "http://ex.org/where"}])
    assert resolver.resolve([CORE_CONTEXT_URL, {"location": "ngsi-ld:location"}]).expand_term("location") == \
        NGSI_LD + "location"
    with pytest.raises(InvalidContext, match="protected"):
        resolver.resolve({"@protected": True, "observedAt": "http://ex.org/seen"})
    with pytest.raises(InvalidContext, match="nullification"):
        resolver.resolve([CORE_CONTEXT_URL, None])


def test_prefixes_and_compact_iris() -> None:
    ctx = ContextResolver(allow_remote=False).resolve(
        {"ex": "http://example.org/ns#", "speed": "ex:speed", "noPrefix": "http://example.org/np"})
    assert ctx.expand_term("ex:fuel") == "http://example.org/ns#fuel"
    assert ctx.compact_iri("http://example.org/ns#fuel") == "ex:fuel"
    assert ctx.expand_term("speed") == "http://example.org/ns#speed"
    assert ctx.compact_iri("http://example.org/ns#speed") == "speed"  # a term beats the compact IRI
    # A term whose IRI does not end in a gen-delim is no prefix (JSON-LD 1.1): noPrefix:x is an absolute IRI.
    assert ctx.expand_term("noPrefix:x") == "noPrefix:x"


def test_default_vocab_name_shadowed_by_user_term(ref: Path, etsi: ContextResolver) -> None:
    ctx = etsi.resolve(COMPOUND)
    assert ctx.expand_term("name") == SUITE + "name"
    # default-context/name cannot compact to `name` here (that is the suite's name): it must stay distinct.
    other = ctx.compact_iri(DEFAULT_VOCAB + "name")
    assert other != "name"
    assert ctx.expand_term(other) == DEFAULT_VOCAB + "name"


@pytest.mark.parametrize("context", [
    5,
    {"x": 5},
    {"@version": 1.0},
    {"x": {"@id": "http://e.org/x", "@bogus": 1}},
    {"x": {"@id": "http://e.org/x", "@container": "@bogus"}},
    {"x": {"@id": "http://e.org/x", "@type": "@bogus"}},
    {"a": "b:x", "b": "a:y"},
    {"@vocab": 5},
    {"@protected": "yes"},
    {"@type": "x", "@id": "http://e.org/x"},
])
def test_malformed_inline_context_is_invalid(context: Any) -> None:
    with pytest.raises(InvalidContext):
        ContextResolver(allow_remote=False).resolve(context)


def test_active_context_is_cached_per_input() -> None:
    resolver = ContextResolver(allow_remote=False, cache_size=2)
    first = resolver.resolve({"a": "http://e.org/a"})
    assert resolver.resolve({"a": "http://e.org/a"}) is first
    resolver.resolve({"b": "http://e.org/b"})
    resolver.resolve({"c": "http://e.org/c"})
    again = resolver.resolve({"a": "http://e.org/a"})
    assert again is not first and again.key == first.key  # evicted (bounded), rebuilt with the same key


# --- entity term expansion ----------------------------------------------------------------------------------------


def test_expand_entity_members_and_values() -> None:
    ctx = ContextResolver(allow_remote=False).resolve({"ex": "http://ex.org/", "Building": "ex:Building",
                                                       "height": "ex:height", "owner": "ex:owner"})
    entity = {
        "id": "urn:ngsi-ld:Building:1", "type": ["Building", "Landmark"], "scope": "/Chengdu",
        "createdAt": "2024-01-01T00:00:00Z", "@context": {"ignored": "here"},
        "height": {"type": "Property", "value": {"type": "x", "name": "kept"}, "unitCode": "MTR",
                   "observedAt": "2024-01-01T00:00:00Z", "accuracy": {"type": "Property", "value": 0.1}},
        "owner": [{"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
                  {"type": "Relationship", "object": "urn:ngsi-ld:Person:2", "datasetId": "urn:ngsi-ld:Dataset:b"}],
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [104.06, 30.67]}},
        "category": {"type": "VocabProperty", "vocab": ["monument", "ex:tower"]},
        "extra": {"type": "JsonProperty", "json": {"id": "raw", "type": "raw", "name": "raw"}},
        "street": {"type": "LanguageProperty", "languageMap": {"zh": "春熙路", "en": "Chunxi Road"}},
        "tags": {"value": ["a", "b"], "source": {"value": "survey"}},  # concise form
        "floors": 12,  # concise Property value
    }
    out = expand_entity(entity, ctx)
    assert out == {
        "id": "urn:ngsi-ld:Building:1", "type": ["http://ex.org/Building", DEFAULT_VOCAB + "Landmark"],
        "scope": "/Chengdu", "createdAt": "2024-01-01T00:00:00Z", "@context": {"ignored": "here"},
        "http://ex.org/height": {"type": "Property", "value": {"type": "x", "name": "kept"}, "unitCode": "MTR",
                                 "observedAt": "2024-01-01T00:00:00Z",
                                 DEFAULT_VOCAB + "accuracy": {"type": "Property", "value": 0.1}},
        "http://ex.org/owner": [{"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
                                {"type": "Relationship", "object": "urn:ngsi-ld:Person:2",
                                 "datasetId": "urn:ngsi-ld:Dataset:b"}],
        NGSI_LD + "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [104.06, 30.67]}},
        DEFAULT_VOCAB + "category": {"type": "VocabProperty",
                                     "vocab": [DEFAULT_VOCAB + "monument", "http://ex.org/tower"]},
        DEFAULT_VOCAB + "extra": {"type": "JsonProperty", "json": {"id": "raw", "type": "raw", "name": "raw"}},
        DEFAULT_VOCAB + "street": {"type": "LanguageProperty", "languageMap": {"zh": "春熙路", "en": "Chunxi Road"}},
        DEFAULT_VOCAB + "tags": {"value": ["a", "b"], DEFAULT_VOCAB + "source": {"value": "survey"}},
        DEFAULT_VOCAB + "floors": 12,
    }
    assert compact_entity(out, ctx) == entity


def test_key_values_and_duplicate_names() -> None:
    core = ContextResolver(allow_remote=False).resolve(None)
    kv = {"id": "urn:x", "type": "T", "meta": {"value": 1, "inner": 2}}
    assert expand_entity(kv, core, key_values=True)[DEFAULT_VOCAB + "meta"] == {"value": 1, "inner": 2}
    assert compact_entity(expand_entity(kv, core, key_values=True), core, key_values=True) == kv
    # Two spellings of one attribute become instances of that attribute (JSON-LD merges them too).
    both = {"name": {"type": "Property", "value": "a"},
            DEFAULT_VOCAB + "name": {"type": "Property", "value": "b", "datasetId": "urn:d"}}
    assert expand_entity(both, core) == {DEFAULT_VOCAB + "name": [
        {"type": "Property", "value": "a"}, {"type": "Property", "value": "b", "datasetId": "urn:d"}]}


def test_attribute_fragments() -> None:
    ctx = ContextResolver(allow_remote=False).resolve({"ex": "http://ex.org/", "Parking": "ex:Parking"})
    fragment = {"type": "Property", "value": 70, "source": {"type": "Property", "value": "GPS"},
                "observedAt": "2017-07-29T11:00:04Z", "datasetId": "urn:ngsi-ld:Property:gps"}
    expanded = jsonld.expand_attribute(fragment, ctx)
    assert expanded == {
        "type": "Property", "value": 70, DEFAULT_VOCAB + "source": {"type": "Property", "value": "GPS"},
        "observedAt": "2017-07-29T11:00:04Z", "datasetId": "urn:ngsi-ld:Property:gps"}
    assert jsonld.compact_attribute(expanded, ctx) == fragment
    rel = {"type": "Relationship", "object": "urn:ngsi-ld:Parking:1", "objectType": "Parking"}
    assert jsonld.expand_attribute(rel, ctx) == {**rel, "objectType": "http://ex.org/Parking"}
    concise = {"vocab": "monument"}  # concise VocabProperty
    assert jsonld.expand_attribute(concise, ctx) == {"vocab": DEFAULT_VOCAB + "monument"}
    assert jsonld.expand_attribute([1, 2], ctx) == [1, 2]  # a concise Property whose value is an array
    assert jsonld.expand_attribute([], ctx) == []


def test_etsi_suite_context_terms(ref: Path, etsi: ContextResolver) -> None:
    ctx = etsi.resolve(COMPOUND)
    terms = json.loads((ref / "etsi-test-suite/jsonld-contexts/ngsi-ld-test-suite.jsonld").read_text())["@context"]
    assert ctx.expand_term("Building") == SUITE + "Building"
    assert len(terms) >= 10
    for term, iri in terms.items():
        assert ctx.expand_term(term) == iri
        assert ctx.compact_iri(iri) == term
    assert ctx.expand_term("location") == NGSI_LD + "location"


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except ValueError:
        return None  # the suite's deliberately invalid payloads


def test_etsi_expected_expansion(ref: Path, etsi: ContextResolver) -> None:
    entities = ref / "etsi-test-suite/data/entities"
    ctx = etsi.resolve(COMPOUND)
    expanded = expand_entity(_load(entities / "building-simple-attributes.json"), ctx)
    expected = _load(entities / "expectations/building-simple-attributes-expanded.json")
    assert {**expanded, "id": None} == {**expected, "id": None}  # the suite substitutes ids at run time
    # Expanded with the suite context, compacted with the core only (the suite's "core-context" expectation).
    vehicle = expand_entity(_load(entities / "vehicle-simple-attributes.json"), ctx)
    expected = _load(entities / "expectations/vehicle-simple-attributes-core-context.json")
    assert {**compact_entity(vehicle, etsi.resolve(None)), "id": None} == {**expected, "id": None}


def test_round_trip_every_etsi_entity_payload(ref: Path, etsi: ContextResolver) -> None:
    entities = ref / "etsi-test-suite/data/entities"
    checked = unretrievable = 0
    for path in sorted(entities.glob("*.json*")):
        doc = _load(path)
        if not isinstance(doc, dict):
            continue  # empty arrays and invalid JSON: not entity objects
        if path.suffix == ".jsonld":
            context = doc.pop("@context")
            try:
                ctx = etsi.resolve(context)
            except LdContextNotAvailable:
                # Only the suite's deliberately dead URL and an external context (not in the reference folder).
                unretrievable += 1
                assert path.name in ("building-unretrievable-context.jsonld", "country-simple-attributes.jsonld")
                continue
        else:
            ctx = etsi.resolve(COMPOUND)  # the suite sends its .json payloads with the compound context in a Link
        expanded = expand_entity(doc, ctx)
        for key in expanded:
            assert key in jsonld.ENTITY_MEMBERS or ":" in key, (path.name, key)
        if isinstance(doc.get("type"), str) and doc["type"] != "type":
            assert ":" in expanded["type"], path.name
        assert compact_entity(expanded, ctx) == doc, path.name
        checked += 1
    assert unretrievable == 2
    assert checked >= 60


# --- remote contexts ----------------------------------------------------------------------------------------------


@dataclass
class Site:
    base: str
    routes: dict[str, tuple[int, str, bytes, bool]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0

    def add(self, path: str, doc: Any, *, status: int = 200, ctype: str = "application/ld+json",
            length: bool = True) -> str:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.routes[path] = (status, ctype, body, length)
        return self.base + path


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            time.sleep(state.delay)
            status, ctype, body, length = state.routes.get(self.path, (404, "text/plain", b"not found", True))
            self.send_response(status)
            if status in (301, 302):
                self.send_header("Location", body.decode())
                body = b""
            self.send_header("Content-Type", ctype)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_remote_context_fetched_once_then_cached(site: Site) -> None:
    url = site.add("/ctx.jsonld", {"@context": {"speed": "http://ex.org/speed"}})
    resolver = ContextResolver(timeout=2.0)
    assert resolver.resolve(url).expand_term("speed") == "http://ex.org/speed"
    assert resolver.resolve(url).expand_term("speed") == "http://ex.org/speed"
    both = resolver.resolve([url, {"fuel": "http://ex.org/fuel"}])  # a new ActiveContext, same document
    assert both.expand_term("speed") == "http://ex.org/speed" and both.expand_term("fuel") == "http://ex.org/fuel"
    assert site.hits == {"/ctx.jsonld": 1}
    assert resolver.fetches == 1
    resolver.invalidate(url)
    resolver.resolve(url)
    assert site.hits == {"/ctx.jsonld": 2}


def test_concurrent_requests_share_one_fetch(site: Site) -> None:
    url = site.add("/slow.jsonld", {"@context": {"speed": "http://ex.org/speed"}})
    site.delay = 0.2
    resolver = ContextResolver(timeout=2.0)
    results: list[str] = []

    def work(i: int) -> None:
        results.append(resolver.resolve([url, {f"t{i}": f"http://ex.org/t{i}"}]).expand_term("speed"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["http://ex.org/speed"] * 8
    assert site.hits == {"/slow.jsonld": 1}


@pytest.mark.parametrize("ctype", ["application/json", "application/ld+json; charset=utf-8", "text/plain"])
def test_remote_content_type_tolerant(site: Site, ctype: str) -> None:
    url = site.add("/c", {"@context": {"speed": "http://ex.org/speed"}}, ctype=ctype)
    assert ContextResolver(timeout=2.0).resolve(url).expand_term("speed") == "http://ex.org/speed"


def test_remote_nested_context_and_redirect(site: Site) -> None:
    inner = site.add("/inner.jsonld", {"@context": {"speed": "http://ex.org/speed"}})
    moved = site.add("/moved.jsonld", inner.encode(), status=302)
    outer = site.add("/outer.jsonld", {"@context": [moved, {"fuel": "http://ex.org/fuel"}, CORE_CONTEXT_URL]})
    imported = site.add("/import.jsonld", {"@context": {"@import": inner, "ex": "http://ex.org/"}})
    ctx = ContextResolver(timeout=2.0).resolve(outer)
    assert ctx.expand_term("speed") == "http://ex.org/speed"
    assert ctx.expand_term("fuel") == "http://ex.org/fuel"
    assert ContextResolver(timeout=2.0).resolve(imported).expand_term("ex:speed") == "http://ex.org/speed"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_context_fails_fast() -> None:
    resolver = ContextResolver(timeout=1.0)
    url = f"http://127.0.0.1:{_closed_port()}/ctx.jsonld"
    start = time.monotonic()
    with pytest.raises(LdContextNotAvailable):
        resolver.resolve(url)
    assert time.monotonic() - start < 2.0
    with pytest.raises(LdContextNotAvailable):
        resolver.resolve([url, {"x": "http://ex.org/x"}])
    assert resolver.fetches == 1  # the failure is remembered briefly


def test_failures_are_cached_briefly(site: Site) -> None:
    url = site.base + "/missing.jsonld"
    cached = ContextResolver(timeout=2.0, failure_ttl=60)
    for _ in range(3):
        with pytest.raises(LdContextNotAvailable, match="404"):
            cached.resolve(url)
    assert site.hits == {"/missing.jsonld": 1}
    uncached = ContextResolver(timeout=2.0, failure_ttl=0)
    for _ in range(2):
        with pytest.raises(LdContextNotAvailable):
            uncached.resolve(url)
    assert site.hits == {"/missing.jsonld": 3}


def test_remote_disabled(site: Site) -> None:
    url = site.add("/ctx.jsonld", {"@context": {"speed": "http://ex.org/speed"}})
    resolver = ContextResolver(allow_remote=False)
    with pytest.raises(LdContextNotAvailable, match="disabled"):
        resolver.resolve(url)
    assert site.hits == {} and resolver.fetches == 0


def test_preloaded_and_hosted_contexts_skip_the_network(site: Site, tmp_path: Path) -> None:
    url = site.add("/ctx.jsonld", {"@context": {"speed": "http://remote.example/speed"}})
    local = tmp_path / "ctx.jsonld"
    local.write_text(json.dumps({"@context": {"speed": "http://preloaded.example/speed"}}))
    assert ContextResolver(preload={url: local}).resolve(url).expand_term("speed") == "http://preloaded.example/speed"
    hosted = {url: {"@context": {"speed": "http://hosted.example/speed"}}}
    assert ContextResolver(hosted=hosted.get).resolve(url).expand_term("speed") == "http://hosted.example/speed"
    assert site.hits == {}
    with pytest.raises(ValueError, match="preload"):
        ContextResolver(preload={url: tmp_path / "absent.jsonld"})


@pytest.mark.parametrize(("body", "length"), [(b"x" * 5000, True), (b"x" * 5000, False)])
def test_oversize_remote_context(site: Site, body: bytes, length: bool) -> None:
    doc = b'{"@context": {"speed": "http://ex.org/speed"}, "pad": "' + body + b'"}'
    url = site.add("/big.jsonld", doc, length=length)
    with pytest.raises(LdContextNotAvailable, match="larger"):
        ContextResolver(timeout=2.0, max_bytes=1000).resolve(url)


@pytest.mark.parametrize("doc", [b"{not json", b"[]", b'{"speed": "http://ex.org/speed"}',
                                 b'{"@context": {"speed": 5}}', b'{"@context": 42}'])
def test_invalid_remote_document_is_not_available(site: Site, doc: bytes) -> None:
    url = site.add("/bad.jsonld", doc)
    with pytest.raises(LdContextNotAvailable):
        ContextResolver(timeout=2.0).resolve(url)


def test_recursive_remote_contexts(site: Site) -> None:
    a, b = site.base + "/a.jsonld", site.base + "/b.jsonld"
    site.add("/a.jsonld", {"@context": [b]})
    site.add("/b.jsonld", {"@context": [a]})
    with pytest.raises(LdContextNotAvailable, match="recursive"):
        ContextResolver(timeout=2.0).resolve(a)


async def test_aresolve_fetches_off_the_event_loop(site: Site) -> None:
    url = site.add("/ctx.jsonld", {"@context": {"speed": "http://ex.org/speed"}})
    resolver = ContextResolver(timeout=2.0)
    ctx = await resolver.aresolve(url)
    assert ctx.expand_term("speed") == "http://ex.org/speed"
    assert await resolver.aresolve(url) is ctx


# --- request rules (§6.3.5) ---------------------------------------------------------------------------------------

CTX_URL = "https://example.org/ctx.jsonld"
LINK = response_link_header(CTX_URL)
ENTITY = {"id": "urn:ngsi-ld:T:1", "type": "T"}
LD_ENTITY = {**ENTITY, "@context": CTX_URL}


@pytest.mark.parametrize(("ctype", "link", "body", "expected"), [
    ("application/json", None, ENTITY, (None, "application/json")),
    ("application/json", LINK, ENTITY, (CTX_URL, "application/json")),
    ("Application/JSON; charset=utf-8", LINK, ENTITY, (CTX_URL, "application/json")),
    ("application/merge-patch+json", LINK, ENTITY, (CTX_URL, "application/merge-patch+json")),
    ("application/ld+json", None, LD_ENTITY, (CTX_URL, "application/ld+json")),
    ("application/ld+json", None, {**ENTITY, "@context": [CTX_URL, {"a": "http://e/a"}]},
     ([CTX_URL, {"a": "http://e/a"}], "application/ld+json")),
    ("application/ld+json", None, [LD_ENTITY, LD_ENTITY], (CTX_URL, "application/ld+json")),
    ("application/ld+json", None, [LD_ENTITY, {**ENTITY, "@context": {"a": "http://e/a"}}],
     (None, "application/ld+json")),
    ("application/json", None, [ENTITY, ENTITY], (None, "application/json")),
    (None, LINK, None, (CTX_URL, "")),  # GET: only the Link header counts
    (None, None, None, (None, "")),
    ("application/ld+json", LINK, None, (CTX_URL, "application/ld+json")),
    ("application/json", '<https://example.org/x>; rel="alternate"', ENTITY, (None, "application/json")),
])
def test_request_context_accepted(ctype: str | None, link: str | None, body: Any, expected: tuple[Any, str]) -> None:
    assert request_context(ctype, link, body) == expected


@pytest.mark.parametrize(("ctype", "link", "body", "rule"), [
    ("application/json", None, LD_ENTITY, "must not contain @context"),
    ("application/json", LINK, LD_ENTITY, "must not contain @context"),
    ("application/merge-patch+json", None, LD_ENTITY, "must not contain @context"),
    ("application/json", None, [ENTITY, LD_ENTITY], "must not contain @context"),
    ("application/ld+json", LINK, LD_ENTITY, "not in a Link header"),
    ("application/ld+json", LINK, ENTITY, "not in a Link header"),
    ("application/ld+json", None, ENTITY, "must contain @context"),
    ("application/ld+json", None, [LD_ENTITY, ENTITY], "must contain @context"),
    ("application/json", f"{LINK}, <https://example.org/other.jsonld>; rel=\"{jsonld.JSONLD_CONTEXT_REL}\"",
     ENTITY, "more than one"),
])
def test_request_context_rule_errors(ctype: str, link: str | None, body: Any, rule: str) -> None:
    with pytest.raises(ContextRuleError, match=rule):
        request_context(ctype, link, body)


@pytest.mark.parametrize("ctype", ["text/plain", None, "application/xml"])
def test_request_context_unsupported_media_type(ctype: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        request_context(ctype, None, ENTITY)


def test_parse_link_header_variants() -> None:
    rel = jsonld.JSONLD_CONTEXT_REL
    assert parse_link_header(LINK) == CTX_URL
    assert parse_link_header(f"<{CTX_URL}>; rel={rel}") == CTX_URL  # unquoted, type omitted
    many = (f'<https://example.org/page?a=1,2>; rel="next"; title="x, y; z", '
            f'<{CTX_URL}>; TYPE="application/ld+json"; REL="alternate {rel}"')
    assert parse_link_header(many) == CTX_URL
    assert parse_link_header(f'<{CTX_URL}>; rel="{rel}"; type="text/html"') is None
    assert parse_link_header('<https://example.org/x>; rel="next"') is None
    assert parse_link_header("garbage") is None
    assert parse_link_header(f"{LINK}, {LINK}") == CTX_URL  # the same context twice is not ambiguous
    assert response_link_header("u") == '<u>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
