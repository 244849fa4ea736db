"""Settings of the context broker (CITYPLUS_CONTEXT_*), documented in docs/modules/context.md."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ContextSettings(BaseSettings):
    """How the NGSI-LD broker authenticates, pages and finds JSON-LD contexts."""

    model_config = SettingsConfigDict(env_prefix="CITYPLUS_CONTEXT_", extra="ignore")

    auth: str = Field(default="on", description="'on', or 'none' to serve /ngsi-ld/v1 without authentication.")
    max_limit: int = Field(default=1000, ge=1, le=100_000, description="Largest page size (limit).")
    default_limit: int = Field(default=20, ge=1, description="Page size when the client names none.")
    remote_contexts: bool = Field(default=True, description="Fetch remote @context URLs (off: intranet).")
    preload: dict[str, Path] = Field(default_factory=dict,
                                     description='JSON object mapping context URLs to local files.')
    open_types: list[str] = Field(default_factory=list,
                                  description="Entity types (IRIs or core-context terms) readable anonymously.")

    history: bool = Field(default=True, description="Keep every attribute change in the temporal history.")
    history_retention: dict[str, float] = Field(
        default_factory=dict, description='JSON object: entity type (IRI or core term) or "*" -> days of history kept.')
    max_instances: int = Field(default=10_000, ge=1, le=1_000_000,
                               description="Most attribute instances one temporal response returns per attribute.")
    notify_timeout: float = Field(default=5.0, gt=0, le=120,
                                  description="Seconds to connect to and hear back from a notification receiver.")
    notify_max_attempts: int = Field(default=8, ge=1, le=100,
                                     description="Delivery attempts of one notification before it is kept as failed.")
    notify_backoff: float = Field(default=1.0, gt=0, le=600,
                                  description="First retry delay in seconds; doubles per attempt (at most 300).")
    notify_poll: float = Field(default=0.5, gt=0, le=60,
                               description="Seconds between outbox polls (a process's own writes wake it at once).")
    notify_concurrency: int = Field(default=32, ge=1, le=1000,
                                    description="Subscriptions delivered to at the same time by one process.")
    notify_lease: float = Field(default=60.0, gt=0, le=3600,
                                description="Seconds a process holds the outbox rows it claimed before others may.")

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str) -> str:
        if v not in ("on", "none"):
            raise ValueError("must be 'on' or 'none'")
        return v

    @field_validator("history_retention", mode="before")
    @classmethod
    def _retention(cls, v: object) -> object:
        if isinstance(v, str):
            v = json.loads(v) if v.strip() else {}
        if isinstance(v, dict) and any(not isinstance(d, int | float) or d <= 0 for d in v.values()):
            raise ValueError("days of history must be positive numbers")
        return v

    @field_validator("preload", mode="before")
    @classmethod
    def _preload(cls, v: object) -> object:
        if isinstance(v, str):
            return json.loads(v) if v.strip() else {}
        return v


@lru_cache(maxsize=1)
def get_context_settings() -> ContextSettings:
    return ContextSettings()
