"""Validated input of the catalogue (the service's contract; the CKAN API maps its dicts onto these)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from cityplus.modules.opendata.vocab import FREQUENCIES, LICENCES, THEMES

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,99}$",
                            description="URL name: 2–100 lowercase letters, digits, - and _")]
Keyword = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[^\x00-\x1f<>]+$")]


class DatasetFields(BaseModel):
    """Metadata of a dataset; on update, only the fields given are changed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name | None = None
    title_zh: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    title_en: Annotated[str, Field(max_length=300)] | None = None
    description_zh: Annotated[str, Field(max_length=20_000)] | None = None
    description_en: Annotated[str, Field(max_length=20_000)] | None = None
    org_code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,31}$")] | None = None
    themes: Annotated[list[str], Field(max_length=20)] | None = None
    keywords: Annotated[list[Keyword], Field(max_length=30)] | None = None
    licence: str | None = None
    frequency: str | None = None
    spatial: Annotated[str, Field(max_length=200)] | None = None
    temporal_start: date | None = None
    temporal_end: date | None = None
    contact_name: Annotated[str, Field(max_length=100)] | None = None
    contact_email: EmailStr | Literal[""] | None = None
    opening: Literal["open", "conditional", "closed"] | None = None
    sharing: Literal["share", "conditional", "none"] | None = None
    grade: Annotated[int, Field(ge=1, le=4)] | None = None

    @field_validator("themes")
    @classmethod
    def _themes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            unknown = [t for t in v if t not in THEMES]
            if unknown:
                raise ValueError(f"unknown themes {unknown}; use area-1 … area-12 or an EU theme code (ENVI, TRAN, …)")
            v = list(dict.fromkeys(v))
        return v

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(v)) if v is not None else None

    @field_validator("licence")
    @classmethod
    def _licence(cls, v: str | None) -> str | None:
        if v and v not in LICENCES:
            raise ValueError(f"unknown licence; one of {', '.join(LICENCES)}")
        return v

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, v: str | None) -> str | None:
        if v and v not in FREQUENCIES:
            raise ValueError(f"unknown frequency; one of {', '.join(FREQUENCIES)}")
        return v

    @model_validator(mode="after")
    def _period(self) -> DatasetFields:
        if self.temporal_start and self.temporal_end and self.temporal_start > self.temporal_end:
            raise ValueError("temporal_start is after temporal_end")
        return self


REQUIRED_ON_CREATE = ("name", "title_zh", "org_code", "opening", "sharing")


class ResourceFields(BaseModel):
    """Metadata of a resource; files come with their bytes separately."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None
    kind: Literal["file", "link", "api", "documentation"] | None = None
    format: Annotated[str, Field(pattern=r"^[A-Za-z0-9.+-]{1,16}$")] | None = None
    url: Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s<>\"]+$")] | Literal[""] | None = None


FieldType = Literal["text", "int", "numeric", "bool", "date", "timestamp"]


class DatastoreField(BaseModel):
    """A DataStore column as the publisher declares or corrects it."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\"]+$")]
    type: FieldType | None = None
    label: Annotated[str, Field(max_length=200)] | None = None
