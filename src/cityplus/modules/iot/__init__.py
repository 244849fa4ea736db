"""Device gateway (物联网设备接入网关): FIWARE IoT Agent compatible provisioning and MQTT/HTTP ingestion into the
context broker (plan tasks 6, 10, 27, 31, 35, 36, 39)."""

from __future__ import annotations

from pathlib import Path

from cityplus.core.modules import Module, NavLink, Scope

_HERE = Path(__file__).parent


def _router():  # type: ignore[no-untyped-def]
    from cityplus.modules.iot.api import router

    return router()


def _southbound():  # type: ignore[no-untyped-def]
    from cityplus.modules.iot.api_south import router

    return router()


def _pages():  # type: ignore[no-untyped-def]
    from cityplus.modules.iot.pages import router

    return router()


def _cli():  # type: ignore[no-untyped-def]
    from cityplus.modules.iot.cli import make_cli

    return make_cli()


async def _start(ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.iot.runtime import start

    await start(ctx)


async def _stop(ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.iot.runtime import stop

    await stop(ctx)


def _usage(session):  # type: ignore[no-untyped-def]
    from cityplus.modules.iot.service import usage

    return usage(session)


_STAFF = ("department_staff", "department_admin", "platform_admin")

MODULE = Module(
    name="iot",
    title={"zh": "物联网设备接入网关", "en": "Device gateway"},
    plan_tasks=(6, 10, 27, 31, 35, 36, 39),
    scopes=(
        # Not for third-party developers: service groups show apikeys, with which anyone could send measurements.
        Scope("iot.read", {"zh": "查看设备、设备组、健康状况与死信",
                           "en": "Read devices, service groups, health and dead letters"}, _STAFF),
        Scope("iot.manage", {"zh": "登记和维护设备与设备组", "en": "Provision and maintain devices and service groups"},
              _STAFF),
    ),
    standard_routers=(_router, _southbound),
    page_routers=(_pages,),
    templates_dir=_HERE / "templates",
    migrations_dir=_HERE / "migrations",
    models="cityplus.modules.iot.models",
    events="cityplus.modules.iot.events",
    cli=_cli,
    start=_start,
    stop=_stop,
    usage=_usage,
    depends_on=("context",),
    nav=(NavLink("/docs#/iot", {"zh": "设备接入接口（IoT Agent）", "en": "Device gateway API (IoT Agent)"}, area=12),
         NavLink("/gateway", {"zh": "设备与地图（运维人员）", "en": "Devices and map (operators)"}, area=12)),
)
