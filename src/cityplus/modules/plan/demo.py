"""Demo data of the plan module: the plan itself."""

from __future__ import annotations

from sqlalchemy.orm import Session

from cityplus.core.audit import Actor
from cityplus.core.context import AppContext
from cityplus.modules.plan import service


def load(session: Session, ctx: AppContext) -> None:
    service.load_plan(session, Actor.system("demo"))
