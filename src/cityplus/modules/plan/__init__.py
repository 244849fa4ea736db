"""The action plan module: 12 areas, 46 tasks, responsible units, coverage by modules (plan task 42)."""

from __future__ import annotations

from pathlib import Path

from cityplus.core.modules import Module, NavLink, Scope

_HERE = Path(__file__).parent


def _router():  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.api import router

    return router()


def _pages():  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.pages import router

    return router()


def _cli():  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.cli import make_cli

    return make_cli()


def _demo(session, ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.demo import load

    load(session, ctx)


def _usage(session):  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.service import usage

    return usage(session)


MODULE = Module(
    name="plan",
    title={"zh": "行动计划", "en": "Action plan"},
    plan_tasks=(42,),
    scopes=(
        Scope("plan.read", {"zh": "查看行动计划", "en": "Read the action plan"},
              ("citizen", "enterprise", "department_staff", "department_admin", "platform_admin", "developer")),
        Scope("plan.manage", {"zh": "维护行动计划数据", "en": "Maintain the action plan data"}, ("platform_admin",)),
    ),
    routers=(_router,),
    page_routers=(_pages,),
    templates_dir=_HERE / "templates",
    migrations_dir=_HERE / "migrations",
    models="cityplus.modules.plan.models",
    cli=_cli,
    demo_loader=_demo,
    nav=(NavLink("/plan", {"zh": "行动计划", "en": "Action plan"}, area=12),
         NavLink("/plan/coverage", {"zh": "平台覆盖", "en": "Platform coverage"}, area=12)),
    usage=_usage,
)
