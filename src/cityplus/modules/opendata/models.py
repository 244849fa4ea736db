"""Tables of the open-data module: catalogue (datasets, resources, versions), search index and facets."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cityplus.core.db import Base, JSONType, UTCDateTime, utcnow


class Dataset(Base):
    """A catalogue entry (数据集) published by one department; `state` is draft, published or deleted."""

    __tablename__ = "opendata_datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID, like CKAN's package ids
    name: Mapped[str] = mapped_column(String(100), unique=True)  # URL slug (CKAN `name`)
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(300), default="")
    description_zh: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    org_code: Mapped[str] = mapped_column(ForeignKey("core_organisations.code"), index=True)
    themes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    keywords: Mapped[list[str]] = mapped_column(JSONType, default=list)
    licence: Mapped[str] = mapped_column(String(32), default="")
    frequency: Mapped[str] = mapped_column(String(16), default="")
    spatial: Mapped[str] = mapped_column(String(200), default="")
    temporal_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    temporal_end: Mapped[date | None] = mapped_column(Date, nullable=True)
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    opening: Mapped[str] = mapped_column(String(16), index=True)  # open / conditional / closed
    sharing: Mapped[str] = mapped_column(String(16))  # share / conditional / none
    grade: Mapped[int] = mapped_column(Integer, default=1)  # data grade 1 (一般) … 4 (核心)
    state: Mapped[str] = mapped_column(String(16), index=True, default="draft")
    version: Mapped[int] = mapped_column(Integer, default=0)  # 0 until first published
    demo: Mapped[bool] = mapped_column(default=False)
    views: Mapped[int] = mapped_column(Integer, default=0)
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    resources: Mapped[list[Resource]] = relationship(
        back_populates="dataset", order_by="Resource.position", cascade="all, delete-orphan", lazy="selectin")


class Resource(Base):
    """A distribution of a dataset (资源): an uploaded file, a link or an API service."""

    __tablename__ = "opendata_resources"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("opendata_datasets.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))  # file / link / api / documentation
    format: Mapped[str] = mapped_column(String(16), default="")  # CSV, XLSX, JSON, GEOJSON, HTML, API …
    url: Mapped[str] = mapped_column(String(2000), default="")  # links and API services
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    encoding: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # DataStore: the table holding the rows, and its fields [{id, type, col, label}]
    datastore_table: Mapped[str | None] = mapped_column(String(63), nullable=True)
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    primary_key: Mapped[list[str]] = mapped_column(JSONType, default=list)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="resources")


class ResourceFile(Base):
    """The uploaded bytes of a file resource (kept in the database, so API workers stay stateless)."""

    __tablename__ = "opendata_resource_files"

    resource_id: Mapped[str] = mapped_column(ForeignKey("opendata_resources.id", ondelete="CASCADE"),
                                             primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)


class DatasetVersion(Base):
    """One published version of a dataset's metadata with its change note (变更记录)."""

    __tablename__ = "opendata_dataset_versions"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("opendata_datasets.id", ondelete="CASCADE"),
                                            primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    changed: Mapped[list[str]] = mapped_column(JSONType, default=list)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)


class VisibilityCopy:
    """The dataset columns the access rules read, copied onto index rows so searches never join the datasets."""

    org_code: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    opening: Mapped[str] = mapped_column(String(16))
    sharing: Mapped[str] = mapped_column(String(16))


class SearchTerm(VisibilityCopy, Base):
    """Inverted index: one segmented term (jieba) of a dataset with its weight (title > keywords > text)."""

    __tablename__ = "opendata_search_terms"
    # Covering: a term's matches, their weights and visibility come from the index alone.
    __table_args__ = (Index("ix_opendata_search_terms_cover", "term", "state", "opening", "dataset_id", "weight",
                            "org_code", "sharing"),
                      {"sqlite_with_rowid": False})  # SQLite: rows live in the primary-key B-tree

    term: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("opendata_datasets.id", ondelete="CASCADE"),
                                            primary_key=True, index=True)
    weight: Mapped[int] = mapped_column(Integer)


class FacetValue(VisibilityCopy, Base):
    """One facet value of a dataset (publisher, theme, format, keyword, licence, opening) for counts and filters."""

    __tablename__ = "opendata_facet_values"
    # Facet counts of a set of matched datasets are read from this index alone.
    __table_args__ = (Index("ix_opendata_facet_values_cover", "dataset_id", "facet", "value"),
                      {"sqlite_with_rowid": False})

    facet: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(100), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("opendata_datasets.id", ondelete="CASCADE"),
                                            primary_key=True, index=True)
