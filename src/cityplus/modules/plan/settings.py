"""Settings of plan supervision (CITYPLUS_PLAN_*), documented in docs/modules/plan.md."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PlanSettings(BaseSettings):
    """Warning lights, reminders and attachments of the supervision (督查督办) work items."""

    model_config = SettingsConfigDict(env_prefix="CITYPLUS_PLAN_", extra="ignore")

    warn_workdays: int = Field(default=3, ge=0, le=60,
                               description="Yellow light within this many working days of the due date.")
    remind_workdays: int = Field(default=3, ge=0, le=60,
                                 description="Reminder this many working days before the due date.")
    reminder_seconds: float = Field(default=3600, ge=0,
                                    description="How often the reminder job runs; 0: never (run it from the CLI).")
    reminder_lease_seconds: float = Field(default=300, ge=5, le=86_400,
                                          description="Lease of the reminder job across server processes.")
    attachment_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024,
                                      description="Largest report attachment.")
