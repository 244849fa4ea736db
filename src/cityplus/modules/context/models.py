"""Tables of the context broker (context_*): tenants, entities, their types, query and geo indexes, contexts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    # Bumped whenever a subscription of the tenant changes in a way that affects matching: every process keeps
    # the tenant's subscriptions in memory and reloads them when this differs from what it loaded.
    sub_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


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


class ContextSubscription(Base):
    """An NGSI-LD subscription (§5.2.12): its expanded definition in `spec`, and its delivery status."""

    __tablename__ = "context_subscriptions"
    __table_args__ = (UniqueConstraint("tenant_id", "sub_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("context_tenants.id"), index=True)
    sub_id: Mapped[str] = mapped_column(String(512))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)  # expanded names; see subscriptions.py
    context: Mapped[Any] = mapped_column(JSONType, nullable=True)  # the @context notifications are compacted with
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    times_sent: Mapped[int] = mapped_column(Integer, default=0)
    times_failed: Mapped[int] = mapped_column(Integer, default=0)
    last_notification: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_failure: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failing: Mapped[bool] = mapped_column(Boolean, default=False)  # the last delivery failed for good
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContextNotification(Base):
    """The notification outbox: written in the transaction of the change, delivered (and deleted) afterwards.

    A delivering process claims rows by setting `claimed_by`/`claimed_until` (a lease): one process sends each
    row, and the rows of a process that died are taken over when its lease runs out.
    """

    __tablename__ = "context_notifications"
    # AUTOINCREMENT on SQLite: a delivered row's key is never reused, so notification ids (derived from it) are
    # unique.
    __table_args__ = (Index("ix_context_notifications_due", "state", "due_at"), {"sqlite_autoincrement": True})

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    sub_pk: Mapped[int] = mapped_column(ForeignKey("context_subscriptions.pk", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(32))
    data: Mapped[list[Any]] = mapped_column(JSONType)  # expanded entity documents
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | failed
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ContextHistory(Base):
    """One attribute instance as written at one time: the temporal evolution of entities (temporal.py)."""

    __tablename__ = "context_history"
    # num rides in the (…, observedAt) index so aggregations read the index alone, not the rows with their JSON.
    __table_args__ = (Index("ix_context_history_observed", "tenant_id", "entity_id", "attr", "observed_at", "num"),
                      Index("ix_context_history_modified", "modified_at"),
                      {"sqlite_autoincrement": True})  # instance ids (from the key) are never reused

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    entity_id: Mapped[str] = mapped_column(String(512))
    attr: Mapped[str] = mapped_column(String(512))
    dataset_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)
    value: Mapped[dict[str, Any]] = mapped_column(JSONType)
    num: Mapped[float | None] = mapped_column(Float, nullable=True)


class ContextTemporalEntity(Base):
    """The entities that have a history, with their types (kept when the entity itself is deleted)."""

    __tablename__ = "context_temporal_entities"
    __table_args__ = (UniqueConstraint("tenant_id", "entity_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    entity_id: Mapped[str] = mapped_column(String(512))
    types: Mapped[list[str]] = mapped_column(JSONType)


attr_index = attr_index_table(Base.metadata)
geo_index = geo_index_table(Base.metadata, entity_fk="context_entities.pk")
