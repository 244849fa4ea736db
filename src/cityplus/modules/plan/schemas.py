"""Response models of the plan API."""

from __future__ import annotations

from pydantic import BaseModel

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
