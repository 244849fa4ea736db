"""Core portal pages: home, organisations, the language switch; includes the account and admin pages."""

from __future__ import annotations

from collections import defaultdict
from types import ModuleType
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cityplus.api.deps import Ctx, DbSession
from cityplus.core.context import AppContext
from cityplus.core.identity import service as identity
from cityplus.core.identity.models import Organisation
from cityplus.core.modules import Module, ModuleRegistry, NavLink
from cityplus.web import account, admin, labels
from cityplus.web.i18n import LOCALE_COOKIE, normalize
from cityplus.web.render import PublicPage, render, safe_next, set_cookie

LOCALE_COOKIE_SECONDS = 365 * 24 * 3600


def plan_service(ctx: AppContext) -> ModuleType | None:
    """The plan module's public service when that module is installed (the core must run without it)."""
    if not any(m.name == "plan" for m in ctx.registry):
        return None
    from cityplus.modules.plan import service

    return service


def services_by_area(registry: ModuleRegistry) -> dict[int, list[tuple[NavLink, Module]]]:
    """The portal links modules declare, grouped by the plan area they serve."""
    out: dict[int, list[tuple[NavLink, Module]]] = defaultdict(list)
    for m in registry:
        for link in m.nav:
            if link.area is not None:
                out[link.area].append((link, m))
    return dict(out)


def router() -> APIRouter:
    """Every core page (the modules add theirs through their manifests' page_routers)."""
    r = APIRouter(include_in_schema=False)

    @r.get("/", response_class=HTMLResponse)
    def home(request: Request, _: PublicPage, session: DbSession, ctx: Ctx,
             notice: str | None = None) -> HTMLResponse:
        """The 12 areas of the action plan, each with the services the platform offers under it."""
        plan = plan_service(ctx)
        areas = plan.list_areas(session) if plan is not None else []
        services = services_by_area(ctx.registry)
        unplaced = [pair for n, pairs in sorted(services.items()) if n not in {a.number for a in areas}
                    for pair in pairs]
        return render(request, "home.html", {
            "areas": areas, "services": services, "unplaced": unplaced, "orgs": identity.organisation_by_name(session),
            "notice": labels.notice(notice)})

    @r.post("/locale")
    def switch_locale(request: Request, principal: PublicPage, session: DbSession,
                      locale: Annotated[str, Form()] = "",
                      next_: Annotated[str, Form(alias="next")] = "/") -> Response:
        """Keep the chosen language on the user (when signed in) and in a cookie, then go back."""
        target = safe_next(next_)
        chosen = normalize(locale)
        response = RedirectResponse(target, status_code=303)
        if chosen is None:
            return response
        if principal is not None and principal.via == "session":
            identity.set_locale(session, principal.actor, principal.user, chosen)
        # The cookie also keeps the choice after signing out.
        set_cookie(request, response, LOCALE_COOKIE, chosen, max_age=LOCALE_COOKIE_SECONDS)
        return response

    @r.get("/orgs", response_class=HTMLResponse)
    def organisations(request: Request, _: PublicPage, session: DbSession) -> HTMLResponse:
        """The city's organisations grouped by kind: commissions, bureaus, …, districts, zones."""
        groups: dict[str, list[Organisation]] = {k: [] for k in labels.KIND_NAMES}
        for o in identity.list_organisations(session):
            groups.setdefault(o.kind, []).append(o)
        return render(request, "orgs.html", {"groups": [(k, v) for k, v in groups.items() if v]})

    @r.get("/orgs/{code}", response_class=HTMLResponse)
    def organisation(code: str, request: Request, _: PublicPage, session: DbSession, ctx: Ctx) -> HTMLResponse:
        """One department or district: its names and what it is responsible for in the action plan."""
        org = identity.get_organisation(session, code)
        parent = identity.get_organisation(session, org.parent_code) if org.parent_code else None
        plan = plan_service(ctx)
        role = plan.org_role(session, code) if plan is not None else None
        return render(request, "org.html", {"org": org, "parent": parent, "role": role,
                                            "orgs": identity.organisation_by_name(session)})

    r.include_router(account.router())
    r.include_router(admin.router())
    return r
