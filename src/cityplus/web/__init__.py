"""The web portal (门户网站): server-rendered pages, one layout, per-module templates, zh-CN / en.

Front-end libraries are not copied into this repository and the portal has no build step. htmx is pinned in
the repository's package.json / package-lock.json; after ``npm ci`` its ``node_modules/htmx.org/dist/
htmx.min.js`` is served at ``/static/vendor/htmx.min.js`` (looked up in $CITYPLUS_NODE_MODULES, then the
repository root, then the working directory). Without it — e.g. after a plain ``pip install`` — the pages
work exactly the same: htmx is progressive enhancement only. Every link is a real link and every form a real
form POST answered with a 303 redirect; htmx merely swaps parts of a page (filters, chain verification,
token revocation) without reloading it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.routing import Route

from cityplus.api.routes import include
from cityplus.core.context import AppContext
from cityplus.web import i18n, labels

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
HTMX_URL = "/static/vendor/htmx.min.js"
CHART_URL = "/static/vendor/chart.umd.min.js"


def node_modules_dirs() -> list[Path]:
    """Where `npm ci` may have put the front-end libraries, in the order they are looked up."""
    dirs = []
    if os.environ.get("CITYPLUS_NODE_MODULES"):
        dirs.append(Path(os.environ["CITYPLUS_NODE_MODULES"]))
    dirs.append(HERE.parents[2] / "node_modules")  # src/cityplus/web -> repository root
    dirs.append(Path.cwd() / "node_modules")
    return dirs


def find_vendor(package: str, file: str) -> tuple[Path, str] | None:
    """An installed npm package's file and the package's version, or None when `npm ci` has not been run."""
    for base in node_modules_dirs():
        path = base / package / file
        if path.is_file():
            try:
                version = json.loads((base / package / "package.json").read_text("utf-8"))["version"]
            except (OSError, ValueError, KeyError):
                version = "0"
            return path, str(version)
    return None


def find_htmx() -> tuple[Path, str] | None:
    """The installed htmx file and its version, or None when `npm ci` has not been run."""
    return find_vendor("htmx.org", "dist/htmx.min.js")


def find_chart() -> tuple[Path, str] | None:
    """The installed Chart.js (UMD build, for the dashboards) and its version."""
    return find_vendor("chart.js", "dist/chart.umd.min.js")


# The pinned front-end files, served at /static/vendor/<name> when installed: name → (npm package, file, type).
# Pages that use one check `htmx_src`, `chart_src` or `vendor_src` and work without it (progressive enhancement).
VENDOR_FILES = {
    "htmx.min.js": ("htmx.org", "dist/htmx.min.js", "text/javascript"),
    "chart.umd.min.js": ("chart.js", "dist/chart.umd.min.js", "text/javascript"),
    "leaflet.js": ("leaflet", "dist/leaflet.js", "text/javascript"),
    "leaflet.css": ("leaflet", "dist/leaflet.css", "text/css"),
}


def _vendor_route(path: Path, media_type: str) -> Any:
    async def serve(request: Request) -> FileResponse:
        """A pinned front-end file from node_modules."""
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=604800"})

    return serve


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def build_environment(ctx: AppContext, htmx_src: str | None, chart_src: str | None = None,
                      vendor_src: dict[str, str] | None = None) -> Environment:
    """One Jinja environment over the portal's templates and every module's templates_dir."""
    loaders = [FileSystemLoader(TEMPLATES_DIR), *(FileSystemLoader(d) for d in ctx.registry.template_dirs())]
    env = Environment(loader=ChoiceLoader(loaders), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    i18n.install(env)
    versions = {p.name: _fingerprint(p) for p in STATIC_DIR.iterdir() if p.is_file()}

    def static(name: str) -> str:
        """URL of a portal asset with a content fingerprint, so browsers may cache it for long."""
        return f"/static/{name}?v={versions.get(name, '0')}"

    env.globals.update(
        static=static,
        htmx_src=htmx_src,
        chart_src=chart_src,
        vendor_src=vendor_src or {},
        registry=ctx.registry,
        has_plan=any(m.name == "plan" for m in ctx.registry),
        main_nav=[m.nav[0] for m in ctx.registry if m.nav],
        locales=i18n.LOCALES,
        language_names=i18n.LANGUAGE_NAMES,
        html_langs=i18n.HTML_LANG,
        role_names=labels.ROLE_NAMES,
        kind_names=labels.KIND_NAMES,
        kind_singular=labels.KIND_SINGULAR,
    )
    return env


def install(app: FastAPI, ctx: AppContext) -> None:
    """Add the portal to the app: static files, htmx, templates, core and module pages, HTML errors."""
    from cityplus.web import pages
    from cityplus.web.render import render_error

    # Plain Starlette routes (not API routes), registered before the /static mount so they win.
    vendor_src = {}
    for name, (package, file, media_type) in VENDOR_FILES.items():
        vendored = find_vendor(package, file)
        if vendored is not None:
            url = f"/static/vendor/{name}"
            app.router.routes.append(Route(url, _vendor_route(vendored[0], media_type), methods=["GET", "HEAD"],
                                           include_in_schema=False))
            vendor_src[name] = f"{url}?v={vendored[1]}"
    htmx_src = vendor_src.get(HTMX_URL.rsplit("/", 1)[1])
    chart_src = vendor_src.get(CHART_URL.rsplit("/", 1)[1])  # dashboards and station charts; tables without it
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    app.state.templates = build_environment(ctx, htmx_src, chart_src, vendor_src)
    app.state.html_error = render_error
    include(app, pages.router())
    for m in ctx.registry:
        for make in m.page_routers:
            include(app, make())
