"""DCAT-AP 3 endpoints: `/catalog.{ttl|jsonld|rdf}` (paged, Hydra) and `/dataset/{id}.{ttl|jsonld|rdf}` (public)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from cityplus.api.deps import Ctx, DbSession, Public
from cityplus.core.errors import NotFound
from cityplus.core.identity import service as identity
from cityplus.modules.opendata import service
from cityplus.modules.opendata.dcat import CONTENT_TYPES, Exporter
from cityplus.modules.opendata.service import Reader

Fmt = Annotated[str, Path(pattern=r"^(ttl|jsonld|rdf)$", description="ttl, jsonld or rdf")]
PER_PAGE = 100


def router() -> APIRouter:
    r = APIRouter(tags=["dcat"])

    @r.get("/catalog.{fmt}", operation_id="dcat_catalog", response_class=Response)
    def dcat_catalog(fmt: Fmt, session: DbSession, ctx: Ctx, caller: Public,
                     page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
        """The catalogue as DCAT-AP 3, 100 datasets a page (hydra:PartialCollectionView links the pages)."""
        datasets, total = service.catalogue_page(session, Reader.of(caller), page, PER_PAGE)
        if page > 1 and not datasets:
            raise NotFound(f"the catalogue has no page {page}")
        orgs = {o.code: o for o in identity.list_organisations(session)}
        ex = Exporter(ctx.settings.base_url, orgs)
        ex.catalog(datasets, page=page, per_page=PER_PAGE, total=total, fmt=fmt)
        return Response(ex.serialize(fmt), media_type=CONTENT_TYPES[fmt])

    @r.get("/dataset/{ref}.{fmt}", operation_id="dcat_dataset", response_class=Response)
    def dcat_dataset(ref: Annotated[str, Path(max_length=100)], fmt: Fmt, session: DbSession, ctx: Ctx,
                     caller: Public) -> Response:
        """One dataset (by id or name) with its distributions and data services as DCAT-AP 3."""
        ds = service.get_dataset(session, Reader.of(caller), ref)
        orgs = {o.code: o for o in identity.list_organisations(session)}
        ex = Exporter(ctx.settings.base_url, orgs)
        ex.dataset(ds)
        return Response(ex.serialize(fmt), media_type=CONTENT_TYPES[fmt])

    return r
