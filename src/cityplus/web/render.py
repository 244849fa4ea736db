"""Page rendering: the viewer, access dependencies for pages, CSRF tokens, redirects and error pages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment

from cityplus.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    DbSession,
    Principal,
    PublicAccess,
    RequireScope,
    check_csrf,
    principal_of,
)
from cityplus.core.context import AppContext
from cityplus.core.identity import service as identity
from cityplus.web.i18n import HTML_LANG, LOCALE_COOKIE, N_, resolve_locale

# Sent with every portal page. No inline script or style anywhere, so the policy can stay strict; htmx is
# configured (meta htmx-config) not to inject its indicator <style>.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class Msg:
    """A UI message (English msgid marked with N_) and its %-format arguments; translated in the template."""

    text: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page, as plain data (it outlives the request's database transaction)."""

    locale: str
    user_id: int | None = None
    username: str = ""
    display_name: str = ""
    role: str = ""
    org_code: str | None = None
    scopes: frozenset[str] = frozenset()
    via: str = ""
    session_csrf: str = ""

    @property
    def signed_in(self) -> bool:
        """Whether someone is signed in."""
        return self.user_id is not None

    def has(self, scope: str) -> bool:
        """Whether the viewer holds `scope` (for showing links; routes check access themselves)."""
        return scope in self.scopes


def viewer_of(request: Request, principal: Principal | None) -> Viewer:
    """Snapshot the principal and the language it reads in."""
    ctx: AppContext = request.app.state.ctx
    cookie = request.cookies.get(LOCALE_COOKIE)
    if principal is None:
        return Viewer(locale=resolve_locale(None, cookie, ctx.settings.default_locale))
    u = principal.user
    ws = principal.web_session
    return Viewer(locale=resolve_locale(u.locale, cookie, ctx.settings.default_locale), user_id=u.id,
                  username=u.username, display_name=u.display_name or u.username, role=u.role,
                  org_code=u.org.code if u.org else None, scopes=principal.scopes, via=principal.via,
                  session_csrf=ws.csrf_token if ws is not None else "")


def remember_viewer(request: Request, principal: Principal | None) -> Viewer:
    """Snapshot the viewer onto the request, for the page and for an error page after a rollback."""
    viewer = viewer_of(request, principal)
    request.state.viewer = viewer
    return viewer


class PageScope(RequireScope):
    """RequireScope for pages: remembers the viewer first, so a 403 page still speaks their language."""

    async def __call__(self, request: Request, session: DbSession) -> Principal:
        remember_viewer(request, await principal_of(request, session))
        return await super().__call__(request, session)

    def __repr__(self) -> str:
        return f"PageScope({self.scope!r})"


class PagePublic(PublicAccess):
    """A deliberately public page; resolves and remembers the viewer, checks CSRF on form posts."""

    async def __call__(self, request: Request, session: DbSession) -> Principal | None:
        principal = await principal_of(request, session)
        remember_viewer(request, principal)
        await check_csrf(request, principal)
        return principal


PAGE_PUBLIC = PagePublic()
PublicPage = Annotated[Principal | None, Depends(PAGE_PUBLIC)]


def PageScoped(scope: str) -> Any:  # noqa: N802 - reads like a type in signatures
    """Annotated principal for a page that needs `scope`: `principal: PageScoped("account")`."""
    return Annotated[Principal, Depends(PageScope(scope))]


