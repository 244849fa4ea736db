"""DCAT-AP 3 export validated with pyshacl against the official shapes (../shared/reference/dcat-ap/3.0.1)."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import pytest
from rdflib import RDF, Graph, URIRef
from rdflib.namespace import DCAT, DCTERMS

from tests.conftest import need, shared_dir
from tests.opendata.factories import CKAN, ok, package

SH = URIRef("http://www.w3.org/ns/shacl#property")
# The two official shape sets of the release: the combined file, and the constraint + class-range files.
SHAPE_SETS = {"combined": ("dcat-ap-SHACL.ttl",), "html": ("html-shacl-shapes.ttl", "html-shacl-range.ttl")}


@lru_cache(maxsize=2)
def _shapes(root: str, name: str) -> Graph:
    g = Graph()
    for f in SHAPE_SETS[name]:
        g.parse(str(Path(root) / f), format="turtle")
    # dcat-ap-SHACL.ttl (3.0.1) lists two property shapes of dcat:DataServiceShape that it never defines; pyshacl
    # refuses such a graph, so the dangling references are dropped (docs/conformance.md records this).
    for s, o in list(g.subject_objects(SH)):
        if (o, None, None) not in g:
            g.remove((s, SH, o))
    return g


def shapes(name: str) -> Graph:
    root = shared_dir()
    ref = root / "reference/dcat-ap/3.0.1" if root else None
    need(ref is not None and all((ref / f).is_file() for f in SHAPE_SETS[name]),
         "the DCAT-AP 3.0.1 SHACL shapes are not in ../shared/reference/dcat-ap/3.0.1")
    return _shapes(str(ref), name)


def validate(data: Graph, name: str = "combined") -> tuple[bool, str]:
    import pyshacl

    conforms, _, text = pyshacl.validate(data, shacl_graph=shapes(name), inference="none", allow_warnings=True)
    return bool(conforms), str(text)


async def _catalogue(client, hbj) -> None:  # type: ignore[no-untyped-def]
    await ok(client, "package_create", hbj, **package())
    await client.post(CKAN + "resource_create", data={"package_id": "air-quality", "name": "日报"},
                      files={"upload": ("aqi.csv", "站点,AQI\n金牛区,85\n".encode())}, headers=hbj)
    await ok(client, "resource_create", hbj, package_id="air-quality", name="实时接口", resource_type="api",
             url="https://api.example.cn/aqi", format="API")
    await ok(client, "package_create", hbj, **package("minimal", title="最少元数据", notes="", tags=[], groups=[],
                                                      license_id="", frequency="", spatial="", temporal_start=None,
                                                      maintainer="", maintainer_email=""))
    await ok(client, "package_create", hbj, **package("draft", private=True))


@pytest.mark.parametrize("fmt,parser", [("ttl", "turtle"), ("jsonld", "json-ld"), ("rdf", "xml")])
async def test_catalog_conforms_in_every_format(client, hbj, fmt: str, parser: str) -> None:  # type: ignore[no-untyped-def]
    await _catalogue(client, hbj)
    r = await client.get(f"/catalog.{fmt}")
    assert r.status_code == 200, r.text
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
        g = Graph().parse(data=r.text, format=parser)
    datasets = set(g.subjects(RDF.type, DCAT.Dataset))
    assert len(datasets) == 2  # the draft is not exported
    services = set(g.subjects(RDF.type, DCAT.DataService))
    assert len(services) == 2  # the DataStore API of the CSV, and the API resource
    for shape_set in SHAPE_SETS:
        conforms, report = validate(g, shape_set)
        assert conforms, (shape_set, report)


async def test_dataset_document_and_paging(client, hbj) -> None:  # type: ignore[no-untyped-def]
    await _catalogue(client, hbj)
    shown = await ok(client, "package_show", id="air-quality")
    r = await client.get("/dataset/air-quality.ttl")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/turtle")
    g = Graph().parse(data=r.text, format="turtle")
    d = next(iter(g.subjects(RDF.type, DCAT.Dataset)))
    assert str(d).endswith(shown["id"])
    assert {str(t) for t in g.objects(d, DCAT.theme)} >= {
        "http://publications.europa.eu/resource/authority/data-theme/ENVI"}
    assert len(list(g.objects(d, DCAT.distribution))) == 2
    conforms, report = validate(g)
    assert conforms, report
    assert (await client.get("/dataset/draft.ttl")).status_code == 404
    assert (await client.get("/dataset/air-quality.xml")).status_code == 422
    r = await client.get("/catalog.ttl", params={"page": 1})
    g = Graph().parse(data=r.text, format="turtle")
    view = URIRef("http://127.0.0.1:8000/catalog.ttl?page=1")
    hydra = "http://www.w3.org/ns/hydra/core#"
    assert int(g.value(view, URIRef(hydra + "totalItems"))) == 2
    assert (await client.get("/catalog.ttl", params={"page": 2})).status_code == 404
    assert g.value(URIRef("http://127.0.0.1:8000/catalog"), DCTERMS.title) is not None


@pytest.mark.parametrize("shape_set", list(SHAPE_SETS))
def test_shapes_catch_a_broken_dataset(shape_set: str) -> None:
    """The validation can fail: a distribution without its mandatory access URL is a violation."""
    g = Graph()
    d, dist = URIRef("https://x.example/d"), URIRef("https://x.example/d/1")
    g.add((d, RDF.type, DCAT.Dataset))
    g.add((d, DCAT.distribution, dist))
    g.add((dist, RDF.type, DCAT.Distribution))
    conforms, report = validate(g, shape_set)
    assert not conforms and "accessURL" in report


def test_reference_dir_exists() -> None:
    root = shared_dir()
    need(root is not None, "../shared is missing")
    assert root is not None and Path(root / "reference/dcat-ap/3.0.1").is_dir()
