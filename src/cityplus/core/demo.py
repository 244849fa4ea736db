"""The demo city: organisations, demo accounts, then every module's demo data (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from cityplus.core.audit import Actor
from cityplus.core.context import AppContext
from cityplus.core.identity import service as identity


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    role: str
    org: str | None
    display_name: str


DEMO_PASSWORD = "cityplus-demo"  # demo city only; documented, never used outside `cityplus demo load`

DEMO_ACCOUNTS = (
    DemoAccount("admin", DEMO_PASSWORD, "platform_admin", None, "平台管理员"),
    DemoAccount("fgw.admin", DEMO_PASSWORD, "department_admin", "fgw", "市发改委管理员"),
    DemoAccount("fgw.staff", DEMO_PASSWORD, "department_staff", "fgw", "市发改委工作人员"),
    DemoAccount("hbj.staff", DEMO_PASSWORD, "department_staff", "hbj", "市环保局工作人员"),
    DemoAccount("citizen", DEMO_PASSWORD, "citizen", None, "市民张三"),
    DemoAccount("enterprise", DEMO_PASSWORD, "enterprise", None, "成都某科技有限公司"),
    DemoAccount("developer", DEMO_PASSWORD, "developer", None, "第三方开发者"),
)


def load_core(session: Session, actor: Actor) -> list[DemoAccount]:
    """Organisations and demo accounts; returns the accounts created now."""
    identity.load_organisations(session, actor)
    created = []
    for acc in DEMO_ACCOUNTS:
        if identity.get_user_by_name(session, acc.username) is None:
            identity.create_user(session, actor, username=acc.username, password=acc.password, role=acc.role,
                                 org_code=acc.org, display_name=acc.display_name)
            created.append(acc)
    return created


def load(ctx: AppContext, actor: Actor) -> list[DemoAccount]:
    """Load the whole demo city in one transaction per module."""
    with ctx.db.session() as session:
        created = load_core(session, actor)
    for m in ctx.registry:
        if m.demo_loader is not None:
            with ctx.db.session() as session:
                m.demo_loader(session, ctx)
    return created
