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

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str) -> str:
        if v not in ("on", "none"):
            raise ValueError("must be 'on' or 'none'")
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
