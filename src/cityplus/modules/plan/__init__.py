"""The action plan module: 12 areas, 46 tasks, responsible units, coverage by modules, and the supervision
(督查督办) of the plan through dated work items (plan task 42)."""

from __future__ import annotations

from pathlib import Path

from cityplus.core.modules import Module, NavLink, Scope

_HERE = Path(__file__).parent


def _router():  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.api import router

    return router()


def _supervision_router():  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.api_supervision import router

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


async def _start(ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.reminders import start

    await start(ctx)


async def _stop(ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.plan.reminders import stop

    await stop(ctx)


MODULE = Module(
    name="plan",
    title={"zh": "行动计划", "en": "Action plan"},
    plan_tasks=(42,),
    scopes=(
        Scope("plan.read", {"zh": "查看行动计划", "en": "Read the action plan"},
              ("citizen", "enterprise", "department_staff", "department_admin", "platform_admin", "developer")),
        Scope("plan.report", {"zh": "签收并报送工作事项进展", "en": "Acknowledge and report on work items"},
              ("department_staff", "department_admin")),
        # Held by department roles, but work items are managed only by the plan office (the lead unit of task 42);
        # the service checks the organisation (see supervision.py).
        Scope("plan.manage", {"zh": "督查督办与维护行动计划数据", "en": "Supervise work items, maintain the plan data"},
              ("department_staff", "department_admin", "platform_admin")),
    ),
    routers=(_router, _supervision_router),
    page_routers=(_pages,),
    templates_dir=_HERE / "templates",
    migrations_dir=_HERE / "migrations",
    models="cityplus.modules.plan.models",
    cli=_cli,
    demo_loader=_demo,
    nav=(NavLink("/plan", {"zh": "行动计划", "en": "Action plan"}, area=12),
         NavLink("/plan/coverage", {"zh": "平台覆盖", "en": "Platform coverage"}, area=12),
         NavLink("/plan/progress", {"zh": "计划进展公开", "en": "Plan progress"}, area=12),
         NavLink("/plan/items", {"zh": "督查督办", "en": "Supervision"}, area=12)),
    usage=_usage,
    start=_start,
    stop=_stop,
)
