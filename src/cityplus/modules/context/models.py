"""Tables of the context broker (context_*): tenants, entities, their types, query and geo indexes, contexts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cityplus.core.db import Base, JSONType, UTCDateTime, utcnow
from cityplus.modules.context.geo import geo_index_table
from cityplus.modules.context.query_sql import attr_index_table


class ContextTenant(Base):
    """An NGSI-LD tenant (NGSILD-Tenant header); '' is the default tenant. Created on first write."""

    __tablename__ = "context_tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContextEntity(Base):
    """One entity: its id, types and attributes in expanded, normalized form."""

    __tablename__ = "context_entities"
    __table_args__ = (UniqueConstraint("tenant_id", "entity_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("context_tenants.id"), index=True)
    entity_id: Mapped[str] = mapped_column(String(512))
    types: Mapped[list[str]] = mapped_column(JSONType)
    scopes: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContextEntityType(Base):
    """Index of entity types (an entity may have several)."""

    __tablename__ = "context_entity_types"
    __table_args__ = (Index("ix_context_entity_types_tenant_type", "tenant_id", "type"),)

    entity_pk: Mapped[int] = mapped_column(ForeignKey("context_entities.pk", ondelete="CASCADE"), primary_key=True)
    type: Mapped[str] = mapped_column(String(512), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer)


class HostedContext(Base):
    """A JSON-LD context stored through /jsonldContexts and served back by the broker."""

    __tablename__ = "context_jsonld_contexts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(1024), unique=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    kind: Mapped[str] = mapped_column(String(16), default="hosted")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


attr_index = attr_index_table(Base.metadata)
geo_index = geo_index_table(Base.metadata, entity_fk="context_entities.pk")
