"""Open data portal (政府数据开放平台): catalogue, DataStore, Chinese full-text search, CKAN-compatible Action API and
DCAT-AP 3 export (plan tasks 21, 23, 40)."""

from __future__ import annotations

from pathlib import Path

from cityplus.core.modules import Module, NavLink, Scope

_HERE = Path(__file__).parent


def _ckan():  # type: ignore[no-untyped-def]
    from cityplus.modules.opendata.ckan import router

    return router()


def _dcat():  # type: ignore[no-untyped-def]
    from cityplus.modules.opendata.api_dcat import router

    return router()


def _pages():  # type: ignore[no-untyped-def]
    from cityplus.modules.opendata.pages import router

    return router()


def _demo(session, ctx):  # type: ignore[no-untyped-def]
    from cityplus.modules.opendata.demo import load

    load(session, ctx)


def _usage(session):  # type: ignore[no-untyped-def]
    from cityplus.modules.opendata.service import usage

    return usage(session)


MODULE = Module(
    name="opendata",
    title={"zh": "政府数据开放", "en": "Open data portal"},
    plan_tasks=(21, 23, 40),
    scopes=(
        # Reading open data needs no scope (public routes); publishing is for the publisher department's staff,
        # and the service checks that the dataset belongs to the caller's organisation.
        Scope("opendata.publish",
              {"zh": "发布和维护本部门的开放数据集", "en": "Publish and maintain own department's datasets"},
              ("department_staff", "department_admin")),
    ),
    standard_routers=(_ckan, _dcat),
    page_routers=(_pages,),
    templates_dir=_HERE / "templates",
    migrations_dir=_HERE / "migrations",
    models="cityplus.modules.opendata.models",
    demo_loader=_demo,
    events="cityplus.modules.opendata.events",
    usage=_usage,
    nav=(NavLink("/opendata", {"zh": "开放数据", "en": "Open data"}, area=6),),
)
