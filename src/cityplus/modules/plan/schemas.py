"""Response models of the plan API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from cityplus.api.schemas import Localized


class UnitRef(BaseModel):
    code: str
    name_zh: str
    lead: bool


class Platform(BaseModel):
    zh: str
    en: str


class TaskSummary(BaseModel):
    number: int
    numeral: str
    area: int
    title: Localized
    units: list[UnitRef]


class TaskPublic(TaskSummary):
    text: Localized
    platforms: list[Platform]
    units_note: Localized | None = None
    modules: list[str]


class AreaPublic(BaseModel):
    number: int
    numeral: str
    key: str
    title: Localized
    intro: Localized
    lead_units: list[UnitRef]
    tasks: list[int]


class ModuleRef(BaseModel):
    name: str
    title: Localized
    usage: dict[str, int] = Field(default_factory=dict, description="the module's live usage figures")


class CoverageRowPublic(BaseModel):
    task: int
    numeral: str
    area: int
    title: Localized
    modules: list[ModuleRef]


class CoveragePublic(BaseModel):
    tasks: list[CoverageRowPublic]
    covered: int
    total: int


class OrgPlanPublic(BaseModel):
    org: str
    leads: list[TaskSummary]
    shares: list[TaskSummary]
    leads_areas: list[int]


# --- supervision (督查督办) -------------------------------------------------------------------------------------

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
OrgCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,31}$")]
Text2k = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_date(value: date | None) -> date | None:
    if value is not None and not (date(2000, 1, 1) <= value <= date(2100, 12, 31)):
        raise ValueError("must be between 2000-01-01 and 2100-12-31")
    return value


PlanDate = Annotated[date, AfterValidator(_check_date)]


class KpiIn(_In):
    """A measurable target (指标) of a work item."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    unit: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] = ""
    baseline: Finite = 0.0
    target: Finite

    @model_validator(mode="after")
    def _distinct(self) -> KpiIn:
        if self.target == self.baseline:
            raise ValueError("target must differ from baseline")
        return self


class KpiValue(_In):
    kpi: int = Field(ge=1, description="KPI id")
    value: Finite


class _ItemFields(_In):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    deliverable: Text2k = ""
    co_orgs: list[OrgCode] = Field(default_factory=list, max_length=20)
    start_date: PlanDate | None = None
    public: bool = False
    kpis: list[KpiIn] = Field(default_factory=list, max_length=10)

    @field_validator("co_orgs")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("co-units must not repeat")
        return v


class ItemCreate(_ItemFields):
    """A new work item under a task (plan office)."""

    task: int = Field(ge=1, le=46)
    lead_org: OrgCode
    due_date: PlanDate

    @model_validator(mode="after")
    def _dates(self) -> ItemCreate:
        if self.start_date is not None and self.due_date < self.start_date:
            raise ValueError("due_date must not be before start_date")
        if self.lead_org in self.co_orgs:
            raise ValueError("the lead unit cannot also be a co-unit")
        return self


class SubItemCreate(_In):
    """A sub-item the lead unit breaks its item down into (分解)."""

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    deliverable: Text2k = ""
    due_date: PlanDate


class ItemUpdate(_In):
    """Changes to a work item (plan office); `version` is the one the editor saw."""

    version: int = Field(ge=1)
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    deliverable: Text2k | None = None
    co_orgs: list[OrgCode] | None = Field(default=None, max_length=20)
    public: bool | None = None
    kpis: list[KpiIn] | None = Field(default=None, max_length=10)


class VersionIn(_In):
    version: int = Field(ge=1)
    note: Text2k = ""


class ReturnIn(_In):
    version: int = Field(ge=1)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class ReportIn(_In):
    """A progress report (进展报告)."""

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
    kpi_values: list[KpiValue] = Field(default_factory=list, max_length=10)
    public: bool = False


class CompletionIn(ReportIn):
    """A completion report (完成报告); lead unit only."""

    version: int = Field(ge=1)


class ExtensionIn(_In):
    version: int = Field(ge=1)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    new_due_date: PlanDate


class DecisionIn(_In):
    note: Text2k = ""


class KpiPublic(BaseModel):
    id: int
    name: str
    unit: str
    baseline: float
    target: float
    current: float | None
    progress: float | None


class AttachmentPublic(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str


class ReportPublic(BaseModel):
    id: int
    kind: str
    org: str
    author: str
    text: str
    kpi_values: list[dict[str, Any]]
    public: bool
    created_at: datetime
    attachments: list[AttachmentPublic]


class ExtensionPublic(BaseModel):
    id: int
    status: str
    reason: str
    old_due_date: date
    new_due_date: date
    requested_by: str
    org: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None


class EventPublic(BaseModel):
    at: datetime
    actor: str
    org: str | None
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None


class ItemSummary(BaseModel):
    id: int
    code: str
    task: int
    area: int
    parent_id: int | None
    title: str
    lead_org: str
    co_orgs: list[str]
    start_date: date | None
    due_date: date
    original_due_date: date
    status: str
    light: str
    workdays_left: int | None
    public: bool
    version: int
    completed_on: date | None


class ItemPublic(ItemSummary):
    deliverable: str
    kpis: list[KpiPublic]
    reports: list[ReportPublic]
    extensions: list[ExtensionPublic]
    timeline: list[EventPublic]
    can: list[str]


class ImportResult(BaseModel):
    created: int
    codes: list[str]


class ReminderRunPublic(BaseModel):
    ran: bool
    due_soon: int
    overdue: int
    inbox: int
    mails: int
