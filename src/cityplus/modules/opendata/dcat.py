"""DCAT-AP 3 export of the catalogue with rdflib: catalogue pages (Hydra paging), datasets, distributions and
data services (the DataStore API), in Turtle, RDF/XML and JSON-LD."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, time

from rdflib import RDF, XSD, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, SKOS

from cityplus.core.identity.models import Organisation
from cityplus.modules.opendata.models import Dataset, Resource
from cityplus.modules.opendata.vocab import EU, FREQUENCIES, LICENCES, MEDIA_TYPES, THEMES

HYDRA = Namespace("http://www.w3.org/ns/hydra/core#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
DCAT3 = Namespace("http://www.w3.org/ns/dcat#")  # open namespace: DCAT 3 terms (dcat:version) rdflib lacks
SPDX = Namespace("http://spdx.org/rdf/terms#")
ADMS = Namespace("http://www.w3.org/ns/adms#")
FORMATS = {"ttl": "turtle", "rdf": "xml", "jsonld": "json-ld"}
CONTENT_TYPES = {"ttl": "text/turtle; charset=utf-8", "rdf": "application/rdf+xml; charset=utf-8",
                 "jsonld": "application/ld+json; charset=utf-8"}
ACCESS_RIGHTS = {"open": "PUBLIC", "conditional": "RESTRICTED", "closed": "NON_PUBLIC"}
EU_FILE_TYPES = {"CSV": "CSV", "XLSX": "XLSX", "JSON": "JSON", "GEOJSON": "GEOJSON", "HTML": "HTML", "PDF": "PDF",
                 "XML": "XML", "API": "REST"}


def _graph() -> Graph:
    g = Graph()
    for prefix, ns in (("dcat", DCAT), ("dct", DCTERMS), ("foaf", FOAF), ("skos", SKOS), ("vcard", VCARD),
                       ("hydra", HYDRA), ("spdx", SPDX), ("adms", ADMS)):
        g.bind(prefix, ns)
    return g


class Exporter:
    """Builds DCAT-AP triples for datasets of one catalogue at `base` URL."""

    def __init__(self, base: str, orgs: dict[str, Organisation]) -> None:
        self.base = base.rstrip("/")
        self.orgs = orgs
        self.g = _graph()

    def uri(self, path: str) -> URIRef:
        return URIRef(f"{self.base}{path}")

    def _literal_langs(self, s: URIRef | BNode, p: URIRef, zh: str, en: str) -> None:
        if zh:
            self.g.add((s, p, Literal(zh, lang="zh")))
        if en:
            self.g.add((s, p, Literal(en, lang="en")))

    def _concept(self, uri: URIRef, label_zh: str, label_en: str, scheme: URIRef, cls: URIRef | None = None
                 ) -> URIRef:
        g = self.g
        g.add((uri, RDF.type, SKOS.Concept))
        if cls is not None:
            g.add((uri, RDF.type, cls))
        self._literal_langs(uri, SKOS.prefLabel, label_zh, label_en)
        g.add((uri, SKOS.inScheme, scheme))
        g.add((scheme, RDF.type, SKOS.ConceptScheme))
        g.add((scheme, DCTERMS.title, Literal(str(scheme).rsplit("/", 1)[-1], lang="en")))
        return uri

    def publisher(self, code: str) -> URIRef:
        g = self.g
        org = self.orgs.get(code)
        agent = self.uri(f"/organization/{code}")
        g.add((agent, RDF.type, FOAF.Agent))
        g.add((agent, RDF.type, FOAF.Organization))
        self._literal_langs(agent, FOAF.name, org.name_zh if org else code, org.name_en if org else "")
        kind = self._concept(URIRef("http://purl.org/adms/publishertype/LocalAuthority"), "地方政府",
                             "Local authority", URIRef("http://purl.org/adms/publishertype/1.0"))
        g.add((agent, DCTERMS.type, kind))
        return agent

    def license(self, code: str) -> URIRef | None:
        lic = LICENCES.get(code)
        if lic is None:
            return None
        uri = URIRef(lic.uri)
        self.g.add((uri, RDF.type, DCTERMS.LicenseDocument))
        self._literal_langs(uri, DCTERMS.title, lic.zh, lic.en)
        return uri

    def contact(self, ds: Dataset) -> BNode | None:
        if not (ds.contact_name or ds.contact_email):
            return None
        g = self.g
        node = BNode()
        g.add((node, RDF.type, VCARD.Kind))
        g.add((node, RDF.type, VCARD.Organization))
        g.add((node, VCARD.fn, Literal(ds.contact_name or ds.org_code)))
        if ds.contact_email:
            g.add((node, VCARD.hasEmail, URIRef(f"mailto:{ds.contact_email}")))
        return node

    def dataset(self, ds: Dataset, catalog: URIRef | None = None) -> URIRef:
        g = self.g
        d = self.uri(f"/dataset/{ds.id}")
        g.add((d, RDF.type, DCAT.Dataset))
        if catalog is not None:
            g.add((catalog, DCAT.dataset, d))
        self._literal_langs(d, DCTERMS.title, ds.title_zh, ds.title_en)
        self._literal_langs(d, DCTERMS.description, ds.description_zh or ds.title_zh, ds.description_en)
        g.add((d, DCTERMS.identifier, Literal(ds.id)))
        g.add((d, DCAT.landingPage, self._page(f"/opendata/dataset/{ds.name}")))
        g.add((d, DCTERMS.publisher, self.publisher(ds.org_code)))
        for k in ds.keywords:
            g.add((d, DCAT.keyword, Literal(k, lang="zh")))
        for t in ds.themes:
            term = THEMES[t]
            if term.uri:
                concept = self._concept(URIRef(term.uri), term.zh, term.en, URIRef(f"{EU}data-theme"))
            else:
                concept = self._concept(self.uri(f"/opendata/themes/{t}"), term.zh, term.en,
                                        self.uri("/opendata/themes"))
            g.add((d, DCAT.theme, concept))
        freq = FREQUENCIES.get(ds.frequency)
        if freq is not None:
            f = URIRef(freq[0].uri)
            g.add((f, RDF.type, DCTERMS.Frequency))
            self._literal_langs(f, SKOS.prefLabel, freq[0].zh, freq[0].en)
            g.add((d, DCTERMS.accrualPeriodicity, f))
        if ds.spatial:
            loc = BNode()
            g.add((loc, RDF.type, DCTERMS.Location))
            g.add((loc, SKOS.prefLabel, Literal(ds.spatial, lang="zh")))
            g.add((d, DCTERMS.spatial, loc))
        if ds.temporal_start or ds.temporal_end:
            period = BNode()
            g.add((period, RDF.type, DCTERMS.PeriodOfTime))
            if ds.temporal_start:
                g.add((period, DCAT.startDate, Literal(ds.temporal_start, datatype=XSD.date)))
            if ds.temporal_end:
                g.add((period, DCAT.endDate, Literal(ds.temporal_end, datatype=XSD.date)))
            g.add((d, DCTERMS.temporal, period))
        contact = self.contact(ds)
        if contact is not None:
            g.add((d, DCAT.contactPoint, contact))
        rights = URIRef(f"{EU}access-right/{ACCESS_RIGHTS[ds.opening]}")
        g.add((rights, RDF.type, DCTERMS.RightsStatement))
        g.add((d, DCTERMS.accessRights, rights))
        g.add((d, DCTERMS.issued, _dt(ds.published_at or ds.created_at)))
        g.add((d, DCTERMS.modified, _dt(ds.modified_at)))
        if ds.version:
            g.add((d, DCAT3.version, Literal(str(ds.version))))
        lic = self.license(ds.licence)
        for res in ds.resources:
            g.add((d, DCAT.distribution, self.distribution(ds, res, lic, catalog)))
        return d

    def _page(self, path: str) -> URIRef:
        page = self.uri(path)
        self.g.add((page, RDF.type, FOAF.Document))
        return page

    def distribution(self, ds: Dataset, res: Resource, lic: URIRef | None, catalog: URIRef | None) -> URIRef:
        g = self.g
        dist = self.uri(f"/dataset/{ds.id}/resource/{res.id}")
        g.add((dist, RDF.type, DCAT.Distribution))
        g.add((dist, DCTERMS.title, Literal(res.name, lang="zh")))
        if res.description:
            g.add((dist, DCTERMS.description, Literal(res.description, lang="zh")))
        if res.kind == "file":
            download = self.uri(f"/opendata/dataset/{ds.name}/resource/{res.id}/download")
            g.add((dist, DCAT.accessURL, download))
            g.add((dist, DCAT.downloadURL, download))
        else:
            g.add((dist, DCAT.accessURL, URIRef(res.url)))
        file_type = EU_FILE_TYPES.get(res.format)
        if file_type:
            ft = URIRef(f"{EU}file-type/{file_type}")
            g.add((ft, RDF.type, DCTERMS.MediaTypeOrExtent))
            g.add((dist, DCTERMS.format, ft))
        media = MEDIA_TYPES.get(res.format)
        if media and res.kind == "file":
            mt = URIRef(f"https://www.iana.org/assignments/media-types/{media}")
            g.add((mt, RDF.type, DCTERMS.MediaType))
            g.add((dist, DCAT.mediaType, mt))
        if res.size is not None:
            g.add((dist, DCAT.byteSize, Literal(res.size, datatype=XSD.nonNegativeInteger)))
        if res.sha256:
            cs = BNode()
            g.add((cs, RDF.type, SPDX.Checksum))
            g.add((cs, SPDX.algorithm, SPDX.checksumAlgorithm_sha256))
            g.add((SPDX.checksumAlgorithm_sha256, RDF.type, SPDX.ChecksumAlgorithm))
            g.add((cs, SPDX.checksumValue, Literal(res.sha256, datatype=XSD.hexBinary)))
            g.add((dist, SPDX.checksum, cs))
        if lic is not None:
            g.add((dist, DCTERMS.license, lic))
        g.add((dist, DCTERMS.modified, _dt(res.modified_at)))
        if res.datastore_table or res.kind == "api":
            g.add((dist, DCAT.accessService, self.service(ds, res, lic, catalog)))
        return dist

    def service(self, ds: Dataset, res: Resource, lic: URIRef | None, catalog: URIRef | None) -> URIRef:
        """The DataStore query API of a resource (or an API resource) as a dcat:DataService."""
        g = self.g
        svc = self.uri(f"/dataset/{ds.id}/resource/{res.id}/service")
        g.add((svc, RDF.type, DCAT.DataService))
        if res.datastore_table:
            endpoint = self.uri(f"/api/3/action/datastore_search?resource_id={res.id}")
            g.add((svc, DCTERMS.title, Literal(f"{res.name}（DataStore API）", lang="zh")))
            g.add((svc, DCAT.endpointDescription, self._page("/docs")))
        else:
            endpoint = URIRef(res.url)
            g.add((svc, DCTERMS.title, Literal(res.name, lang="zh")))
        g.add((svc, DCAT.endpointURL, endpoint))
        g.add((svc, DCAT.servesDataset, self.uri(f"/dataset/{ds.id}")))
        g.add((svc, DCTERMS.publisher, self.publisher(ds.org_code)))
        if lic is not None:
            g.add((svc, DCTERMS.license, lic))
        contact = self.contact(ds)
        if contact is not None:
            g.add((svc, DCAT.contactPoint, contact))
        if catalog is not None:
            g.add((catalog, DCAT.service, svc))
        return svc

    def catalog(self, datasets: list[Dataset], *, page: int, per_page: int, total: int, fmt: str) -> URIRef:
        g = self.g
        cat = self.uri("/catalog")
        g.add((cat, RDF.type, DCAT.Catalog))
        self._literal_langs(cat, DCTERMS.title, "成都市政府数据开放平台", "Chengdu open government data")
        self._literal_langs(cat, DCTERMS.description, "成都市各部门依法开放的政府数据（CityPlus）",
                            "Government data opened by Chengdu's departments (CityPlus)")
        g.add((cat, DCTERMS.publisher, self.publisher("zwfwb")))
        g.add((cat, FOAF.homepage, self._page("/opendata")))
        lang = URIRef(f"{EU}language/ZHO")
        g.add((lang, RDF.type, DCTERMS.LinguisticSystem))
        g.add((cat, DCTERMS.language, lang))
        for ds in datasets:
            self.dataset(ds, cat)
        last = max(1, -(-total // per_page))
        view = self.uri(f"/catalog.{fmt}?page={page}")
        g.add((view, RDF.type, HYDRA.PartialCollectionView))
        g.add((view, HYDRA.totalItems, Literal(total, datatype=XSD.integer)))
        g.add((view, HYDRA.itemsPerPage, Literal(per_page, datatype=XSD.integer)))
        g.add((view, HYDRA.first, self.uri(f"/catalog.{fmt}?page=1")))
        g.add((view, HYDRA.last, self.uri(f"/catalog.{fmt}?page={last}")))
        if page > 1:
            g.add((view, HYDRA.previous, self.uri(f"/catalog.{fmt}?page={page - 1}")))
        if page < last:
            g.add((view, HYDRA.next, self.uri(f"/catalog.{fmt}?page={page + 1}")))
        return cat

    def serialize(self, fmt: str) -> str:
        with warnings.catch_warnings():
            # rdflib's JSON-LD serializer still builds a ConjunctiveGraph internally (deprecated in rdflib 7)
            warnings.filterwarnings("ignore", "ConjunctiveGraph is deprecated", DeprecationWarning)
            return self.g.serialize(format=FORMATS[fmt])


def _dt(value: datetime | date | None) -> Literal:
    if isinstance(value, datetime):
        return Literal(value.astimezone(UTC).replace(microsecond=0), datatype=XSD.dateTime)
    if isinstance(value, date):
        return Literal(datetime.combine(value, time(), UTC), datatype=XSD.dateTime)
    return Literal(datetime.now(UTC).replace(microsecond=0), datatype=XSD.dateTime)
