"""Request and response models of the core API (strict: unknown fields are rejected)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from cityplus.core.modules import ROLES


def reject_nul(value: Any) -> Any:
    """NUL cannot be stored in a text column (PostgreSQL refuses it); reject it with the field named."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    if isinstance(value, list):
        for item in value:
            reject_nul(item)
    return value


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, never silently dropped; no NUL in any string."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return reject_nul(value)


class PublicModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Localized(BaseModel):
    zh: str
    en: str


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of results with the total count of matches."""

    items: list[T]
    total: int
    limit: int
    offset: int = 0


class OrganisationPublic(PublicModel):
    code: str
    name: Localized
    full_name_zh: str
    kind: str
    parent: str | None


class UserPublic(PublicModel):
    id: int
    username: str
    display_name: str
    email: str | None
    role: str
    org: str | None
    locale: str | None
    is_active: bool
    created_at: datetime


Role = Annotated[str, StringConstraints(pattern="^(" + "|".join(ROLES) + ")$")]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")]
OrgCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,31}$")]


class UserCreate(StrictModel):
    username: Username
    password: Annotated[str, StringConstraints(min_length=8, max_length=256)]
    role: Role
    org: OrgCode | None = None
    display_name: Annotated[str, StringConstraints(max_length=128)] = ""
    email: EmailStr | None = None


class UserUpdate(StrictModel):
    role: Role | None = None
    org: OrgCode | None = None
    clear_org: bool = False
    display_name: Annotated[str, StringConstraints(max_length=128)] | None = None
    email: EmailStr | None = None
    is_active: bool | None = None
    password: Annotated[str, StringConstraints(min_length=8, max_length=256)] | None = None


class MePublic(UserPublic):
    scopes: list[str]
    auth: str = Field(description="how this request was authenticated: session or token")


class TokenCreate(StrictModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    scopes: Annotated[list[Annotated[str, StringConstraints(max_length=64)]], Field(min_length=1, max_length=50)]
    days: Annotated[int, Field(ge=1, le=3650)] | None = 90


class TokenPublic(PublicModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenIssued(TokenPublic):
    token: str = Field(description="the secret; shown only in this response")


class ScopePublic(BaseModel):
    name: str
    description: Localized
    roles: list[str]


class AuditEntryPublic(PublicModel):
    seq: int
    at: datetime
    actor: str
    org: str | None
    action: str
    object_type: str
    object_id: str
    request_id: str | None
    change_digest: str
    prev_hash: str
    entry_hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryPublic]
    total: int
    next_before: int | None


class ModulePublic(BaseModel):
    name: str
    title: Localized
    plan_tasks: list[int]
    scopes: list[str]


class LocaleUpdate(StrictModel):
    locale: Annotated[str, StringConstraints(pattern="^(zh_CN|en)$")]


class InboxMessagePublic(PublicModel):
    """A message in the caller's in-app inbox."""

    id: int
    created_at: datetime
    kind: str
    subject: str
    body: str
    link: str | None
    read_at: datetime | None
