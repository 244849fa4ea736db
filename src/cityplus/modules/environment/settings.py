"""Settings of the environment module (CITYPLUS_ENVIRONMENT_*), documented in docs/modules/environment.md."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EnvironmentSettings(BaseSettings):
    """How often the server recomputes the monitoring network's AQI."""

    model_config = SettingsConfigDict(env_prefix="CITYPLUS_ENVIRONMENT_", extra="ignore")

    recompute_seconds: float = Field(
        default=300.0, ge=0, le=86_400,
        description="Seconds between scheduled AQI recomputations (one process of the deployment runs them); "
                    "0 turns the schedule off.")


@lru_cache(maxsize=1)
def get_environment_settings() -> EnvironmentSettings:
    return EnvironmentSettings()
