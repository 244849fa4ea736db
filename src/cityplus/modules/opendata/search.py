"""Catalogue search: a jieba-segmented inverted index and facet table, the same SQL on SQLite and PostgreSQL.

Indexing stores every term of `jieba.cut_for_search` (which also yields the sub-words of long words, so `公交` is a
term of `公交线路站点`) with a field weight. A query is cut with `jieba.cut` into words; a dataset matches when it has
every word as a term; it ranks by the summed weights. Facets (publisher, theme, format, keyword, licence, opening)
live in their own table so counts and filters are plain GROUP BY / IN queries on both databases.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, delete, desc, func, insert, literal, select
from sqlalchemy.orm import Session, aliased

from cityplus.core.errors import DomainError
from cityplus.modules.opendata.models import Dataset, FacetValue, SearchTerm

WEIGHTS = {"title": 10, "keyword": 6, "resource": 3, "text": 1}
FACETS = ("organization", "theme", "format", "keyword", "license_id", "opening")
_WORD = re.compile(r"[\w\u3400-\u9fff]", re.UNICODE)
_jieba_lock = threading.Lock()
_jieba: Any = None


class SearchQueryError(DomainError):
    """The search request is malformed (CKAN's Search Query Error)."""

    status, title, type_slug = 400, "Search query error", "search-query-error"


def _tokenizer() -> Any:
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def _keep(token: str) -> str | None:
    token = token.strip().lower()
    if not token or len(token) > 64 or not _WORD.search(token):
        return None
    return token


def index_terms(text: str) -> set[str]:
    """All terms of a text for the index (search-mode segmentation: words and their sub-words)."""
    out = set()
    for t in _tokenizer().cut_for_search(text or ""):
        k = _keep(t)
        if k:
            out.add(k)
    return out


def query_words(q: str) -> list[str]:
    """The words of a query (accurate-mode segmentation), each of which a match must contain."""
    return list(dict.fromkeys(k for t in _tokenizer().cut(q or "") if (k := _keep(t))))


def index_dataset(session: Session, ds: Dataset) -> None:
    """(Re)write the index and facet rows of one dataset; a deleted dataset has none."""
    unindex(session, ds.id)
    if ds.state == "deleted":
        return
    weights: dict[str, int] = {}

    def add(text: str, weight: int) -> None:
        for t in index_terms(text):
            weights[t] = max(weights.get(t, 0), weight)

    add(f"{ds.title_zh} {ds.title_en} {ds.name}", WEIGHTS["title"])
    add(" ".join(ds.keywords), WEIGHTS["keyword"])
    add(" ".join(r.name for r in ds.resources), WEIGHTS["resource"])
    add(f"{ds.description_zh} {ds.description_en}", WEIGHTS["text"])
    vis = {"org_code": ds.org_code, "state": ds.state, "opening": ds.opening, "sharing": ds.sharing}
    if weights:
        session.execute(insert(SearchTerm), [{"term": t, "dataset_id": ds.id, "weight": w, **vis}
                                             for t, w in weights.items()])
    facets = {("organization", ds.org_code), ("opening", ds.opening)}
    facets |= {("theme", t) for t in ds.themes}
    facets |= {("keyword", k[:100]) for k in ds.keywords}
    facets |= {("format", r.format.upper()) for r in ds.resources if r.format}
    if ds.licence:
        facets.add(("license_id", ds.licence))
    session.execute(insert(FacetValue), [{"facet": f, "value": v, "dataset_id": ds.id, **vis} for f, v in facets])


def unindex(session: Session, dataset_id: str) -> None:
    session.execute(delete(SearchTerm).where(SearchTerm.dataset_id == dataset_id))
    session.execute(delete(FacetValue).where(FacetValue.dataset_id == dataset_id))


@dataclass
class SearchResult:
    count: int
    datasets: list[Dataset]
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


SORTS = {"score desc", "relevance", "metadata_modified desc", "metadata_modified asc", "popularity desc",
         "views_recent desc", "title_string asc", "title_string desc", "name asc", "name desc"}

_FQ_TERM = re.compile(r'\s*(?:\+)?(\w+):(?:"([^"]*)"|(\S+))\s*')


def parse_fq(fq: str) -> list[tuple[str, str]]:
    """CKAN/Solr filter queries of the form `field:value field:"quoted value"` (AND); anything else is refused."""
    pairs = []
    pos = 0
    fq = fq or ""
    while pos < len(fq):
        m = _FQ_TERM.match(fq, pos)
        if not m:
            raise SearchQueryError(f"cannot parse fq at position {pos}: use field:value or field:\"value\"")
        key = m.group(1)
        key = {"organization": "organization", "groups": "theme", "tags": "keyword", "res_format": "format",
               "license_id": "license_id", "theme": "theme", "opening": "opening", "keyword": "keyword",
               "format": "format"}.get(key, "")
        if not key:
            raise SearchQueryError(f"fq field {m.group(1)!r} is not searchable; use one of organization, groups, "
                                   "tags, res_format, license_id, opening")
        pairs.append((key, m.group(2) if m.group(2) is not None else m.group(3)))
        pos = m.end()
    return pairs


def search(session: Session, visible: Callable[[Any], ColumnElement[bool]], *, q: str = "",
           filters: Iterable[tuple[str, str]] = (), facet_fields: Iterable[str] = FACETS, sort: str = "",
           rows: int = 10, start: int = 0, facet_limit: int = 50) -> SearchResult:
    """Datasets matching `q` and every filter among those `visible(model)` selects, ranked, with facet counts.

    Matching, counting and facets read only the index tables (which carry the visibility columns); the datasets
    table is read for the page, and joined only for sorts on its columns.
    """
    words = query_words(q)
    sort = (sort or "").strip().lower()
    if sort and sort not in SORTS:
        raise SearchQueryError(f"cannot sort by {sort!r}; use one of {', '.join(sorted(SORTS))}")
    if words:
        hits = (select(SearchTerm.dataset_id.label("did"), func.sum(SearchTerm.weight).label("score"))
                .where(SearchTerm.term.in_(words), visible(SearchTerm)).group_by(SearchTerm.dataset_id)
                .having(func.count() == len(words)))
    else:  # every visible dataset has exactly one "organization" facet row
        hits = (select(FacetValue.dataset_id.label("did"), literal(0).label("score"))
                .where(FacetValue.facet == "organization", visible(FacetValue)))
    for facet, value in filters:
        fv = aliased(FacetValue)  # not the outer FacetValue (no correlation)
        hits = hits.where((SearchTerm.dataset_id if words else FacetValue.dataset_id).in_(
            select(fv.dataset_id).where(fv.facet == facet, fv.value == value)))
    matched = hits.subquery()
    page_q = select(matched.c.did, func.count().over().label("total"))
    order: list[Any]
    if sort.startswith(("metadata_modified", "popularity", "views_recent", "title_string", "name")) or not words:
        page_q = page_q.join(Dataset, Dataset.id == matched.c.did)
        if sort.startswith("metadata_modified") or not sort:
            order = [Dataset.modified_at.asc() if sort.endswith("asc") else Dataset.modified_at.desc()]
        elif sort in ("popularity desc", "views_recent desc"):
            order = [desc(Dataset.downloads + Dataset.views)]
        else:
            order = [Dataset.name.asc() if sort.endswith("asc") else Dataset.name.desc()]
        if words and not sort:
            order = [desc(matched.c.score)]
    else:
        order = [desc(matched.c.score)]
    page = session.execute(page_q.order_by(*order, matched.c.did).limit(max(rows, 1)).offset(start)).all()
    total = int(page[0].total) if page else 0
    if not page and start:
        total = session.scalar(select(func.count()).select_from(matched)) or 0
    page_ids = [r.did for r in page[:rows]]
    by_id = {d.id: d for d in session.scalars(select(Dataset).where(Dataset.id.in_(page_ids)))} if page_ids else {}
    facets: dict[str, dict[str, int]] = {}
    wanted = [f for f in facet_fields if f in FACETS]
    if wanted:
        stmt = select(FacetValue.facet, FacetValue.value, func.count().label("n"))
        if words or filters:  # the matched set is visible already: drive the count from it
            stmt = (stmt.select_from(matched).join(FacetValue, FacetValue.dataset_id == matched.c.did)
                    .where(FacetValue.facet.in_(wanted)))
        else:
            stmt = stmt.where(FacetValue.facet.in_(wanted), visible(FacetValue))
        for f in wanted:
            facets[f] = {}
        for f, v, n in session.execute(stmt.group_by(FacetValue.facet, FacetValue.value)
                                       .order_by(desc("n"), FacetValue.value)):
            if len(facets[f]) < facet_limit:
                facets[f][v] = n
    return SearchResult(count=total, datasets=[by_id[i] for i in page_ids if i in by_id], facets=facets)
