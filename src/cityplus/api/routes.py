"""Router inclusion that keeps a flat table of every API route with its full path.

FastAPI ≥ 0.13x keeps included routers as lazy wrappers, so `app.routes` no longer lists the routes. The
platform needs the flat list (start-up access check, authorisation matrix), so every router is included here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute


@dataclass(frozen=True)
class RouteEntry:
    path: str
    methods: frozenset[str]
    route: APIRoute


def include(app: FastAPI, router: APIRouter, prefix: str = "") -> None:
    """Include a router and record its routes under their full paths."""
    table: list[RouteEntry] = app.state.__dict__.setdefault("_state", {}).setdefault("route_table", [])
    _collect(router, prefix, table)
    app.include_router(router, prefix=prefix)


def _collect(router: APIRouter, prefix: str, table: list[RouteEntry]) -> None:
    for route in router.routes:
        if isinstance(route, APIRoute):
            table.append(RouteEntry(prefix + route.path, frozenset(route.methods or ()), route))
            continue
        inner = getattr(route, "original_router", None)  # a nested include (FastAPI's lazy wrapper)
        if isinstance(inner, APIRouter):
            sub = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            _collect(inner, prefix + sub, table)


def route_table(app: FastAPI) -> list[RouteEntry]:
    """Every route included through `include`, in order."""
    for route in app.router.routes:  # routes added directly on the app (not through include)
        if isinstance(route, APIRoute):
            raise RuntimeError(f"{route.path} was added directly to the app; include it through api.routes")
    return list(app.state._state.get("route_table", []))
