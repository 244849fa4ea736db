"""City context broker (城市上下文中枢): an ETSI NGSI-LD API over the city's live entities (plan tasks 6, 10, 27,
31, 36–39)."""

from __future__ import annotations

from pathlib import Path

from cityplus.core.modules import ROLES, Module, NavLink, Scope

_HERE = Path(__file__).parent


def _entities():  # type: ignore[no-untyped-def]
    from cityplus.modules.context.api import router

    return router()


def _batch():  # type: ignore[no-untyped-def]
    from cityplus.modules.context.api_batch import router

    return router()


def _discovery():  # type: ignore[no-untyped-def]
    from cityplus.modules.context.api_discovery import router

    return router()


def _contexts():  # type: ignore[no-untyped-def]
    from cityplus.modules.context.api_contexts import router

    return router()


async def _start(ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.context.runtime import start

    await start(ctx)


async def _stop(ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.context.runtime import stop

    await stop(ctx)


def _subscriptions():  # type: ignore[no-untyped-def]
    from cityplus.modules.context.api_subscriptions import router

    return router()


def _temporal():  # type: ignore[no-untyped-def]
    from cityplus.modules.context.api_temporal import router

    return router()


def _usage(session):  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from cityplus.modules.context.models import ContextEntity

    return {"entities": session.scalar(select(func.count()).select_from(ContextEntity)) or 0}


MODULE = Module(
    name="context",
    title={"zh": "城市上下文中枢", "en": "City context broker"},
    plan_tasks=(6, 10, 27, 31, 36, 37, 38, 39),
    scopes=(
        Scope("context.read", {"zh": "读取城市实时实体（NGSI-LD）", "en": "Read the city's live entities (NGSI-LD)"},
              ROLES),
        Scope("context.write", {"zh": "写入城市实时实体（NGSI-LD）", "en": "Write the city's live entities (NGSI-LD)"},
              ("department_staff", "department_admin", "platform_admin")),
    ),
    standard_routers=(_entities, _batch, _discovery, _contexts, _subscriptions, _temporal),
    migrations_dir=_HERE / "migrations",
    models="cityplus.modules.context.models",
    start=_start,
    stop=_stop,
    usage=_usage,
    nav=(NavLink("/docs#/ngsi-ld", {"zh": "城市上下文接口（NGSI-LD）", "en": "Context broker API (NGSI-LD)"},
                 area=12),),
)
