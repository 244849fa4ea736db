"""Scopes owned by the core (modules declare their own in their manifests)."""

from __future__ import annotations

from cityplus.core.modules import ROLES, Scope

CORE_SCOPES: tuple[Scope, ...] = (
    Scope("account", {"zh": "查看和管理本人账户与令牌", "en": "View and manage your own account and tokens"},
          ROLES),
    Scope("users.read", {"zh": "查看用户", "en": "View users"}, ("platform_admin", "department_admin")),
    Scope("users.manage", {"zh": "管理用户", "en": "Manage users"}, ("platform_admin",)),
    Scope("audit.read", {"zh": "查看审计日志", "en": "Read the audit log"}, ("platform_admin",)),
    Scope("events.read", {"zh": "查看事件日志", "en": "Read the event journal"}, ("platform_admin",)),
)
