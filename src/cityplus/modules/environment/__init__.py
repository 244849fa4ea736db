"""Environment public service (环境与气象公共服务): AQI per HJ 633—2026 / —2012, the air-quality monitoring network as
NGSI-LD entities, city and district indexes (plan tasks 39, 40)."""

from __future__ import annotations

from pathlib import Path

from cityplus.core.modules import Module, NavLink, Scope

_HERE = Path(__file__).parent


def _router():  # type: ignore[no-untyped-def]
    from cityplus.modules.environment.api import router

    return router()


def _pages():  # type: ignore[no-untyped-def]
    from cityplus.modules.environment.pages import router

    return router()


def _cli():  # type: ignore[no-untyped-def]
    from cityplus.modules.environment.cli import make_cli

    return make_cli()


async def _start(ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.environment.runtime import start

    await start(ctx)


async def _stop(ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.environment.runtime import stop

    await stop(ctx)


def _demo(session, ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.environment.demo import load

    load(session, ctx)


MODULE = Module(
    name="environment",
    title={"zh": "环境与气象公共服务", "en": "Environment and weather"},
    plan_tasks=(39, 40),
    scopes=(
        Scope("environment.manage", {"zh": "重算并写回监测网络的空气质量指数",
                                     "en": "Recompute the monitoring network's AQI and write it back"},
              ("department_staff", "department_admin", "platform_admin")),
        Scope("environment.warn", {"zh": "发布和解除气象灾害预警信号", "en": "Issue and lift weather warning signals"},
              ("department_staff", "department_admin", "platform_admin")),
    ),
    routers=(_router,),
    page_routers=(_pages,),
    templates_dir=_HERE / "templates",
    events="cityplus.modules.environment.events",
    cli=_cli,
    demo_loader=_demo,
    start=_start,
    stop=_stop,
    depends_on=("context",),
    nav=(NavLink("/environment/aqi", {"zh": "空气质量指数计算器", "en": "AQI calculator"}, area=11),
         NavLink("/environment/air", {"zh": "实时空气质量", "en": "Air quality now"}, area=11)),
)
