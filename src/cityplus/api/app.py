"""Application factory: builds the ASGI app from settings and the discovered modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from cityplus import __version__
from cityplus.api import admin, identity, ops, problems
from cityplus.api.deps import route_access
from cityplus.api.middleware import Metrics, RequestContextMiddleware
from cityplus.api.routes import include, route_table
from cityplus.core.config import Settings, get_settings
from cityplus.core.context import AppContext
from cityplus.core.db import Database
from cityplus.core.events import CORE_HANDLERS
from cityplus.core.events_bus import create_bus
from cityplus.core.modules import ModuleRegistry

log = structlog.get_logger("cityplus.app")


class RouteDeclarationError(Exception):
    """A route declares neither a scope nor that it is public."""


def build_context(settings: Settings | None = None, registry: ModuleRegistry | None = None,
                  db: Database | None = None) -> AppContext:
    """Settings, database, modules and event bus of one application instance."""
    settings = settings or get_settings()
    settings.ensure_secret_key()
    db = db or Database(settings.database_url)
    registry = registry or ModuleRegistry.discover()
    registry.load_event_types()
    return AppContext(settings=settings, db=db, registry=registry, bus=create_bus(settings, db))


def create_app(settings: Settings | None = None, *, ctx: AppContext | None = None) -> FastAPI:
    """Create the CityPlus application (API, portal, operations endpoints)."""
    ctx = ctx or build_context(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handlers = [*CORE_HANDLERS, *(h for m in ctx.registry for h in m.event_handlers)]
        await ctx.bus.start(handlers)
        started = []
        try:
            for m in ctx.registry:
                if m.start is not None:
                    await m.start(ctx)
                started.append(m)
            log.info("app_started", modules=[m.name for m in ctx.registry], bus=ctx.bus.health()[1])
            yield
        finally:
            for m in reversed(started):
                if m.stop is not None:
                    try:
                        await m.stop(ctx)
                    except Exception as exc:  # one module's failure must not keep the others running
                        log.error("module_stop_failed", module=m.name, exc_info=exc)
            await ctx.bus.stop()
            log.info("app_stopped")

    app = FastAPI(
        title="CityPlus",
        version=__version__,
        description="Open \"Internet+\" city platform: departments, the action plan and city services.",
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,
    )
    metrics = Metrics(ctx.metrics)
    app.state.ctx = ctx
    app.state.metrics = metrics
    problems.install(app)

    include(app, ops.router)
    include(app, identity.router)
    include(app, admin.router)
    for m in ctx.registry:
        for make in m.routers:
            include(app, make(), prefix="/api/v1")
        for make in m.standard_routers:
            include(app, make())

    from cityplus import web

    web.install(app, ctx)

    check_routes(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=ctx.settings.max_body_bytes, metrics=metrics)
    return app


def check_routes(app: FastAPI) -> None:
    """Refuse to start when a route does not declare its access or operation ids collide."""
    seen: dict[str, str] = {}
    for entry in route_table(app):
        route = entry.route
        if route_access(route) is None:
            raise RouteDeclarationError(f"{entry.path} declares neither a scope nor PUBLIC")
        op = route.operation_id or route.name
        if route.include_in_schema and op in seen and seen[op] != entry.path:
            raise RouteDeclarationError(f"operation id {op} used by {seen[op]} and {entry.path}")
        seen[op] = entry.path
