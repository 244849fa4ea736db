"""Account pages: sign in and out, your profile and password, your API tokens."""

from __future__ import annotations

from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from cityplus.api.deps import SESSION_COOKIE, Ctx, DbSession, Principal
from cityplus.core.db import utcnow
from cityplus.core.errors import DomainError
from cityplus.core.identity import service as identity
from cityplus.core.identity.models import User
from cityplus.web import labels
from cityplus.web.i18n import N_
from cityplus.web.render import Msg, PageScoped, PublicPage, is_secure, redirect, render, safe_next, set_cookie

TOKEN_DAYS = (7, 30, 90, 365)  # offered lifetimes; 0 in the form means "no expiry"
DEFAULT_TOKEN_DAYS = 90
EMAIL_MAX = 254
NAME_MAX = 128


def start_browser_session(request: Request, session: Session, user: User, response: Response, hours: int) -> None:
    """Open a web session for `user` and hand its cookie to the browser."""
    raw, _ = identity.start_session(session, user, hours)
    set_cookie(request, response, SESSION_COOKIE, raw, max_age=hours * 3600)


def valid_email(value: str) -> bool:
    """Whether an e-mail address is well-formed, by the same rules as the API's EmailStr (no DNS lookup)."""
    if len(value) > EMAIL_MAX:
        return False
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def router() -> APIRouter:
    """Sign-in, profile and token pages."""
    r = APIRouter(include_in_schema=False)

    # --- sign in / out ----------------------------------------------------------------------

    @r.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, principal: PublicPage, ctx: Ctx,
                   next_: Annotated[str | None, Query(alias="next")] = None) -> Response:
        """The sign-in form (signed-in visitors go straight on)."""
        target = safe_next(next_, "/profile")
        if principal is not None:
            return RedirectResponse(target, status_code=303)
        return render(request, "login.html", {"next": target, "username": "", "error": None,
                                              "max_failures": ctx.settings.login_max_failures})

    @r.post("/login")
    def login(request: Request, principal: PublicPage, session: DbSession, ctx: Ctx,
              username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
              next_: Annotated[str, Form(alias="next")] = "/profile") -> Response:
        """Check the credentials (throttled), open a session and go to `next` (a local path only)."""
        target = safe_next(next_, "/profile")
        username = username.strip()[:64]
        page = {"next": target, "username": username, "max_failures": ctx.settings.login_max_failures}
        if not username or not password:
            return render(request, "login.html", {**page, "error": Msg(N_("Enter your user name and password."))},
                          status=422)
        s = ctx.settings
        client = request.client.host if request.client else None
        try:
            user = identity.login(session, username, password, client, max_failures=s.login_max_failures,
                                  lockout_seconds=s.login_lockout_seconds)
        except identity.Throttled as exc:
            minutes = max(1, (exc.retry_after + 59) // 60)
            msg = Msg(N_("Too many failed sign-ins. Try again in %(minutes)s min."), {"minutes": minutes})
            return render(request, "login.html", {**page, "error": msg}, status=429,
                          headers={"Retry-After": str(exc.retry_after)})
        if user is None:
            msg = Msg(N_("The user name or password is not correct."))
            return render(request, "login.html", {**page, "error": msg}, status=422)
        response = RedirectResponse(target, status_code=303)
        old = request.cookies.get(SESSION_COOKIE)
        if old and principal is not None:
            identity.end_session(session, old, principal.actor)  # a fresh session id: no fixation
        start_browser_session(request, session, user, response, s.session_hours)
        return response

    @r.post("/logout")
    def logout(request: Request, principal: PublicPage, session: DbSession) -> Response:
        """End this browser's session."""
        raw = request.cookies.get(SESSION_COOKIE)
        if raw and principal is not None and principal.via == "session":
            identity.end_session(session, raw, principal.actor)
        response = redirect("/", notice="signed_out")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=is_secure(request), httponly=True, samesite="lax")
        return response

    # --- inbox ----------------------------------------------------------------------------

    @r.get("/inbox", response_class=HTMLResponse)
    def inbox(request: Request, principal: PageScoped("account"), session: DbSession) -> HTMLResponse:
        """Your in-app messages (reminders and notices), newest first."""
        from cityplus.core import notify

        return render(request, "inbox.html", {"messages": notify.inbox(session, principal.user.id, limit=100)})

    @r.post("/inbox/{message_id:int}/read")
    def read_message(message_id: int, principal: PageScoped("account"), session: DbSession) -> Response:
        """Mark a message read and open what it is about."""
        from cityplus.core import notify

        notify.mark_read(session, principal.user.id, message_id)
        target = next((m.link for m in notify.inbox(session, principal.user.id, limit=200) if m.id == message_id),
                      None)
        return redirect(safe_next(target, "/inbox"))

    # --- profile ----------------------------------------------------------------------------

    def profile_page(request: Request, principal: Principal, ctx: Ctx, *, status: int = 200,
                     notice: str | None = None, errors: dict[str, Msg] | None = None,
                     values: dict[str, str] | None = None) -> HTMLResponse:
        """The profile page, optionally with form errors and the values entered."""
        user = principal.user
        scopes = [s for s in ctx.registry.all_scopes() if s.name in principal.scopes]
        form = {"display_name": user.display_name, "email": user.email or "", **(values or {})}
        return render(request, "profile.html", {
            "user": user, "scopes": scopes, "form": form, "errors": errors or {},
            "min_password": identity.MIN_PASSWORD, "notice": labels.notice(notice)}, status=status)

    @r.get("/profile", response_class=HTMLResponse)
    def profile(request: Request, principal: PageScoped("account"), ctx: Ctx,
                notice: str | None = None) -> HTMLResponse:
        """Your account: details, role, organisation, what you may do."""
        return profile_page(request, principal, ctx, notice=notice)

    @r.post("/profile")
    def save_profile(request: Request, principal: PageScoped("account"), session: DbSession, ctx: Ctx,
                     display_name: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "") -> Response:
        """Change your display name and e-mail address."""
        display_name, email = display_name.strip(), email.strip()
        errors: dict[str, Msg] = {}
        if not display_name or len(display_name) > NAME_MAX:
            errors["display_name"] = Msg(N_("Enter a name of 1 to %(max)s characters."), {"max": NAME_MAX})
        if email and not valid_email(email):
            errors["email"] = Msg(N_("Enter an e-mail address like name@example.com."))
        if not email and principal.user.email:
            errors["email"] = Msg(N_("An e-mail address cannot be removed, only changed."))
        if errors:
            return profile_page(request, principal, ctx, status=422, errors=errors,
                                values={"display_name": display_name, "email": email})
        identity.update_user(session, principal.actor, principal.user, display_name=display_name,
                             email=email or None)
        return redirect("/profile", notice="profile_saved")

    @r.post("/profile/password")
    def change_password(request: Request, principal: PageScoped("account"), session: DbSession, ctx: Ctx,
                        current: Annotated[str, Form()] = "", new: Annotated[str, Form()] = "",
                        confirm: Annotated[str, Form()] = "") -> Response:
        """Change your password: the current one is required; other sessions are signed out."""
        errors: dict[str, Msg] = {}
        if not identity.check_password(principal.user, current):
            errors["current"] = Msg(N_("Your current password is not correct."))
        if len(new) < identity.MIN_PASSWORD:
            errors["new"] = Msg(N_("Use at least %(min)s characters."), {"min": identity.MIN_PASSWORD})
        elif new != confirm:
            errors["confirm"] = Msg(N_("The two new passwords do not match."))
        if errors:
            return profile_page(request, principal, ctx, status=422, errors=errors)
        # Changing the password ends every session of the user, this one included: open a new one here.
        identity.update_user(session, principal.actor, principal.user, password=new)
        response = redirect("/profile", notice="password_changed")
        start_browser_session(request, session, principal.user, response, ctx.settings.session_hours)
        return response

    # --- API tokens -------------------------------------------------------------------------

    def tokens_page(request: Request, principal: Principal, session: Session, ctx: Ctx, *, status: int = 200,
                    notice: str | None = None, errors: dict[str, Msg] | None = None,
                    form: dict[str, object] | None = None) -> HTMLResponse:
        """The token list and creation form, optionally with form errors."""
        offered = [s for s in ctx.registry.all_scopes() if s.name in principal.scopes]
        return render(request, "tokens.html", {
            "tokens": identity.list_tokens(session, principal.user), "offered": offered,
            "days_options": TOKEN_DAYS, "errors": errors or {}, "notice": labels.notice(notice),
            "form": form or {"name": "", "scopes": [], "days": DEFAULT_TOKEN_DAYS},
            "now": utcnow()}, status=status)

    @r.get("/tokens", response_class=HTMLResponse)
    def tokens(request: Request, principal: PageScoped("account"), session: DbSession, ctx: Ctx,
               notice: str | None = None) -> HTMLResponse:
        """Your API tokens and the form to create one."""
        return tokens_page(request, principal, session, ctx, notice=notice)

    @r.post("/tokens", response_class=HTMLResponse)
    def create_token(request: Request, principal: PageScoped("account"), session: DbSession, ctx: Ctx,
                     name: Annotated[str, Form()] = "", scopes: Annotated[list[str], Form()] = [],  # noqa: B006
                     days: Annotated[str, Form()] = str(DEFAULT_TOKEN_DAYS)) -> HTMLResponse:
        """Issue a token and show its secret once (this response is never cached or redirected)."""
        name = name.strip()
        lifetime = int(days) if days.isdigit() else -1
        form = {"name": name, "scopes": scopes, "days": lifetime}
        errors: dict[str, Msg] = {}
        if not name or len(name) > 100:
            errors["name"] = Msg(N_("Enter a name of 1 to %(max)s characters."), {"max": 100})
        if not scopes:
            errors["scopes"] = Msg(N_("Choose at least one permission."))
        elif not set(scopes) <= set(principal.scopes):
            errors["scopes"] = Msg(N_("Choose only permissions your role holds."))
        if lifetime != 0 and lifetime not in TOKEN_DAYS:
            errors["days"] = Msg(N_("Choose one of the offered lifetimes."))
        if errors:
            return tokens_page(request, principal, session, ctx, status=422, errors=errors, form=form)
        try:
            with session.begin_nested():
                issued = identity.create_token(session, principal.actor, principal.user, name=name,
                                               scopes=scopes, days=lifetime or None,
                                               all_scopes=ctx.registry.all_scopes())
        except DomainError:
            errors["scopes"] = Msg(N_("The token could not be created with these settings."))
            return tokens_page(request, principal, session, ctx, status=422, errors=errors, form=form)
        example = f"Authorization: Bearer {issued.token.prefix}…"  # protocol syntax, not UI text
        return render(request, "token_created.html", {"token": issued.token, "secret": issued.secret,
                                                      "auth_header": example},
                      status=201, headers={"Cache-Control": "no-store"})

    @r.post("/tokens/{token_id:int}/revoke")
    def revoke_token(token_id: int, principal: PageScoped("account"), session: DbSession) -> Response:
        """Revoke one of your tokens."""
        identity.revoke_token(session, principal.actor, principal.user, token_id)
        return redirect("/tokens", notice="token_revoked")

    return r
