"""Tables of the device gateway: service groups (设备组), devices (设备), idempotency receipts and dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cityplus.core.db import Base, JSONType, UTCDateTime, utcnow


class ServiceGroup(Base):
    """A FIWARE IoT Agent service (config) group: the template for every device sending under one apikey."""

    __tablename__ = "iot_service_groups"
    # The southbound identifies a group by (resource, apikey) alone — devices send no tenant — so the pair is unique
    # across tenants.
    __table_args__ = (UniqueConstraint("resource", "apikey", name="uq_iot_service_groups_resource_apikey"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    service_path: Mapped[str] = mapped_column(String(256), default="/")
    apikey: Mapped[str] = mapped_column(String(128), index=True)
    resource: Mapped[str] = mapped_column(String(256))
    entity_type: Mapped[str | None] = mapped_column(String(256), nullable=True)
    explicit_attrs: Mapped[bool] = mapped_column(Boolean, default=False)
    autoprovision: Mapped[bool] = mapped_column(Boolean, default=True)
    timestamp: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    expected_interval: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    lazy: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    commands: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    static_attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    internal_attributes: Mapped[Any] = mapped_column(JSONType, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # other IoT Agent fields, kept as given
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Device(Base):
    """A provisioned (or auto-provisioned) device and its health: last seen, message and error counts, status."""

    __tablename__ = "iot_devices"
    __table_args__ = (UniqueConstraint("tenant", "device_id", name="uq_iot_devices_tenant_device_id"),
                      Index("ix_iot_devices_apikey_device_id", "apikey", "device_id"),
                      Index("ix_iot_devices_status_offline_at", "status", "offline_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    service_path: Mapped[str] = mapped_column(String(256), default="/")
    device_id: Mapped[str] = mapped_column(String(256))
    apikey: Mapped[str] = mapped_column(String(128), default="")  # "" when no group's apikey applies yet
    entity_name: Mapped[str] = mapped_column(String(512))
    entity_type: Mapped[str] = mapped_column(String(256))
    protocol: Mapped[str | None] = mapped_column(String(64), nullable=True)
    transport: Mapped[str | None] = mapped_column(String(16), nullable=True)
    explicit_attrs: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: the group's
    timestamp: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    expected_interval: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    lazy: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    commands: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    static_attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    internal_attributes: Mapped[Any] = mapped_column(JSONType, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    autoprovisioned: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="unknown")  # unknown | online | offline
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # When an online device counts as offline unless heard from again: last seen + offline_after × interval.
    offline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    mean_interval: Mapped[float | None] = mapped_column(Float, nullable=True)  # seconds between messages (EWMA)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Receipt(Base):
    """A measurement already applied, by device and timestamp or message id: a redelivery is not applied twice."""

    __tablename__ = "iot_receipts"

    device_pk: Mapped[int] = mapped_column(ForeignKey("iot_devices.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class DeadLetter(Base):
    """A message the gateway could not apply (死信): why, from where, and its raw payload (truncated)."""

    __tablename__ = "iot_dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)  # None: no group matched
    apikey: Mapped[str] = mapped_column(String(128))
    device_id: Mapped[str] = mapped_column(String(256))
    transport: Mapped[str] = mapped_column(String(8))  # http | mqtt
    channel: Mapped[str] = mapped_column(String(512))  # HTTP path or MQTT topic
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(String(500))
    payload: Mapped[str] = mapped_column(Text)
    payload_bytes: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Command(Base):
    """A command sent to a device (e.g. `switch` on a streetlight) and its fate: PENDING → DELIVERED → OK/ERROR."""

    __tablename__ = "iot_commands"
    __table_args__ = (Index("ix_iot_commands_device_pk_name_status", "device_pk", "name", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("iot_devices.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    transport: Mapped[str] = mapped_column(String(8))  # mqtt (published) | http (kept for polling)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    info: Mapped[Any] = mapped_column(JSONType, nullable=True)  # the device's result
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Lease(Base):
    """Who runs a singleton job (the MQTT gateway connection) until when; renewed while the holder lives."""

    __tablename__ = "iot_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
