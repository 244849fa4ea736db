"""Settings of the open-data module (CITYPLUS_OPENDATA_*), documented in docs/modules/opendata.md."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OpendataSettings(BaseSettings):
    """Limits of uploads and DataStore queries."""

    model_config = SettingsConfigDict(env_prefix="CITYPLUS_OPENDATA_", extra="ignore")

    max_upload_bytes: int = Field(default=8 * 1024 * 1024, ge=1024,
                                  description="Largest uploaded file (CITYPLUS_MAX_BODY_BYTES caps it too).")
    max_rows: int = Field(default=32_000, ge=1, le=1_000_000, description="Most rows one datastore_search returns.")
    max_columns: int = Field(default=500, ge=1, le=1600, description="Most columns a DataStore table may have.")


@lru_cache(maxsize=1)
def opendata_settings() -> OpendataSettings:
    return OpendataSettings()