def is_secure(request: Request) -> bool:
    """Whether cookies must be Secure (the portal's base URL is https)."""
    ctx: AppContext = request.app.state.ctx
    return ctx.settings.base_url.startswith("https://")


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to; anything that could leave the site (//host, scheme:, \\) is refused."""
    if not value or len(value) > 2000:
        return default
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def redirect(path: str, **query: Any) -> RedirectResponse:
    """303 See Other after a form post (Post/Redirect/Get)."""
    q = {k: v for k, v in query.items() if v is not None}
    return RedirectResponse(path + ("?" + urlencode(q) if q else ""), status_code=303)


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None,
               httponly: bool = True) -> None:
    """Set a portal cookie: path /, SameSite=Lax, HttpOnly by default, Secure behind https."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=httponly, samesite="lax",
                        secure=is_secure(request))


def _templates(request: Request) -> Environment:
    env: Environment = request.app.state.templates
    return env


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200,
           headers: dict[str, str] | None = None, viewer: Viewer | None = None) -> HTMLResponse:
    """Render a page in the viewer's language, with the CSRF token its forms post back."""
    viewer = viewer or getattr(request.state, "viewer", None) or viewer_of(request, None)
    new_csrf = None
    if viewer.session_csrf:
        csrf = viewer.session_csrf
    else:
        # Anonymous forms (sign-in, language) use the double-submit cookie; issue it on first sight.
        csrf = request.cookies.get(CSRF_COOKIE) or ""
        if not csrf:
            csrf = new_csrf = secrets.token_urlsafe(32)
    query = request.url.query
    here = request.url.path + ("?" + query if query else "")
    if request.method not in ("GET", "HEAD"):
        # A page answering a form post: "back here" means the page the form was on, not the POST target.
        here = safe_next(urlsplit(request.headers.get("referer", "")).path or "/")
    values: dict[str, Any] = {
        "request": request,
        "viewer": viewer,
        "locale": viewer.locale,
        "html_lang": HTML_LANG[viewer.locale],
        "csrf_token": csrf,
        "current_path": request.url.path,
        "current_url": here,
        "notice": None,
        **(context or {}),
    }
    body = _templates(request).get_template(template).render(values)
    response = HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
    response.headers.setdefault("Cache-Control", "no-store" if viewer.signed_in else "no-cache")
    response.headers["Vary"] = "Cookie"
    if new_csrf:
        set_cookie(request, response, CSRF_COOKIE, new_csrf, max_age=None)
    return response


# --- error pages (app.state.html_error) --------------------------------------------------------

ERROR_TEXT = {
    400: (N_("Bad request"), N_("The request could not be understood. Check what you entered and try again.")),
    403: (N_("Access denied"), N_("Your account does not have permission to see this page or do this.")),
    404: (N_("Page not found"), N_("The page you asked for does not exist. Check the address or use the links "
                                   "above.")),
    405: (N_("Not allowed"), N_("This page cannot be used that way.")),
    409: (N_("Conflict"), N_("This clashes with something that already exists.")),
    413: (N_("Too large"), N_("What you sent is larger than the platform accepts.")),
    422: (N_("Check your entry"), N_("Some of what you entered is not valid.")),
    429: (N_("Too many attempts"), N_("Please wait a moment before trying again.")),
}
CSRF_TEXT = (N_("Form expired"), N_("The form has expired or was sent from another site. Go back, reload the "
                                    "page and try again."))
GENERIC_TEXT = (N_("Something went wrong"), N_("The platform could not complete your request."))


def _fresh_viewer(request: Request) -> Viewer:
    """The viewer for errors raised before any page dependency ran (e.g. an unknown path)."""
    ctx: AppContext = request.app.state.ctx
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return viewer_of(request, None)
    try:
        with ctx.db.sessionmaker() as session:
            found = identity.resolve_session(session, raw)
            if found is None:
                return viewer_of(request, None)
            user, ws = found
            principal = Principal(user=user, scopes=identity.role_scopes(user, ctx.registry.all_scopes()),
                                  via="session", web_session=ws)
            return viewer_of(request, principal)
    except Exception:  # an error page must render even when the database is the problem
        return viewer_of(request, None)


def login_redirect(request: Request) -> RedirectResponse:
    """Send an anonymous visitor to sign in, then back to the page they wanted (GET only)."""
    if request.method == "GET":
        target = safe_next(request.url.path + ("?" + request.url.query if request.url.query else ""))
    else:
        referer = request.headers.get("referer", "")
        target = safe_next(urlsplit(referer).path) if referer else "/"
    return RedirectResponse("/login?next=" + quote(target, safe="/"), status_code=303)


def render_error(request: Request, status: int, title: str, detail: str, headers: dict[str, str]) -> Response:
    """HTML error page in the viewer's language (401 redirects to sign-in); the status is preserved."""
    if status == 401:
        return login_redirect(request)
    viewer = getattr(request.state, "viewer", None) or _fresh_viewer(request)
    heading, explanation = ERROR_TEXT.get(status, GENERIC_TEXT)
    if status == 403 and "CSRF" in detail:
        heading, explanation = CSRF_TEXT
    kept = {k: v for k, v in headers.items() if k.lower() != "www-authenticate"}
    return render(request, "errors.html", {"status": status, "heading": heading, "explanation": explanation,
                                           "detail": detail}, status=status, headers=kept, viewer=viewer)
